"""QVHighlights evaluation: moment retrieval (mAP, R1) and highlight detection (mAP, HIT@1).

Reproduces the official evaluator's numbers, quirks included, from the semantics written
down in ``shared/spec/METRICS.md``. Moment-retrieval AP is computed for all queries and
IoU thresholds at once; every sort is stable.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from os import PathLike
from typing import Any

import numpy as np

from datasets.formats.qvhighlights import CLIP_SECONDS, JsonLine, describe, is_number, iter_jsonl
from datasets.errors import InputError

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))   # 0.5, 0.55, ..., 0.95
MAX_PRED_WINDOWS = 10
# Window-length buckets (lower, upper]; "full" keeps every window of positive length.
LENGTH_BUCKETS = {"full": (0.0, np.inf), "long": (30.0, 150.0), "middle": (10.0, 30.0), "short": (0.0, 10.0)}
SALIENCY_LEVELS = {"Fair": 2, "Good": 3, "VeryGood": 4}
BRIEF_MR_KEYS = {  # brief key -> (bucket, metric, threshold key)
    "MR-full-R1@0.5": ("full", "MR-R1", "0.5"),
    "MR-full-R1@0.7": ("full", "MR-R1", "0.7"),
    "MR-full-mAP": ("full", "MR-mAP", "average"),
    "MR-full-mAP@0.5": ("full", "MR-mAP", "0.5"),
    "MR-full-mAP@0.75": ("full", "MR-mAP", "0.75"),
    "MR-long-mAP": ("long", "MR-mAP", "average"),
    "MR-middle-mAP": ("middle", "MR-mAP", "average"),
    "MR-short-mAP": ("short", "MR-mAP", "average"),
}


def _pct(x: float) -> float:
    """Official reporting: round(100·x, 2); NaN (an empty bucket) stays NaN."""
    return round(100.0 * float(x), 2)


def temporal_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of windows ``a (..., N, 2)`` against ``b (..., M, 2)`` → ``(..., N, M)``.

    Same float operations as the official code: inter / (len_a + len_b - inter).
    """
    left = np.maximum(a[..., :, None, 0], b[..., None, :, 0])
    right = np.minimum(a[..., :, None, 1], b[..., None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = (a[..., :, None, 1] - a[..., :, None, 0]) + (b[..., None, :, 1] - b[..., None, :, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _pad(arrays: list[np.ndarray], width: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``(n_i, k)`` arrays into ``(Q, width, k)`` with ``fill`` padding and a validity mask."""
    k = arrays[0].shape[1]
    out = np.full((len(arrays), width, k), fill, dtype=float)
    valid = np.zeros((len(arrays), width), dtype=bool)
    for q, arr in enumerate(arrays):
        out[q, :len(arr)] = arr
        valid[q, :len(arr)] = True
    return out, valid


def _voc_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC all-points AP along the last axis: pad [0,p,0]/[0,r,1], right running max, Σ Δr·p."""
    zeros = np.zeros(precision.shape[:-1] + (1,))
    mprec = np.concatenate([zeros, precision, zeros], axis=-1)
    mrec = np.concatenate([zeros, recall, zeros + 1], axis=-1)
    mprec = np.maximum.accumulate(mprec[..., ::-1], axis=-1)[..., ::-1]
    return np.sum(np.diff(mrec, axis=-1) * mprec[..., 1:], axis=-1)


def _mr_ap(gts: list[np.ndarray], preds: list[np.ndarray]) -> np.ndarray:
    """Per-query AP at every IoU threshold, ``(Q, T)``; every query needs ≥1 window of each.

    ``preds[q]`` is ``(P, 3)`` [start, end, score] in submission order (already cut to the
    first 10); ``gts[q]`` is ``(G, 2)``. Greedy matching walks predictions by descending
    score (stable) and, per prediction, ground truth by descending IoU; among equal IoUs
    the later-listed ground truth comes first, as in the official ``argsort()[::-1]``.
    """
    thr = np.asarray(IOU_THRESHOLDS)
    n_pred = max(len(p) for p in preds)
    pred, pred_valid = _pad(preds, n_pred, 0.0)                      # (Q, P, 3)
    gt, gt_valid = _pad(gts, max(len(g) for g in gts), 0.0)          # (Q, G, 2)
    scores = np.where(pred_valid, pred[..., 2], -np.inf)             # padding sorts last
    order = np.argsort(-scores, axis=1, kind="stable")
    pred = np.take_along_axis(pred, order[..., None], axis=1)
    pred_valid = np.take_along_axis(pred_valid, order, axis=1)

    iou = temporal_iou(pred[..., :2], gt)                            # (Q, P, G)
    iou = np.where(pred_valid[:, :, None] & gt_valid[:, None, :], iou, -1.0)
    gt_order = np.argsort(iou, axis=2, kind="stable")[..., ::-1]     # highest IoU first
    iou_sorted = np.take_along_axis(iou, gt_order, axis=2)

    n_q, n_t = len(preds), len(thr)
    matched = np.zeros((n_q, n_t, gt.shape[1]), dtype=bool)          # per threshold
    tp = np.zeros((n_q, n_t, n_pred), dtype=bool)
    for i in range(n_pred):
        walk = gt_order[:, i, :]                                     # (Q, G)
        free = ~np.take_along_axis(matched, np.broadcast_to(walk[:, None, :], matched.shape), axis=2)
        ok = (iou_sorted[:, i, None, :] >= thr[None, :, None]) & free  # (Q, T, G)
        hit = ok.any(axis=2)
        first = np.take_along_axis(walk, ok.argmax(axis=2), axis=1)  # (Q, T) ground-truth index
        qq, tt = np.nonzero(hit)
        matched[qq, tt, first[qq, tt]] = True
        tp[:, :, i] = hit

    # Padded slots add neither TP nor FP: precision and recall stay at their last value.
    tp_cum = np.cumsum(tp, axis=2)
    seen = np.maximum(np.cumsum(pred_valid, axis=1), 1)[:, None, :]
    precision = tp_cum / seen
    recall = tp_cum / gt_valid.sum(axis=1)[:, None, None]
    return _voc_ap(precision, recall)


def _moment_retrieval(pairs: list[tuple[dict, dict]], bounds: tuple[float, float]) -> dict:
    """MR-mAP and MR-R1 on the queries that keep ≥1 ground-truth window in ``bounds``."""
    lo, hi = bounds
    gts, preds = [], []
    for pred, gt in pairs:
        windows = np.asarray(gt["relevant_windows"], dtype=float).reshape(-1, 2)
        length = windows[:, 1] - windows[:, 0]
        windows = windows[(length > lo) & (length <= hi)]
        if len(windows):
            gts.append(windows)
            preds.append(np.asarray(pred["pred_relevant_windows"], dtype=float).reshape(-1, 3)[:MAX_PRED_WINDOWS])

    has_pred = [len(p) > 0 for p in preds]
    if any(has_pred):  # queries without predicted windows are skipped in mAP
        ap = _mr_ap([g for g, h in zip(gts, has_pred) if h], [p for p, h in zip(preds, has_pred) if h])
        map_t = ap.mean(axis=0)
    else:
        map_t = np.full(len(IOU_THRESHOLDS), np.nan)
    mr_map = {str(t): _pct(v) for t, v in zip(IOU_THRESHOLDS, map_t)}
    mr_map["average"] = _pct(np.mean(map_t))

    # R1: the first *listed* window against its best-matching ground truth; none → miss.
    if gts:
        gt, gt_valid = _pad(gts, max(len(g) for g in gts), 0.0)
        first = np.array([p[0, :2] if len(p) else (np.nan, np.nan) for p in preds])
        top1 = np.where(gt_valid, temporal_iou(first[:, None, :], gt)[:, 0, :], -1.0).max(axis=1)
        r1 = {str(t): _pct(np.mean(top1 >= t)) for t in IOU_THRESHOLDS}
    else:
        r1 = {str(t): float("nan") for t in IOU_THRESHOLDS}
    return {"MR-mAP": mr_map, "MR-R1": r1}


def _hl_ap(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AP of ``scores (N,)`` for each binary column of ``labels (N, K)`` → ``(K,)``.

    Points are the distinct score thresholds; AP is the plain mean, over the distinct
    non-zero recall levels, of the interpolated precision (max precision at recall ≥ r).
    Constant labels give 0 (all negative) or 1 (all positive).
    """
    n, k = labels.shape
    n_pos = labels.sum(axis=0)
    if n == 0:
        return np.zeros(k)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))          # last index of each threshold
    tps = np.cumsum(y, axis=0)[ends]                                 # (D, K)
    precision = tps / (ends + 1)[:, None]
    interp = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
    new_level = np.diff(tps, axis=0, prepend=0) > 0                  # recall rises here
    ap = (interp * new_level).sum(axis=0) / np.maximum(new_level.sum(axis=0), 1)
    return np.where(n_pos == 0, 0.0, np.where(n_pos == n, 1.0, ap))


def _highlight_detection(pairs: list[tuple[dict, dict]]) -> dict:
    """HL-mAP and HL-Hit1 per saliency level (Fair ≥2, Good ≥3, VeryGood ≥4)."""
    levels = np.asarray(list(SALIENCY_LEVELS.values()))
    ap = np.zeros((len(pairs), len(levels), 3))
    hit = np.zeros((len(pairs), len(levels)))
    for q, (pred, gt) in enumerate(pairs):
        n_clips = int(gt["duration"] / CLIP_SECONDS)
        g = np.zeros((n_clips, 3))
        if len(gt["relevant_clip_ids"]):
            g[np.asarray(gt["relevant_clip_ids"])] = np.asarray(gt["saliency_scores"])
        positive = g[:, None, :] >= levels[None, :, None]            # (N, L, 3)
        scores = np.asarray(pred["pred_saliency_scores"], dtype=float)
        if len(scores):  # HIT@1 over the full prediction list; past the last clip → miss
            k = int(np.argmax(scores))
            if k < n_clips:
                hit[q] = positive[k].any(axis=1)
        fitted = np.zeros(n_clips)
        fitted[:min(n_clips, len(scores))] = scores[:n_clips]       # truncate or zero-pad
        ap[q] = _hl_ap(positive.reshape(n_clips, len(levels) * 3), fitted).reshape(len(levels), 3)
    return {f"HL-min-{name}": {"HL-mAP": _pct(ap[:, i].mean()), "HL-Hit1": _pct(hit[:, i].mean())}
            for i, name in enumerate(SALIENCY_LEVELS)}


def qid_set_error(path: str | PathLike | None, missing: list, extra: list, line: int | None = None) -> InputError:
    """The error for a submission whose qids differ from the ground truth's, listing them."""
    def listing(qids: list) -> str:
        shown = ", ".join(repr(q) for q in qids[:5])
        return shown + (f", ... ({len(qids)} in all)" if len(qids) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} ground-truth qid(s) missing from the submission: {listing(missing)}")
    if extra:
        parts.append(f"{len(extra)} qid(s) not in the ground truth: {listing(extra)}")
    return InputError(path if path is not None else "<submission>", line, "qid",
                      "expected exactly the ground truth's qids; found " + "; ".join(parts))


def evaluate_qvhighlights(submission: list[dict], ground_truth: list[dict]) -> dict:
    """The official nested result: ``brief``, ``HL-min-{Fair,Good,VeryGood}``, ``full``,
    ``long``, ``middle``, ``short``; values are round(100·x, 2), NaN for an empty bucket.

    ``ground_truth`` holds QVHighlights dicts (e.g. ``Sample.raw``); the qid sets must match.
    """
    gt_by_qid = {g["qid"]: g for g in ground_truth}
    counts = Counter(p["qid"] for p in submission)
    dups = [q for q, n in counts.items() if n > 1]
    if dups:
        raise InputError("<submission>", None, "qid", f"expected one prediction per qid, found duplicates: {dups[:5]}")
    missing = [q for q in gt_by_qid if q not in counts]
    extra = [q for q in counts if q not in gt_by_qid]
    if missing or extra:
        raise qid_set_error(None, missing, extra)
    pairs = [(p, gt_by_qid[p["qid"]]) for p in submission]

    mr = {name: _moment_retrieval(pairs, bounds) for name, bounds in LENGTH_BUCKETS.items()}
    hl = _highlight_detection(pairs)
    brief = {key: mr[bucket][metric][thr] for key, (bucket, metric, thr) in BRIEF_MR_KEYS.items()}
    for level, values in hl.items():
        brief[f"{level}-mAP"] = values["HL-mAP"]
        brief[f"{level}-Hit1"] = values["HL-Hit1"]
    return {"brief": brief, **hl, **mr}


def _check_windows(ln: JsonLine, value: Any) -> None:
    windows = ln.list_of("pred_relevant_windows", value)
    if not windows:
        raise ln.fail("pred_relevant_windows",
                      "expected at least one [start, end, score] window, found an empty list")
    for i, w in enumerate(windows):
        name = f"pred_relevant_windows[{i}]"
        if not (isinstance(w, list) and len(w) == 3 and all(is_number(x) for x in w)):
            raise ln.fail(name, f"expected [start, end, score] with three finite numbers, found {describe(w)}")
        if w[0] > w[1]:
            raise ln.fail(name, f"expected start <= end, found [{w[0]}, {w[1]}]")


def _check_saliency(ln: JsonLine, value: Any) -> None:
    scores = ln.list_of("pred_saliency_scores", value)
    if not scores:
        raise ln.fail("pred_saliency_scores", "expected one score per clip, found an empty list")
    for i, s in enumerate(scores):
        if not is_number(s):
            raise ln.fail(f"pred_saliency_scores[{i}]", f"expected a finite number, found {describe(s)}")


def load_submission(path: str | PathLike, ground_truth: Iterable[Any]) -> list[dict]:
    """Read a Moment-DETR-format prediction file and validate it against ``ground_truth``.

    ``ground_truth`` items are dicts or ``Sample``s (only their qids are used). Each line
    needs ``qid``, ``pred_relevant_windows`` ([start, end, score] triples, start <= end)
    and ``pred_saliency_scores``; the qid set must equal the ground truth's.
    """
    gt_qids = [g["qid"] if isinstance(g, dict) else g.qid for g in ground_truth]
    lines: dict[int | str, int] = {}
    submission = []
    for line_no, obj in iter_jsonl(path):
        ln = JsonLine(path, line_no, obj)
        qid = ln.qid()
        if qid in lines:
            raise ln.fail("qid", f"expected one line per qid, found {qid!r} again (first on line {lines[qid]})")
        lines[qid] = line_no
        _check_windows(ln, ln.get("pred_relevant_windows"))
        _check_saliency(ln, ln.get("pred_saliency_scores"))
        submission.append(obj)
    gt_set = set(gt_qids)
    missing = [q for q in gt_qids if q not in lines]
    extra = [q for q in lines if q not in gt_set]
    if missing or extra:
        raise qid_set_error(path, missing, extra, lines[extra[0]] if extra else None)
    return submission
