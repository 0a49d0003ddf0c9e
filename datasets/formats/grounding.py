"""Moment-retrieval JSONL (Charades-STA, TACoS, Ego4D-NLQ), as the UniVTG and R²-Tuning
releases ship them: one query per line with ``qid``, ``vid``, ``query``, ``duration`` (s) and
``relevant_windows`` ([[start, end], …] s). These files carry no saliency labels; any other
field is kept in ``Sample.raw`` and otherwise ignored.
"""
from __future__ import annotations

import math
from os import PathLike
from typing import Sequence

from r2bench.datasets.formats.base import (Clamps, JsonLine, Sample, UniqueQids, iter_jsonl, parse_windows,
                                   register_reader, require_samples)


def clips_in(duration: float, clip_seconds: float) -> int:
    """Whole clips of ``clip_seconds`` in ``duration`` (at least one)."""
    return max(1, math.floor(duration / clip_seconds + 1e-6))


@register_reader("grounding")
def read_grounding(path: str | PathLike, *, clip_seconds: float | None, require_labels: bool = True,
                   domains: Sequence[str] = ()) -> list[Sample]:
    """Read and validate a moment-retrieval file; ``clip_seconds`` is the dataset's feature
    period (1 s Charades-STA, 2 s TACoS/Ego4D-NLQ), which also bounds the clamping of window
    ends past the duration (see :func:`datasets.formats.base.parse_windows`)."""
    if not clip_seconds or clip_seconds <= 0:
        raise ValueError(f"moment-retrieval files need a positive clip_seconds (got {clip_seconds})")
    samples: list[Sample] = []
    qids, clamps = UniqueQids(), Clamps()
    for line_no, obj in iter_jsonl(path):
        ln = JsonLine(path, line_no, obj)
        qid = ln.qid()
        qids.check(ln, qid)
        vid = ln.text("vid")
        query = ln.text("query")
        duration = ln.duration()
        windows: tuple[tuple[float, float], ...] = ()
        if require_labels or ln.present("relevant_windows"):
            windows = parse_windows(ln, duration, clip_seconds, clamps)
        samples.append(Sample(qid=qid, vid=vid, query=query, duration=duration, windows=windows, clip_ids=(),
                              saliency=(), clip_seconds=float(clip_seconds),
                              num_clips=clips_in(duration, clip_seconds), source=f"{path}:{line_no}", raw=obj))
    clamps.warn(path, clip_seconds)
    return require_samples(path, samples)
