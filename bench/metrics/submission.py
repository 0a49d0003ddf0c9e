"""Prediction files ("submissions", Moment-DETR JSONL) read and validated against a metric's needs.

One line per query (per video for YouTube Highlights / TVSum, keyed by ``vid``). Each line is
checked field by field, with errors naming the file, the line and the field.

**Strict** (the default):

* ``pred_relevant_windows``: at least one ``[start, end, score]`` of finite numbers,
  ``0 <= start <= end``;
* ``pred_saliency_scores``: finite numbers (NaN and infinities refused), one per clip of the
  video: a length more than :data:`SALIENCY_SLACK` clips away from the ground truth's clip
  count is refused (a wrong frame rate, or another video's scores). Within the slack, the
  official semantics apply (QVHighlights truncates or zero-pads; see each metric);
* the key set (qids, or vids) must equal the ground truth's, with no duplicates. Other fields
  and the order of the lines are free (the official evaluators ignore both).

**Lenient** (``lenient=True``, ``bench.evaluate --lenient``) accepts what the official
evaluator accepts and scores it as the official code does, logging one warning per kind of
deviation from the strict rules (how many, and the first one's line and field). What the
official code itself fails on (a missing qid, an empty window list on QVHighlights, a
window with fewer than three values, NaN, ...) is still refused, and the error says so. Per
family (official sources in ``docs/metrics.md``):

* moment retrieval (QVHighlights: moment_detr ``standalone_eval``; Charades-STA, TACoS,
  Ego4D-NLQ: R²-Tuning ``vtg_eval``): windows that end before they start or have negative
  times are scored as given; values after ``[start, end, score]`` are ignored; a qid on several
  lines is pooled (mAP) / last-line-wins (R1, R5, mIoU, highlights); the **first line** decides
  whether windows / saliency are scored at all (``"pred_relevant_windows" in submission[0]``);
  a QVHighlights saliency list of any non-empty length is cut or zero-padded (mAP, HIT@1 over
  the whole list); a grounding file's saliency is never read;
* highlight detection (YouTube Highlights, TVSum: ``label[argsort(scores)]``): a score list
  shorter than the video (even empty) ranks only the clips it scores; windows are never read.
  A list longer than the video by more than the slack is still refused: the official
  indexing fails on it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Callable, Iterable

from r2bench.bench.metrics.base import MetricResult, qid_set_error
from r2bench.core.errors import InputError
from r2bench.datasets.formats.base import JsonLine, Sample, describe, is_number, iter_jsonl

log = logging.getLogger("r2bench.bench.metrics")

# Clips a saliency list may differ from the ground truth's count by: the official pipelines
# themselves accept a video whose frames differ from its labels by fewer than 5 clips
# (R²-Tuning asserts ``< 5``), e.g. when the last partial clip is decoded or not.
SALIENCY_SLACK = 4
WINDOWS, SALIENCY = "pred_relevant_windows", "pred_saliency_scores"
OFFICIAL_FAILS = "the official evaluator fails on this too"
LENIENT_HINT = " (--lenient scores it as the official evaluator does)"
UNREAD_HINT = " (--lenient ignores it, as the official evaluator does not read this field)"


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function and what its prediction lines must carry.

    ``windows`` / ``saliency``: ``"required"`` (scored) or ``"optional"`` (not scored; validated
    when present, ignored in lenient mode, as the official evaluator never reads it);
    ``key``: the field pairing a line with the ground truth (``qid`` or ``vid``)."""

    name: str
    fn: Callable[[list[dict], list[Sample]], MetricResult]
    key: str = "qid"
    windows: str = "required"
    saliency: str = "required"

    def __call__(self, submission: list[dict], ground_truth: list[Sample]) -> MetricResult:
        return self.fn(submission, ground_truth)

    @property
    def highlight_only(self) -> bool:
        """YouTube Highlights / TVSum: one score list per video, paired by position officially."""
        return self.key == "vid"


# --------------------------------------------------------------------------- lenient-mode bookkeeping

# kind -> (what was found, how it is scored)
_DEVIATIONS = {
    "window_inverted": ("window(s) ending before they start",
                        "scored as given, as the official evaluator does: no overlap, so IoU 0 in R1/R5/mIoU and a "
                        "false positive in mAP, except where its length is exactly minus a ground-truth window's "
                        "(the official IoU is then 0/0 = NaN, which matches)"),
    "window_negative": ("window(s) with negative times",
                        "scored as given, not clamped to the video, as the official evaluator does"),
    "window_extra": ("window(s) with more values than [start, end, score]",
                     "the values after the third are ignored, as the official evaluator does"),
    "duplicate": ("line(s) repeating a qid",
                  "scored as the official evaluator does: mAP pools the first 10 windows of every line of the "
                  "qid, R1/R5/mIoU and highlight detection use its last line"),
    "saliency_length_moments": (f"line(s) whose pred_saliency_scores are more than {SALIENCY_SLACK} clips away "
                                "from the video's clip count",
                                "scored as the official evaluator does: cut or zero-padded to the clip count "
                                "for mAP, HIT@1 over the whole list (a top clip past the video is a miss)"),
    "saliency_length_highlights": (f"line(s) whose pred_saliency_scores are more than {SALIENCY_SLACK} clips "
                                   "shorter than the video",
                                   "scored as the official evaluator does (label[argsort(scores)]): only the "
                                   "clips scored are ranked"),
    "saliency_empty": ("line(s) with an empty pred_saliency_scores",
                       "scored as the official evaluator does: nothing ranked, AP 0"),
    "first_line_windows": ("line 1 without pred_relevant_windows",
                           "the official evaluator decides from the first line alone and skips moment retrieval "
                           "for the whole file: no MR metrics"),
    "first_line_saliency": ("line 1 without pred_saliency_scores",
                            "the official evaluator decides from the first line alone and skips highlight "
                            "detection for the whole file: no HL metrics"),
    "unread_field": ("line(s) with an invalid field that the official evaluator does not read",
                     "ignored, as the official evaluator does"),
}


@dataclass
class Deviations:
    """What lenient validation accepted that strict validation refuses: per kind, a count and
    the first occurrence; :meth:`emit` logs one warning per kind."""

    path: str
    kinds: dict[str, list] = field(default_factory=dict)   # kind -> [count, line, field, detail]

    def add(self, kind: str, ln: JsonLine, name: str, detail: str) -> None:
        if kind in self.kinds:
            self.kinds[kind][0] += 1
        else:
            self.kinds[kind] = [1, ln.line_no, name, detail]

    def messages(self) -> list[str]:
        out = []
        for kind, (count, line, name, detail) in self.kinds.items():
            what, how = _DEVIATIONS[kind]
            out.append(f"{self.path}: {count} {what}; first on line {line}, field '{name}': {detail}; {how}")
        return out

    def emit(self) -> None:
        for message in self.messages():
            log.warning(message)


# --------------------------------------------------------------------------- field checks

def _check_windows(ln: JsonLine, value: Any, dev: Deviations | None = None) -> None:
    """Strict (``dev`` None): ``[start, end, score]`` finite, ``0 <= start <= end``, at least one.
    Lenient: what the official code reads (the first three values) must be finite numbers; the
    rest is recorded in ``dev``."""
    windows = ln.list_of(WINDOWS, value)
    if not windows:
        raise ln.fail(WINDOWS, "expected at least one [start, end, score] window, found an empty list"
                      + (f" ({OFFICIAL_FAILS}: R1 reads the first window)" if dev else ""))
    for i, w in enumerate(windows):
        name = f"{WINDOWS}[{i}]"
        if dev is None:
            if not (isinstance(w, list) and len(w) == 3 and all(is_number(x) for x in w)):
                longer = isinstance(w, list) and len(w) > 3 and all(is_number(x) for x in w[:3])
                raise ln.fail(name, f"expected [start, end, score] with three finite numbers, found {describe(w)}"
                              + (LENIENT_HINT if longer else ""))
        else:
            if not (isinstance(w, list) and len(w) >= 3 and all(is_number(x) for x in w[:3])):
                raise ln.fail(name, f"expected [start, end, score] with three finite numbers, found {describe(w)} "
                                    f"({OFFICIAL_FAILS} or scores it as undefined)")
            if len(w) > 3:
                dev.add("window_extra", ln, name, f"found {describe(w)}")
        start, end = w[0], w[1]
        if start > end:
            if dev is None:
                raise ln.fail(name, f"expected start <= end, found [{start}, {end}]" + LENIENT_HINT)
            dev.add("window_inverted", ln, name, f"found [{start}, {end}]")
        if start < 0 or end < 0:
            if dev is None:
                raise ln.fail(name, f"expected times >= 0 s, found [{start}, {end}]" + LENIENT_HINT)
            dev.add("window_negative", ln, name, f"found [{start}, {end}]")


def _check_saliency(ln: JsonLine, value: Any, truth: Sample | None, metric: Metric,
                    dev: Deviations | None = None) -> None:
    scores = ln.list_of(SALIENCY, value)
    for i, s in enumerate(scores):
        if not is_number(s):
            raise ln.fail(f"{SALIENCY}[{i}]", f"expected a finite number, found {describe(s)}")
    if not scores:
        if dev is None:
            raise ln.fail(SALIENCY, "expected one score per clip, found an empty list"
                          + (LENIENT_HINT if metric.highlight_only else ""))
        if not metric.highlight_only:
            raise ln.fail(SALIENCY, f"expected one score per clip, found an empty list ({OFFICIAL_FAILS}: "
                                    "HIT@1 takes the argmax of the list)")
        dev.add("saliency_empty", ln, SALIENCY, "found an empty list")
        return
    if truth is None or abs(len(scores) - truth.num_clips) <= SALIENCY_SLACK:
        return
    found = (f"expected one score per clip: {truth.num_clips} clips of {truth.clip_seconds:.3g} s "
             f"(duration {truth.duration:g} s, {SALIENCY_SLACK} more or fewer accepted), found {len(scores)} scores")
    if dev is None:
        official = not metric.highlight_only or len(scores) < truth.num_clips
        raise ln.fail(SALIENCY, found + " (wrong frame rate, or another video's?)" + (LENIENT_HINT if official else ""))
    if metric.highlight_only and len(scores) > truth.num_clips:
        raise ln.fail(SALIENCY, found + f" ({OFFICIAL_FAILS}: label[argsort(scores)] indexes past the video)")
    kind = "saliency_length_highlights" if metric.highlight_only else "saliency_length_moments"
    dev.add(kind, ln, SALIENCY, f"{len(scores)} scores for {truth.num_clips} clips")


# --------------------------------------------------------------------------- validation

def validate(lines: Iterable[tuple[str | PathLike, int, dict]], ground_truth: list[Sample],
             metric: Metric, path: str | PathLike | None = None, *, lenient: bool = False) -> list[dict]:
    """Check ``(path, line_no, object)`` prediction lines against ``ground_truth``; return the objects.

    ``lenient``: accept what the official evaluator accepts (module docstring), log one warning
    per kind of deviation; the returned objects are unchanged (the metrics implement the
    official semantics)."""
    truth = {getattr(s, metric.key): s for s in ground_truth}
    first_line: dict[Any, int] = {}
    dev = Deviations(str(path if path is not None else "<submission>")) if lenient else None
    scored = {WINDOWS: metric.windows == "required", SALIENCY: metric.saliency == "required"}
    out = []
    for src, line_no, obj in lines:
        ln = JsonLine(src, line_no, obj)
        if dev is not None and path is None:
            dev.path = str(src)
        key = ln.qid() if metric.key == "qid" else ln.text(metric.key)
        if key in first_line:
            message = f"expected one line per {metric.key}, found {key!r} again (first on line {first_line[key]})"
            if dev is None:
                raise ln.fail(metric.key, message + ("" if metric.highlight_only else LENIENT_HINT))
            if metric.highlight_only:
                raise ln.fail(metric.key, message + " (the official highlight evaluators pair one score list "
                                                    "with each video)")
            dev.add("duplicate", ln, metric.key, f"{key!r} again (first on line {first_line[key]})")
        else:
            first_line[key] = line_no
        if dev is not None and not out and not metric.highlight_only:
            # the official moment-retrieval evaluators look at the first line only
            for name, kind in ((WINDOWS, "first_line_windows"), (SALIENCY, "first_line_saliency")):
                if scored[name] and name not in obj:
                    scored[name] = False
                    dev.add(kind, ln, name, "missing")
        for name, required in ((WINDOWS, metric.windows == "required"), (SALIENCY, metric.saliency == "required")):
            if dev is None:
                if required:
                    _check_field(ln, name, truth.get(key), metric)
                elif name in obj:
                    try:
                        _check_field(ln, name, truth.get(key), metric)
                    except InputError as e:
                        raise ln.fail(e.field, e.message.replace(LENIENT_HINT, "") + UNREAD_HINT) from None
            elif scored[name]:
                if name not in obj:
                    why = ("it reads every video's scores" if metric.highlight_only
                           else f"line 1 has {name}, so it reads it on every line")
                    raise ln.fail(name, f"missing required field ({OFFICIAL_FAILS}: {why})")
                _check_field(ln, name, truth.get(key), metric, dev)
            elif name in obj:
                try:
                    _check_field(ln, name, truth.get(key), metric)
                except InputError as e:
                    dev.add("unread_field", ln, e.field or name, e.message.replace(LENIENT_HINT, ""))
        out.append(obj)
    expected = [getattr(s, metric.key) for s in ground_truth]
    missing = [k for k in expected if k not in first_line]
    extra = [k for k in first_line if k not in truth]
    if missing or extra:
        error = qid_set_error(path, missing, extra, first_line[extra[0]] if extra else None, key=metric.key)
        if lenient:
            error = InputError(error.path, error.line, error.field,
                               error.message + f" ({OFFICIAL_FAILS}: it asserts equal {metric.key} sets)")
        raise error
    if dev is not None:
        dev.emit()
    return out


def _check_field(ln: JsonLine, name: str, truth: Sample | None, metric: Metric, dev: Deviations | None = None) -> None:
    value = ln.get(name)
    if name == WINDOWS:
        _check_windows(ln, value, dev)
    else:
        _check_saliency(ln, value, truth, metric, dev)


def load_submission(path: str | PathLike, ground_truth: list[Sample], metric: Metric, *,
                    lenient: bool = False) -> list[dict]:
    """Read a prediction JSONL file and validate it against ``ground_truth`` for ``metric``."""
    return validate(((path, n, obj) for n, obj in iter_jsonl(path)), ground_truth, metric, path, lenient=lenient)
