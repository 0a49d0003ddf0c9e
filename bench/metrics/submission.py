"""Prediction files ("submissions", Moment-DETR JSONL) read and validated against a metric's needs.

One line per query (per video for YouTube Highlights / TVSum, keyed by ``vid``). Each line is
checked field by field, with errors naming the file, the line and the field:

* ``pred_relevant_windows``: at least one ``[start, end, score]`` of finite numbers, start <= end;
* ``pred_saliency_scores``: finite numbers (NaN and infinities refused), one per clip of the
  video: a length more than :data:`SALIENCY_SLACK` clips away from the ground truth's clip
  count is refused (a wrong frame rate, or another video's scores). Within the slack, the
  official semantics apply (QVHighlights truncates or zero-pads; see each metric);
* the key set (qids, or vids) must equal the ground truth's, with no duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any, Callable, Iterable

from r2bench.bench.metrics.base import MetricResult, qid_set_error
from r2bench.datasets.formats.base import JsonLine, Sample, describe, is_number, iter_jsonl

# Clips a saliency list may differ from the ground truth's count by: the official pipelines
# themselves accept a video whose frames differ from its labels by fewer than 5 clips
# (R²-Tuning asserts ``< 5``), e.g. when the last partial clip is decoded or not.
SALIENCY_SLACK = 4


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function and what its prediction lines must carry.

    ``windows`` / ``saliency``: ``"required"`` or ``"optional"`` (validated when present);
    ``key``: the field pairing a line with the ground truth (``qid`` or ``vid``)."""

    name: str
    fn: Callable[[list[dict], list[Sample]], MetricResult]
    key: str = "qid"
    windows: str = "required"
    saliency: str = "required"

    def __call__(self, submission: list[dict], ground_truth: list[Sample]) -> MetricResult:
        return self.fn(submission, ground_truth)


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


def _check_saliency(ln: JsonLine, value: Any, truth: Sample | None) -> None:
    scores = ln.list_of("pred_saliency_scores", value)
    if not scores:
        raise ln.fail("pred_saliency_scores", "expected one score per clip, found an empty list")
    for i, s in enumerate(scores):
        if not is_number(s):
            raise ln.fail(f"pred_saliency_scores[{i}]", f"expected a finite number, found {describe(s)}")
    if truth is not None and abs(len(scores) - truth.num_clips) > SALIENCY_SLACK:
        raise ln.fail("pred_saliency_scores",
                      f"expected one score per clip: {truth.num_clips} clips of {truth.clip_seconds:.3g} s "
                      f"(duration {truth.duration:g} s, {SALIENCY_SLACK} more or fewer accepted), "
                      f"found {len(scores)} scores (wrong frame rate, or another video's?)")


def validate(lines: Iterable[tuple[str | PathLike, int, dict]], ground_truth: list[Sample],
             metric: Metric, path: str | PathLike | None = None) -> list[dict]:
    """Check ``(path, line_no, object)`` prediction lines against ``ground_truth``; return the objects."""
    truth = {getattr(s, metric.key): s for s in ground_truth}
    first_line: dict[Any, int] = {}
    out = []
    for src, line_no, obj in lines:
        ln = JsonLine(src, line_no, obj)
        key = ln.qid() if metric.key == "qid" else ln.text(metric.key)
        if key in first_line:
            raise ln.fail(metric.key, f"expected one line per {metric.key}, found {key!r} again "
                                      f"(first on line {first_line[key]})")
        first_line[key] = line_no
        if metric.windows == "required" or "pred_relevant_windows" in obj:
            _check_windows(ln, ln.get("pred_relevant_windows"))
        if metric.saliency == "required" or "pred_saliency_scores" in obj:
            _check_saliency(ln, ln.get("pred_saliency_scores"), truth.get(key))
        out.append(obj)
    expected = [getattr(s, metric.key) for s in ground_truth]
    missing = [k for k in expected if k not in first_line]
    extra = [k for k in first_line if k not in truth]
    if missing or extra:
        raise qid_set_error(path, missing, extra, first_line[extra[0]] if extra else None, key=metric.key)
    return out


def load_submission(path: str | PathLike, ground_truth: list[Sample], metric: Metric) -> list[dict]:
    """Read a prediction JSONL file and validate it against ``ground_truth`` for ``metric``."""
    return validate(((path, n, obj) for n, obj in iter_jsonl(path)), ground_truth, metric, path)
