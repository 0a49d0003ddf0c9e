"""QVHighlights-format annotation files (JSONL, one query per line), read and validated.

Fields: ``qid``, ``vid``, ``query``, ``duration`` (s), ``relevant_windows`` ([[start, end], …]
s), ``relevant_clip_ids`` (2-s clips) and ``saliency_scores`` (one row of three integer
scores 0–4 per clip id, one per annotator). The built-in synthetic benchmark uses this format.
"""
from __future__ import annotations

from os import PathLike
from typing import Sequence

from r2bench.datasets.formats.base import (Clamps, JsonLine, Sample, UniqueQids, describe, iter_jsonl, parse_windows,
                                   register_reader, require_samples)

CLIP_SECONDS = 2          # QVHighlights saliency clips are 2 s long
NUM_ANNOTATORS = 3
MAX_SALIENCY = 4


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


@register_reader("qvhighlights")
def read_jsonl(path: str | PathLike, *, require_labels: bool = True, clip_seconds: float | None = CLIP_SECONDS,
               domains: Sequence[str] = ()) -> list[Sample]:
    """Read and validate a QVHighlights-format file.

    With ``require_labels=False`` (the test split) the label fields may be absent (empty
    tuples in the Sample); ``relevant_windows`` and the clip pair
    (``relevant_clip_ids``/``saliency_scores``) are each validated when present. Clips are
    always 2 s (``clip_seconds`` is accepted for the common reader signature and must be 2).
    """
    if clip_seconds not in (None, CLIP_SECONDS):
        raise ValueError(f"QVHighlights-format clips are {CLIP_SECONDS} s (got clip_seconds={clip_seconds})")
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
        clip_ids: tuple[int, ...] = ()
        saliency: tuple[tuple[int, ...], ...] = ()
        if require_labels or "relevant_windows" in obj:
            windows = parse_windows(ln, duration, CLIP_SECONDS, clamps)
        if require_labels or "relevant_clip_ids" in obj or "saliency_scores" in obj:
            clip_ids, saliency = _parse_clips(ln, duration)
        samples.append(Sample(qid=qid, vid=vid, query=query, duration=duration, windows=windows,
                              clip_ids=clip_ids, saliency=saliency, clip_seconds=CLIP_SECONDS,
                              saliency_target=tuple(sum(row) / (len(row) * MAX_SALIENCY) for row in saliency),
                              num_clips=int(duration / CLIP_SECONDS), source=f"{path}:{line_no}", raw=obj))
    clamps.warn(path, CLIP_SECONDS)
    return require_samples(path, samples)
