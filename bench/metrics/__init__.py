"""Metrics, one module per family, registered by name; datasets name theirs in their spec.

``evaluate(metric_name, submission, ground_truth)`` → :class:`MetricResult` (``brief``,
``per_query``, ``full``). Prediction lines are validated first (see
:mod:`bench.metrics.submission`), in memory as in files.
"""
from __future__ import annotations

from r2bench.bench.metrics import grounding, qvhighlights, tvsum, youtube
from r2bench.bench.metrics.base import MetricResult
from r2bench.bench.metrics.submission import Deviations, Metric, load_submission, validate
from r2bench.datasets.formats.base import Sample

METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    if metric.name in METRICS:
        raise ValueError(f"metric '{metric.name}' is registered twice")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(f"unknown metric '{name}'; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]


register_metric(Metric("qvhighlights", qvhighlights.evaluate))
register_metric(Metric("grounding", grounding.evaluate, saliency="optional"))
register_metric(Metric("youtube_highlights", youtube.evaluate, key="vid", windows="optional"))
register_metric(Metric("tvsum", tvsum.evaluate, key="vid", windows="optional"))


def evaluate(metric_name: str, submission: list[dict], ground_truth: list[Sample], *,
             validate_lines: bool = True, lenient: bool = False) -> MetricResult:
    """Score ``submission`` (prediction dicts) against ``ground_truth`` with metric ``metric_name``.

    Lines are validated as a file's would be (``<submission>:N`` in errors); ``lenient`` accepts
    what the official evaluator accepts, with a logged warning per kind of deviation (see
    :mod:`bench.metrics.submission`); ``validate_lines=False`` skips validation and scores what it
    is given (e.g. empty window lists, which validation refuses)."""
    metric = get_metric(metric_name)
    if validate_lines:
        submission = validate((("<submission>", i, obj) for i, obj in enumerate(submission, 1)), ground_truth,
                              metric, lenient=lenient)
    return metric(submission, ground_truth)


__all__ = ["METRICS", "Deviations", "Metric", "MetricResult", "evaluate", "get_metric", "load_submission",
           "register_metric"]
