"""TVSum: per-domain Top-5 mAP, as the UMT evaluator scores it (``shared/spec/METRICS.md``).

For each annotator and video: a clip is positive when that annotator's score is greater than
their median over the video's clips, the **lower** middle value for an even count (torch's
median, not numpy's); clips ranked by descending predicted score (ties in clip order), the top
5 kept; P = positives among those 5 (P = 0 → AP 0); the trapezoid AP
(:func:`bench.metrics.base.trapezoid_ap`). A video's value is the mean over its annotators
(the official average over videos, then annotators, is the same number: every video has every
annotator); a domain's the mean over its videos; ``Top5-mAP`` the mean over the domains
present. Short and long predictions: as for YouTube Highlights (:mod:`bench.metrics.youtube`).

``per_query``: one row per video; ``Top5-mAP-<domain>`` its value × 100 (NaN outside that
domain); ``Top5-mAP`` its share of the mean over domains (see :mod:`bench.metrics.youtube`).
"""
from __future__ import annotations

import numpy as np

from r2bench.bench.metrics.base import MetricResult, by_domain, rank_desc, trapezoid_ap
from r2bench.datasets.formats.base import Sample
from r2bench.datasets.formats.tvsum import DOMAINS

TOP_K = 5


def lower_median(x: np.ndarray) -> float:
    """torch.median's median: the lower of the two middle values for an even count."""
    s = np.sort(np.asarray(x, dtype=float))
    return float(s[(len(s) - 1) // 2])


def video_ap(sample: Sample, scores: np.ndarray) -> float:
    """Top-5 AP of one video, averaged over its annotators."""
    table = np.asarray(sample.saliency, dtype=float)                   # (clips, annotators)
    scores = np.asarray(scores, dtype=float)[:len(table)]
    top = rank_desc(scores)[:TOP_K]
    aps = [trapezoid_ap((column > lower_median(column)).astype(float)[:len(scores)][top]) for column in table.T]
    return float(np.mean(aps))


def evaluate(submission: list[dict], ground_truth: list[Sample]) -> MetricResult:
    """``Top5-mAP-<domain>`` for each domain present and ``Top5-mAP`` (their mean)."""
    return by_domain(submission, ground_truth, video_ap, "Top5-mAP", DOMAINS)
