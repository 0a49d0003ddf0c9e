"""Moment retrieval on Charades-STA, TACoS and Ego4D-NLQ, as the UniVTG / R²-Tuning evaluator
scores them (``shared/spec/METRICS.md``): no length buckets, "full" only.

* ``MR-full-R1@t`` (t = 0.3, 0.35, …, 0.95): the **first listed** window against the
  ground-truth window of highest IoU to it (first on ties); 100 × fraction with IoU ≥ t.
* ``MR-full-mIoU``: 100 × mean of that top-1 IoU.
* ``MR-full-R5@t``: the best IoU among the first 5 listed windows against every ground-truth
  window (NaN IoU → 0).
* ``MR-full-mAP``: as on QVHighlights (the evaluator computes it too).

A query without predicted windows (refused when a submission is validated; the official code
would crash) counts as a miss: IoU 0 for R1, mIoU and R5, and it is skipped in mAP.
Per query (×100, unrounded): R1/R5 0 or 100, mIoU the top-1 IoU, mAP the AP averaged over
the 10 thresholds.
"""
from __future__ import annotations

import numpy as np

from r2bench.bench.metrics.base import MetricResult, pct, per_query_frame
from r2bench.bench.metrics.qvhighlights import IOU_THRESHOLDS, MAX_PRED_WINDOWS, _check_qids, _mr_ap, _pad, temporal_iou
from r2bench.datasets.formats.base import Sample

R_THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))    # 0.3, 0.35, ..., 0.95
HEADLINE = (0.3, 0.5, 0.7)
TOP_K = 5


def _top_iou(preds: list[np.ndarray], gts: list[np.ndarray], k: int) -> np.ndarray:
    """Per query, the highest IoU of the first ``k`` listed windows with any ground truth (0 if none)."""
    gt, gt_valid = _pad(gts, max(len(g) for g in gts), 0.0)
    width = max(1, max(min(len(p), k) for p in preds))
    pred = np.full((len(preds), width, 2), np.nan)
    for q, p in enumerate(preds):
        pred[q, :min(len(p), k)] = p[:k, :2]
    iou = np.nan_to_num(temporal_iou(pred, gt), nan=0.0)                 # (Q, k, G); NaN → 0
    iou = np.where(gt_valid[:, None, :], iou, 0.0)
    return iou.max(axis=(1, 2))


def evaluate(submission: list[dict], ground_truth: list[Sample]) -> MetricResult:
    _check_qids(submission, [s.qid for s in ground_truth])
    by_qid = {s.qid: s for s in ground_truth}
    qids = [s.qid for s in ground_truth]
    pred_by_qid = {p["qid"]: np.asarray(p["pred_relevant_windows"], dtype=float).reshape(-1, 3) for p in submission}
    preds = [pred_by_qid[q] for q in qids]
    gts = [np.asarray(by_qid[q].windows, dtype=float).reshape(-1, 2) for q in qids]

    top1 = _top_iou(preds, gts, 1)          # first listed vs its best ground truth = max over ground truth
    top5 = _top_iou(preds, gts, TOP_K)
    r1 = {str(t): pct(np.mean(top1 >= t)) for t in R_THRESHOLDS}
    r5 = {str(t): pct(np.mean(top5 >= t)) for t in R_THRESHOLDS}
    miou = pct(np.mean(top1))

    cut = [p[:MAX_PRED_WINDOWS] for p in preds]
    has = [len(p) > 0 for p in cut]
    per_ap = np.full((len(qids), len(IOU_THRESHOLDS)), np.nan)
    if any(has):
        ap = _mr_ap([g for g, h in zip(gts, has) if h], [p for p, h in zip(cut, has) if h])
        per_ap[np.flatnonzero(has)] = ap
        map_t = ap.mean(axis=0)
    else:
        map_t = np.full(len(IOU_THRESHOLDS), np.nan)
    mr_map = {str(t): pct(v) for t, v in zip(IOU_THRESHOLDS, map_t)}
    mr_map["average"] = pct(np.mean(map_t))

    brief = {f"MR-full-R1@{t}": r1[str(t)] for t in HEADLINE}
    brief["MR-full-mIoU"] = miou
    brief.update({f"MR-full-R5@{t}": r5[str(t)] for t in HEADLINE})
    brief["MR-full-mAP"] = mr_map["average"]
    columns = {f"MR-full-R1@{t}": 100.0 * (top1 >= t) for t in HEADLINE}
    columns["MR-full-mIoU"] = 100.0 * top1
    columns.update({f"MR-full-R5@{t}": 100.0 * (top5 >= t) for t in HEADLINE})
    with np.errstate(invalid="ignore"):
        columns["MR-full-mAP"] = 100.0 * per_ap.mean(axis=1)
    full = {"brief": brief, "full": {"MR-mIoU": miou, "MR-mAP": mr_map, "MR-R1": r1, "MR-R5": r5}}
    return MetricResult(brief=brief, per_query=per_query_frame(qids, columns), full=full)
