"""YouTube Highlights: per-domain mAP, as the UMT / UniVTG / R²-Tuning evaluator scores it
(``shared/spec/METRICS.md``).

Per validation video: labels 1 on highlight clips; clips ranked by descending predicted score
(ties in clip order); P positives (P = 0 → AP 0); the trapezoid AP
(:func:`bench.metrics.base.trapezoid_ap`). Domain mAP = mean over its videos; ``mAP`` = mean
over the domains present. Prediction lines carry ``vid`` and ``pred_saliency_scores``; a
prediction shorter than the video's clips ranks only the clips it scores (the official
``label[argsort(pred)]``), a longer one is cut to the clips (the official code would fail).

``per_query``: one row per video. ``mAP-<domain>``: the video's AP × 100 (NaN outside that
domain). ``mAP``: the video's share of the mean over domains, AP × 100 × N / (D × n_domain)
for N videos, D domains, n_domain videos in its domain, so that the column's mean is ``mAP``.
"""
from __future__ import annotations

import numpy as np

from r2bench.bench.metrics.base import MetricResult, by_domain, rank_desc, trapezoid_ap
from r2bench.datasets.formats.base import Sample
from r2bench.datasets.formats.youtube import DOMAINS


def video_ap(sample: Sample, scores: np.ndarray) -> float:
    """AP of one video: labels 1 on highlight clips, ranked by ``scores``."""
    labels = np.array([row[0] > 0 for row in sample.saliency], dtype=float)
    scores = np.asarray(scores, dtype=float)[:len(labels)]
    return trapezoid_ap(labels[:len(scores)][rank_desc(scores)])


def evaluate(submission: list[dict], ground_truth: list[Sample]) -> MetricResult:
    """``mAP-<domain>`` for each domain present and ``mAP`` (their mean)."""
    return by_domain(submission, ground_truth, video_ap, "mAP", DOMAINS)
