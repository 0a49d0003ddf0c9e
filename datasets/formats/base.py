"""What every annotation reader shares: the :class:`Sample`, JSONL parsing, field validation,
window clamping, and the registry of readers (``format`` name → reader function).

A reader is ``read(path, *, clip_seconds, require_labels=True, domains=()) -> list[Sample]``:
``clip_seconds`` is the dataset's labelled-clip length (``None`` where it varies per video),
``require_labels=False`` accepts files without ground truth (a test split), ``domains`` (if
given) are the only domain names allowed. Every problem is an :class:`InputError` naming the
file, the 1-based line and the field, saying what was expected and what was found.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from r2bench.core.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One query of an annotation file, in seconds; label tuples are empty where a file has none.

    ``saliency[i]`` holds one score per annotator (any number of annotators, floats allowed)
    for clip ``clip_ids[i]``; clip ``c`` covers ``[c·clip_seconds, (c+1)·clip_seconds)``.
    ``num_clips`` is the number of labelled clips the video is divided into (what a
    prediction's ``pred_saliency_scores`` is scored against). ``saliency_target[i]`` is clip
    ``clip_ids[i]``'s training target in [0, 1], as the public R²-Tuning code builds it from the
    labels (empty when there are no saliency labels: targets then come from the windows).
    """

    qid: int | str
    vid: str
    query: str
    duration: float                                 # seconds
    windows: tuple[tuple[float, float], ...]        # ground-truth moments, seconds
    clip_ids: tuple[int, ...]                       # labelled clips
    saliency: tuple[tuple[float, ...], ...]         # one row per clip id, one value per annotator
    clip_seconds: float                             # length of a labelled clip
    num_clips: int                                  # clips in the video
    domain: str | None = None                       # YouTube Highlights / TVSum category
    saliency_target: tuple[float, ...] = ()         # per clip id: training target in [0, 1]
    source: str                                     # "path:line" for error messages
    raw: dict = field(compare=False, repr=False)    # the original JSON object


# --------------------------------------------------------------------------- registry of readers

Reader = Callable[..., list[Sample]]
READERS: dict[str, Reader] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Decorator: make ``fn`` the reader of format ``name``."""
    def add(fn: Reader) -> Reader:
        if name in READERS and READERS[name] is not fn:
            raise ValueError(f"format '{name}' is registered twice")
        READERS[name] = fn
        return fn
    return add


def get_reader(name: str) -> Reader:
    if name not in READERS:
        raise KeyError(f"unknown annotation format '{name}'; known: {', '.join(sorted(READERS))}")
    return READERS[name]


# --------------------------------------------------------------------------- JSON helpers

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
    if data.startswith(b"\xef\xbb\xbf"):      # a UTF-8 byte-order mark (Windows editors write one): not text
        data = data[3:]
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

    def fail(self, field_name: str | None, message: str) -> InputError:
        return InputError(self.path, self.line_no, field_name, message)

    def get(self, name: str) -> Any:
        if name not in self.obj:
            raise self.fail(name, f"missing required field (found fields: {', '.join(sorted(self.obj)) or 'none'})")
        return self.obj[name]

    def present(self, name: str) -> bool:
        """The field exists and is not null."""
        return self.obj.get(name) is not None

    def list_of(self, name: str, value: Any) -> list:
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list, found {describe(value)}")
        return value

    def qid(self) -> int | str:
        qid = self.get("qid")
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
            raise self.fail("qid", f"expected an integer or a non-empty string, found {describe(qid)}")
        return qid

    def text(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, found {describe(value)}")
        if not value.strip():
            raise self.fail(name, f"expected non-empty text, found {describe(value)}")
        return value

    def duration(self) -> float:
        value = self.get("duration")
        if not is_number(value):
            raise self.fail("duration", f"expected a finite number of seconds, found {describe(value)}")
        if value <= 0:
            raise self.fail("duration", f"expected a duration > 0 seconds, found {value}")
        return float(value)

    def domain(self, domains: Sequence[str]) -> str:
        value = self.text("domain")
        if domains and value not in domains:
            raise self.fail("domain", f"expected one of {', '.join(domains)}, found {describe(value)}")
        return value


class UniqueQids:
    """Rejects a qid seen before in the same file, naming the line of its first use."""

    def __init__(self):
        self.first_line: dict[int | str, int] = {}

    def check(self, ln: JsonLine, qid: int | str) -> None:
        if qid in self.first_line:
            raise ln.fail("qid", f"expected unique qids, found {qid!r} again (first on line {self.first_line[qid]})")
        self.first_line[qid] = ln.line_no


def require_samples(path: str | PathLike, samples: list[Sample]) -> list[Sample]:
    if not samples:
        raise InputError(path, None, None, "expected at least one annotation line, found none")
    return samples


# --------------------------------------------------------------------------- windows and clamping

class ClampWarning(UserWarning):
    """Ground-truth windows ending slightly past the video were clamped; ``count`` says how many."""

    def __init__(self, message: str, count: int):
        super().__init__(message)
        self.count = count


class Clamps:
    """Counts the windows one file had clamped, then warns once (see :func:`parse_windows`)."""

    def __init__(self):
        self.count = 0
        self.first: tuple[int, str] | None = None     # (line, field) of the first clamp
        self.max_excess = 0.0

    def add(self, ln: JsonLine, name: str, excess: float) -> None:
        self.count += 1
        self.max_excess = max(self.max_excess, excess)
        if self.first is None:
            self.first = (ln.line_no, name)

    def warn(self, path: str | PathLike, tolerance: float) -> None:
        if self.count:
            line, name = self.first
            warnings.warn(ClampWarning(
                f"{path}: clamped {self.count} ground-truth window end(s) that ran past the video's duration "
                f"by at most {self.max_excess:.3g} s (≤ one clip, {tolerance:g} s, is clamped; more is an error); "
                f"first on line {line}, field '{name}'", self.count), stacklevel=3)


def parse_windows(ln: JsonLine, duration: float, tolerance: float, clamps: Clamps,
                  name: str = "relevant_windows") -> tuple[tuple[float, float], ...]:
    """``[[start, end], ...]`` in seconds, at least one, each ``0 <= start < end``.

    An end past ``duration`` by at most ``tolerance`` (one clip: the features cannot resolve
    anything finer, so the clamped window covers the same frames) is clamped to the duration
    and counted in ``clamps``; a larger excess, or a start at or past the end of the video, is
    an error.
    """
    windows = ln.list_of(name, ln.get(name))
    if not windows:
        raise ln.fail(name, "expected at least one [start, end] window, found an empty list")
    out = []
    for i, w in enumerate(windows):
        item = f"{name}[{i}]"
        if not (isinstance(w, list) and len(w) == 2 and all(is_number(x) for x in w)):
            raise ln.fail(item, f"expected [start, end] with two finite numbers, found {describe(w)}")
        start, end = float(w[0]), float(w[1])
        if start >= end:
            raise ln.fail(item, f"expected start < end, found [{w[0]}, {w[1]}]")
        if start < 0 or start >= duration or end > duration + tolerance + 1e-9:
            raise ln.fail(item, f"expected a window inside [0, duration={duration:g}] (an end at most one clip, "
                                f"{tolerance:g} s, past the duration is clamped), found [{w[0]}, {w[1]}]")
        if end > duration:
            clamps.add(ln, item, end - duration)
            end = duration
        out.append((start, end))
    return tuple(out)
