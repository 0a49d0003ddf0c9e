"""Moment retrieval on Charades-STA, TACoS and Ego4D-NLQ, as the evaluator that produced the
paper's Table 2 scores them: R²-Tuning's ``datasets/eval/evaluation.py`` (``vtg_eval``, called by
``Grounding.evaluate`` in ``datasets/grounding.py`` line 204 for all three datasets), a copy of
UniVTG's ``eval/eval.py``. No length buckets in ``brief`` ("full" only).

* ``MR-full-R1@t`` (t = 0.3, 0.35, …, 0.95): the **first listed** window; the ground-truth
  window it is compared with is the ``argmax`` of the usual IoU ``inter / (len1 + len2 − inter)``
  (first on ties), and the value compared with t (``>=``) is the official *paired* IoU
  ``inter / (max(ends) − min(starts))`` (0 when that is 0), in float64
  (:mod:`bench.metrics.iou`). 100 × fraction of queries.
* ``MR-full-mIoU``: 100 × mean of that paired IoU.
* ``MR-full-R5@t``: among the first 5 listed windows × all ground-truth windows, the first
  (row-major) pair of highest usual IoU (NaN → 0); its paired IoU is compared with t.
* ``MR-full-mAP``: as on QVHighlights (the evaluator computes it too).

The two IoU formulas agree in real arithmetic but not always in floating point; a window whose
IoU is exactly a threshold is decided by the paired one (see ``docs/metrics.md``).

Means run over the qids in order of first appearance in the submission, as the official
dicts do. A qid on several lines: R1, R5 and mIoU use its last line, mAP pools the first 10
windows of every line (see :mod:`bench.metrics.qvhighlights`). If the first line has no
``pred_relevant_windows`` the official evaluator scores nothing: ``brief`` is then empty.

A query without predicted windows (refused when a submission is validated; the official code
would crash) counts as a miss: IoU 0 for R1, mIoU and R5, and it is skipped in mAP.
Per query (×100, unrounded): R1/R5 0 or 100, mIoU the top-1 IoU, mAP the AP averaged over
the 10 thresholds.
"""
from __future__ import annotations

import numpy as np

from r2bench.bench.metrics.base import MetricResult, pct, per_query_frame
from r2bench.bench.metrics.iou import first_k_iou
from r2bench.bench.metrics.qvhighlights import IOU_THRESHOLDS, _mr_ap, check_keys, collect, truth_windows
from r2bench.datasets.formats.base import Sample

R_THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))    # 0.3, 0.35, ..., 0.95
HEADLINE = (0.3, 0.5, 0.7)
TOP_K = 5


def evaluate(submission: list[dict], ground_truth: list[Sample]) -> MetricResult:
    check_keys(submission, [s.qid for s in ground_truth])
    all_qids = [s.qid for s in ground_truth]
    if not submission or "pred_relevant_windows" not in submission[0]:
        empty = per_query_frame(all_qids, {})
        return MetricResult(brief={}, per_query=empty, full={"brief": {}, "full": {}})
    by_qid = {s.qid: s for s in ground_truth}
    preds = collect(submission)                         # first-appearance order, as the official dicts
    qids = [p.qid for p in preds]
    gts = [truth_windows(by_qid[q]) for q in qids]

    top1 = first_k_iou([p.windows for p in preds], gts, 1)
    top5 = first_k_iou([p.windows for p in preds], gts, TOP_K)
    r1 = {str(t): pct(np.mean(top1 >= t)) for t in R_THRESHOLDS}
    r5 = {str(t): pct(np.mean(top5 >= t)) for t in R_THRESHOLDS}
    miou = pct(np.mean(top1))

    has = [len(p.pooled) > 0 for p in preds]
    per_ap = np.full((len(qids), len(IOU_THRESHOLDS)), np.nan)
    if any(has):
        ap = _mr_ap([g for g, h in zip(gts, has) if h], [p.pooled for p, h in zip(preds, has) if h])
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
    per_query = per_query_frame(qids, columns).reindex(per_query_frame(all_qids, {}).index)
    return MetricResult(brief=brief, per_query=per_query, full=full)
