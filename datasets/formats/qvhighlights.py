"""QVHighlights-format annotation files (JSONL, one query per line), read and validated.

Every problem is reported as an :class:`InputError` naming the file, the 1-based line and
the field, saying what was expected and what was found.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Iterator

from datasets.errors import InputError

CLIP_SECONDS = 2          # QVHighlights saliency clips are 2 s long
NUM_ANNOTATORS = 3
MAX_SALIENCY = 4


@dataclass(frozen=True)
class Sample:
    """One query of a QVHighlights-format file (label tuples are empty for unlabelled splits)."""

    qid: int | str
    vid: str
    query: str
    duration: float
    windows: tuple[tuple[float, float], ...]       # relevant_windows, seconds
    clip_ids: tuple[int, ...]                      # relevant_clip_ids (2 s clips)
    saliency: tuple[tuple[int, ...], ...]          # saliency_scores, one row per clip id
    source: str                                    # "path:line" for error messages
    raw: dict = field(compare=False, repr=False)   # the original JSON object


def describe(value: Any) -> str:
    """Short ``<type> <value>`` description of a JSON value for error messages."""
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)
    text = json.dumps(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def is_number(value: Any) -> bool:
    """A finite JSON number (booleans excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def iter_jsonl(path: str | PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, object)`` for each non-blank line; 1-based physical line numbers.

    Lines are split on ``\\n``/``\\r`` only (a query may contain U+2028 and the like).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(path, None, None, f"cannot read file: {e.strerror or e}") from None
    for line_no, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(path, line_no, None,
                             f"expected UTF-8 text, found an invalid byte at column {e.start + 1}") from None
        except json.JSONDecodeError as e:
            raise InputError(path, line_no, None, "expected one JSON object per line, found malformed JSON "
                                                  f"({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(path, line_no, None, f"expected a JSON object, found {describe(obj)}")
        yield line_no, obj


class JsonLine:
    """Validation helpers bound to one parsed line of one file (errors name file, line, field)."""

    def __init__(self, path: str | PathLike, line_no: int, obj: dict):
        self.path, self.line_no, self.obj = path, line_no, obj

    def fail(self, field_name: str, message: str) -> InputError:
        return InputError(self.path, self.line_no, field_name, message)

    def get(self, name: str) -> Any:
        if name not in self.obj:
            raise self.fail(name, f"missing required field (found fields: {', '.join(sorted(self.obj)) or 'none'})")
        return self.obj[name]

    def list_of(self, name: str, value: Any) -> list:
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list, found {describe(value)}")
        return value

    def qid(self) -> int | str:
        qid = self.get("qid")
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
            raise self.fail("qid", f"expected an integer or a non-empty string, found {describe(qid)}")
        return qid


def _parse_text(ln: JsonLine, name: str) -> str:
    value = ln.get(name)
    if not isinstance(value, str):
        raise ln.fail(name, f"expected a string, found {describe(value)}")
    if not value.strip():
        raise ln.fail(name, f"expected non-empty text, found {describe(value)}")
    return value


def _parse_duration(ln: JsonLine) -> float:
    value = ln.get("duration")
    if not is_number(value):
        raise ln.fail("duration", f"expected a finite number of seconds, found {describe(value)}")
    if value <= 0:
        raise ln.fail("duration", f"expected a duration > 0 seconds, found {value}")
    return float(value)


def _parse_windows(ln: JsonLine, duration: float) -> tuple[tuple[float, float], ...]:
    windows = ln.list_of("relevant_windows", ln.get("relevant_windows"))
    if not windows:
        raise ln.fail("relevant_windows", "expected at least one [start, end] window, found an empty list")
    out = []
    for i, w in enumerate(windows):
        name = f"relevant_windows[{i}]"
        if not (isinstance(w, list) and len(w) == 2 and all(is_number(x) for x in w)):
            raise ln.fail(name, f"expected [start, end] with two finite numbers, found {describe(w)}")
        start, end = float(w[0]), float(w[1])
        if start >= end:
            raise ln.fail(name, f"expected start < end, found [{w[0]}, {w[1]}]")
        if start < 0 or end > duration:
            raise ln.fail(name, f"expected a window inside [0, duration={duration:g}], found [{w[0]}, {w[1]}]")
        out.append((start, end))
    return tuple(out)


def _parse_clips(ln: JsonLine, duration: float) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    ids = ln.list_of("relevant_clip_ids", ln.get("relevant_clip_ids"))
    scores = ln.list_of("saliency_scores", ln.get("saliency_scores"))
    num_clips = int(duration / CLIP_SECONDS)
    seen: set[int] = set()
    for i, c in enumerate(ids):
        name = f"relevant_clip_ids[{i}]"
        if isinstance(c, bool) or not isinstance(c, int):
            raise ln.fail(name, f"expected an integer clip id, found {describe(c)}")
        if not 0 <= c < num_clips:
            raise ln.fail(name, f"expected a clip id in [0, {num_clips}) (int(duration/{CLIP_SECONDS}) clips of "
                                f"{CLIP_SECONDS} s for duration {duration:g}), found {c}")
        if c in seen:
            raise ln.fail(name, f"expected unique clip ids, found {c} twice")
        seen.add(c)
    if len(scores) != len(ids):
        raise ln.fail("saliency_scores",
                      f"expected one row per relevant clip id ({len(ids)} rows), found {len(scores)} rows")
    rows = []
    for i, row in enumerate(scores):
        if not (isinstance(row, list) and len(row) == NUM_ANNOTATORS
                and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SALIENCY for s in row)):
            raise ln.fail(f"saliency_scores[{i}]", f"expected {NUM_ANNOTATORS} integers in 0..{MAX_SALIENCY} "
                                                   f"(one per annotator), found {describe(row)}")
        rows.append(tuple(row))
    return tuple(ids), tuple(rows)


def read_jsonl(path: str | PathLike, *, require_labels: bool = True) -> list[Sample]:
    """Read and validate a QVHighlights-format file.

    With ``require_labels=False`` (the test split) the label fields may be absent (empty
    tuples in the Sample); ``relevant_windows`` and the clip pair
    (``relevant_clip_ids``/``saliency_scores``) are each validated when present.
    """
    samples: list[Sample] = []
    first_line: dict[int | str, int] = {}
    for line_no, obj in iter_jsonl(path):
        ln = JsonLine(path, line_no, obj)
        qid = ln.qid()
        if qid in first_line:
            raise ln.fail("qid", f"expected unique qids, found {qid!r} again (first on line {first_line[qid]})")
        first_line[qid] = line_no
        vid = _parse_text(ln, "vid")
        query = _parse_text(ln, "query")
        duration = _parse_duration(ln)
        windows: tuple[tuple[float, float], ...] = ()
        clip_ids: tuple[int, ...] = ()
        saliency: tuple[tuple[int, ...], ...] = ()
        if require_labels or "relevant_windows" in obj:
            windows = _parse_windows(ln, duration)
        if require_labels or "relevant_clip_ids" in obj or "saliency_scores" in obj:
            clip_ids, saliency = _parse_clips(ln, duration)
        samples.append(Sample(qid=qid, vid=vid, query=query, duration=duration, windows=windows,
                              clip_ids=clip_ids, saliency=saliency, source=f"{path}:{line_no}", raw=obj))
    if not samples:
        raise InputError(path, None, None, "expected at least one annotation line, found none")
    return samples
