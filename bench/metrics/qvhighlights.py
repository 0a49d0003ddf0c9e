"""QVHighlights evaluation: moment retrieval (mAP, R1) and highlight detection (mAP, HIT@1).

Reproduces the official evaluator's numbers (moment_detr ``standalone_eval/eval.py``), quirks
included, from the semantics written down in ``shared/spec/METRICS.md`` and the official
arithmetic (``docs/metrics.md``). Moment-retrieval AP is computed for all queries and IoU
thresholds at once; every sort is stable. R1 uses the official two IoU formulas
(:func:`bench.metrics.iou.first_k_iou`): the ground-truth window is chosen with
``inter / union``, the value compared with θ (``>=``) is ``inter / hull``.

What the official code does with unusual submissions is reproduced here too (the strict
validation in :mod:`bench.metrics.submission` refuses them first unless ``--lenient``):

* a qid on several lines: mAP pools the first 10 windows of every line (in line order),
  R1 and highlight detection use the last line (the official ``defaultdict(list)`` and dicts);
* ``pred_relevant_windows`` / ``pred_saliency_scores`` missing from the **first** line: the
  official evaluator looks at ``submission[0]`` only and skips moment retrieval / highlight
  detection for the whole file (their keys are then absent from ``brief``);
* windows with more than three values: the first three are used.

Per-query values (:func:`evaluate`'s ``per_query``), ×100 and unrounded: ``MR-*-mAP`` the
query's AP averaged over the 10 IoU thresholds (NaN when the query has no ground-truth window
in the bucket, or no predicted window), ``MR-full-mAP@t`` its AP at t, ``MR-full-R1@t`` 0 or
100, ``HL-min-*-mAP`` its AP averaged over the 3 annotators, ``HL-min-*-Hit1`` 0 or 100.
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Iterable, Sequence

import numpy as np

from r2bench.bench.metrics.base import MetricResult, pct, per_query_frame, qid_set_error  # noqa: F401 (re-export)
from r2bench.bench.metrics.iou import cross_iou, first_k_iou
from r2bench.bench.metrics.iou import pad as _pad
from r2bench.bench.metrics.iou import cross_iou as temporal_iou  # noqa: F401 (the former name)
from r2bench.datasets.formats.base import Sample
from r2bench.datasets.formats.qvhighlights import CLIP_SECONDS, NUM_ANNOTATORS

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))   # 0.5, 0.55, ..., 0.95
MAX_PRED_WINDOWS = 10
# Window-length buckets (lower, upper]; "full" applies no filter (the official ``get_data_by_range``
# returns the data unchanged for [0, 150], standalone_eval/eval.py line 111).
LENGTH_BUCKETS = {"full": (-np.inf, np.inf), "long": (30.0, 150.0), "middle": (10.0, 30.0), "short": (0.0, 10.0)}
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


@dataclass
class _Truth:
    """One query's ground truth as the metric needs it."""

    qid: int | str
    windows: np.ndarray     # (G, 2) seconds
    scores: np.ndarray      # (clips, 3) saliency of every clip, zeros where unlabelled

    @classmethod
    def from_dict(cls, g: dict) -> _Truth:
        """A QVHighlights JSON object (``Sample.raw``): ``int(duration / 2)`` clips."""
        scores = np.zeros((int(g["duration"] / CLIP_SECONDS), NUM_ANNOTATORS))
        if len(g.get("relevant_clip_ids") or []):
            scores[np.asarray(g["relevant_clip_ids"])] = np.asarray(g["saliency_scores"])
        return cls(g["qid"], np.asarray(g["relevant_windows"], dtype=float).reshape(-1, 2), scores)

    @classmethod
    def from_sample(cls, s: Sample) -> _Truth:
        width = len(s.saliency[0]) if s.saliency else NUM_ANNOTATORS
        scores = np.zeros((s.num_clips, width))
        if s.clip_ids:
            scores[np.asarray(s.clip_ids)] = np.asarray(s.saliency, dtype=float)
        return cls(s.qid, truth_windows(s), scores)


def truth_windows(s: Sample) -> np.ndarray:
    """A sample's ground-truth windows ``(G, 2)`` as the official evaluator reads them: the file's
    own ``relevant_windows`` (``Sample.raw``), not the reader's copy, which clamps ends that run
    slightly past the video (the official evaluators never clamp). Falls back to
    ``Sample.windows`` when the raw object does not hold the same number of windows."""
    raw = s.raw.get("relevant_windows") if isinstance(s.raw, dict) else None
    if isinstance(raw, list) and len(raw) == len(s.windows):
        try:
            return np.asarray(raw, dtype=float).reshape(-1, 2)
        except (TypeError, ValueError):
            pass
    return np.asarray(s.windows, dtype=float).reshape(-1, 2)


def pred_windows(windows) -> np.ndarray:
    """``[[start, end, score, ...], ...]`` → ``(n, 3)`` float64 (values after the third ignored)."""
    return np.asarray([[float(w[0]), float(w[1]), float(w[2])] for w in windows or ()],
                      dtype=float).reshape(-1, 3)


@dataclass
class _Pred:
    """One qid's prediction as the official evaluator sees it (see the module docstring)."""

    qid: int | str
    windows: np.ndarray           # (n, 3) the last line's windows, in listed order (R1, R5, mIoU)
    pooled: np.ndarray            # (m, 3) the first 10 windows of every line of this qid (mAP)
    line: dict                    # the last line (highlight detection)


def collect(submission: list[dict], key: str = "qid", windows: bool = True) -> list[_Pred]:
    """One :class:`_Pred` per ``key``, in order of first appearance (the official dicts' order)."""
    out: dict = {}
    for line in submission:
        w = pred_windows(line.get("pred_relevant_windows")) if windows else np.zeros((0, 3))
        if line[key] in out:
            p = out[line[key]]
            out[line[key]] = _Pred(p.qid, w, np.concatenate([p.pooled, w[:MAX_PRED_WINDOWS]]), line)
        else:
            out[line[key]] = _Pred(line[key], w, w[:MAX_PRED_WINDOWS], line)
    return list(out.values())


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
    A NaN IoU (0/0: a window whose length is minus the ground truth's, only with windows
    that end before they start) passes every threshold, as in the official ``tiou < t`` test,
    and sorts first, as NaN sorts last in ``argsort``.
    """
    thr = np.asarray(IOU_THRESHOLDS)
    n_pred = max(len(p) for p in preds)
    pred, pred_valid = _pad(preds, n_pred, 0.0)                      # (Q, P, 3)
    gt, gt_valid = _pad(gts, max(len(g) for g in gts), 0.0)          # (Q, G, 2)
    scores = np.where(pred_valid, pred[..., 2], -np.inf)             # padding sorts last
    order = np.argsort(-scores, axis=1, kind="stable")
    pred = np.take_along_axis(pred, order[..., None], axis=1)
    pred_valid = np.take_along_axis(pred_valid, order, axis=1)

    iou = cross_iou(pred[..., :2], gt)                               # (Q, P, G)
    iou = np.where(np.isnan(iou), np.inf, iou)                       # NaN: never "< t"
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


def _moment_retrieval(pairs: list[tuple[_Pred, _Truth]], bounds: tuple[float, float]) -> tuple[dict, dict]:
    """MR-mAP and MR-R1 on the queries that keep ≥1 ground-truth window in ``bounds``, and the
    per-query values: ``ap`` (Q, T) and ``top1_iou`` (Q,), NaN for queries outside the bucket
    (``ap`` also for queries without predicted windows)."""
    lo, hi = bounds
    n_q, n_t = len(pairs), len(IOU_THRESHOLDS)
    keep, gts, preds = [], [], []
    for q, (pred, gt) in enumerate(pairs):
        windows = gt.windows
        length = windows[:, 1] - windows[:, 0]
        windows = windows[(length > lo) & (length <= hi)]
        if len(windows):
            keep.append(q)
            gts.append(windows)
            preds.append(pred)
    per_ap = np.full((n_q, n_t), np.nan)
    per_iou = np.full(n_q, np.nan)

    has_pred = [len(p.pooled) > 0 for p in preds]
    if any(has_pred):  # queries without predicted windows are skipped in mAP
        ap = _mr_ap([g for g, h in zip(gts, has_pred) if h], [p.pooled for p, h in zip(preds, has_pred) if h])
        map_t = ap.mean(axis=0)
        per_ap[[q for q, h in zip(keep, has_pred) if h]] = ap
    else:
        map_t = np.full(n_t, np.nan)
    mr_map = {str(t): pct(v) for t, v in zip(IOU_THRESHOLDS, map_t)}
    mr_map["average"] = pct(np.mean(map_t))

    # R1: the first *listed* window (of the qid's last line) against its best-matching ground truth.
    if gts:
        top1 = first_k_iou([p.windows for p in preds], gts, 1)
        r1 = {str(t): pct(np.mean(top1 >= t)) for t in IOU_THRESHOLDS}
        per_iou[keep] = top1
    else:
        r1 = {str(t): float("nan") for t in IOU_THRESHOLDS}
    return {"MR-mAP": mr_map, "MR-R1": r1}, {"ap": per_ap, "top1_iou": per_iou}


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


def _highlight_detection(pairs: list[tuple[_Pred, _Truth]]) -> tuple[dict, np.ndarray, np.ndarray]:
    """HL-mAP and HL-Hit1 per saliency level (Fair ≥2, Good ≥3, VeryGood ≥4), and the
    per-query AP (Q, levels, annotators) and hits (Q, levels)."""
    levels = np.asarray(list(SALIENCY_LEVELS.values()))
    ap = np.zeros((len(pairs), len(levels), NUM_ANNOTATORS))
    hit = np.zeros((len(pairs), len(levels)))
    for q, (pred, gt) in enumerate(pairs):
        g = gt.scores
        n_clips = len(g)
        positive = g[:, None, :] >= levels[None, :, None]            # (N, L, 3)
        scores = np.asarray(pred.line.get("pred_saliency_scores") or [], dtype=float).reshape(-1)
        if len(scores):  # HIT@1 over the full prediction list; past the last clip → miss
            k = int(np.argmax(scores))
            if k < n_clips:
                hit[q] = positive[k].any(axis=1)
        fitted = np.zeros(n_clips)
        fitted[:min(n_clips, len(scores))] = scores[:n_clips]       # truncate or zero-pad
        ap[q] = _hl_ap(positive.reshape(n_clips, len(levels) * g.shape[1]), fitted).reshape(len(levels), -1)
    result = {f"HL-min-{name}": {"HL-mAP": pct(ap[:, i].mean()), "HL-Hit1": pct(hit[:, i].mean())}
              for i, name in enumerate(SALIENCY_LEVELS)}
    return result, ap, hit


def check_keys(submission: list[dict], keys: Sequence, key: str = "qid") -> None:
    """The official ``assert pred_qids == gt_qids``: the *sets* must be equal (a key may repeat,
    see the module docstring; order is free)."""
    seen = {p[key] for p in submission}
    known = set(keys)
    missing = [q for q in keys if q not in seen]
    extra = list(dict.fromkeys(p[key] for p in submission if p[key] not in known))
    if missing or extra:
        raise qid_set_error(None, missing, extra, key=key)


def _evaluate(submission: list[dict], truths: list[_Truth]) -> tuple[dict, dict]:
    """The official nested result and the per-query columns (brief keys) of ``submission``."""
    check_keys(submission, [t.qid for t in truths])
    by_qid = {t.qid: t for t in truths}
    # The official evaluator decides from the first line alone which tasks to score.
    with_mr = bool(submission) and "pred_relevant_windows" in submission[0]
    with_hl = bool(submission) and "pred_saliency_scores" in submission[0]
    pairs = [(p, by_qid[p.qid]) for p in collect(submission, windows=with_mr)]

    mr, per_mr = {}, {}
    if with_mr:
        for name, bounds in LENGTH_BUCKETS.items():
            mr[name], per_mr[name] = _moment_retrieval(pairs, bounds)
    hl, hl_ap, hl_hit = _highlight_detection(pairs) if with_hl else ({}, None, None)
    brief = {key: mr[bucket][metric][thr] for key, (bucket, metric, thr) in BRIEF_MR_KEYS.items() if with_mr}
    for level, values in hl.items():
        brief[f"{level}-mAP"] = values["HL-mAP"]
        brief[f"{level}-Hit1"] = values["HL-Hit1"]

    columns: dict[str, np.ndarray] = {}
    for key, (bucket, metric, thr) in BRIEF_MR_KEYS.items():
        if not with_mr:
            break
        per = per_mr[bucket]
        if metric == "MR-R1":
            iou = per["top1_iou"]
            columns[key] = np.where(np.isnan(iou), np.nan, 100.0 * (iou >= float(thr)))
        elif thr == "average":
            with np.errstate(invalid="ignore"):
                columns[key] = 100.0 * per["ap"].mean(axis=1)
        else:
            columns[key] = 100.0 * per["ap"][:, IOU_THRESHOLDS.index(float(thr))]
    for i, level in enumerate(SALIENCY_LEVELS if with_hl else ()):
        columns[f"HL-min-{level}-mAP"] = 100.0 * hl_ap[:, i].mean(axis=1)
        columns[f"HL-min-{level}-Hit1"] = 100.0 * hl_hit[:, i]
    per_query = {"qids": [p.qid for p, _ in pairs], "columns": {k: columns[k] for k in brief}}
    return {"brief": brief, **hl, **mr}, per_query


def evaluate_qvhighlights(submission: list[dict], ground_truth: list[dict]) -> dict:
    """The official nested result: ``brief``, ``HL-min-{Fair,Good,VeryGood}``, ``full``,
    ``long``, ``middle``, ``short``; values are round(100·x, 2), NaN for an empty bucket.

    ``ground_truth`` holds QVHighlights dicts (e.g. ``Sample.raw``); the qid sets must match.
    """
    return _evaluate(submission, [_Truth.from_dict(g) for g in ground_truth])[0]


def evaluate(submission: list[dict], ground_truth: list[Sample]) -> MetricResult:
    """QVHighlights metrics of ``submission`` against ``Sample``s: brief, per query, full."""
    full, per = _evaluate(submission, [_Truth.from_sample(s) for s in ground_truth])
    frame = per_query_frame(per["qids"], per["columns"]).reindex(
        per_query_frame([s.qid for s in ground_truth], {}).index)
    return MetricResult(brief=full["brief"], per_query=frame, full=full)


def load_submission(path: str | PathLike, ground_truth: Iterable[Sample], *, lenient: bool = False) -> list[dict]:
    """Read and validate a QVHighlights prediction file (see :mod:`bench.metrics.submission`)."""
    from r2bench.bench.metrics import METRICS
    from r2bench.bench.metrics.submission import load_submission as load
    return load(path, list(ground_truth), METRICS["qvhighlights"], lenient=lenient)
