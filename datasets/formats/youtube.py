"""YouTube Highlights JSONL (the UniVTG / R²-Tuning release): one video per line.

Fields: ``qid`` (= ``vid``), ``vid``, ``query`` (the domain name), ``duration`` (s), ``domain``
(one of :data:`DOMAINS`), ``label`` (one ``[0]``/``[1]`` row per clip: 1 = highlight) and,
optionally, ``match`` (−1/0/1 per clip; the official evaluator scores ``match > 0``, so it must
agree with ``label``), ``clip`` (frame ranges), ``fps``, ``frames``. Clips are consecutive
steps of the video (about 1.7 s; they overlap in the source, 100 frames every 50), so a
video's clip length is ``duration / number of clips``: the R²-Tuning frame rate is "per video",
one frame per labelled clip.
"""
from __future__ import annotations

from os import PathLike
from typing import Sequence

from r2bench.datasets.formats.base import (JsonLine, Sample, UniqueQids, describe, iter_jsonl, register_reader,
                                   require_samples)

DOMAINS = ("dog", "gymnastics", "parkour", "skating", "skiing", "surfing")


def _parse_labels(ln: JsonLine) -> tuple[int, ...]:
    rows = ln.list_of("label", ln.get("label"))
    if not rows:
        raise ln.fail("label", "expected one [0] or [1] row per clip, found an empty list")
    out = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 1 and row[0] in (0, 1) and not isinstance(row[0], bool)):
            raise ln.fail(f"label[{i}]", f"expected [0] or [1] (highlight or not), found {describe(row)}")
        out.append(int(row[0]))
    if ln.present("match"):
        match = ln.list_of("match", ln.get("match"))
        if len(match) != len(out):
            raise ln.fail("match", f"expected one value per clip of 'label' ({len(out)}), found {len(match)}")
        for i, (m, y) in enumerate(zip(match, out)):
            if m not in (-1, 0, 1) or isinstance(m, bool):
                raise ln.fail(f"match[{i}]", f"expected -1, 0 or 1, found {describe(m)}")
            if (m > 0) != bool(y):
                raise ln.fail(f"match[{i}]", f"disagrees with label[{i}]={y} (the official evaluator scores "
                                             f"match > 0 as the highlight label), found {m}")
    return tuple(out)


@register_reader("youtube_highlights")
def read_youtube(path: str | PathLike, *, clip_seconds: float | None = None, require_labels: bool = True,
                 domains: Sequence[str] = DOMAINS) -> list[Sample]:
    """Read and validate a YouTube Highlights file; every clip is labelled, one annotator."""
    samples: list[Sample] = []
    qids = UniqueQids()
    for line_no, obj in iter_jsonl(path):
        ln = JsonLine(path, line_no, obj)
        qid = ln.qid()
        qids.check(ln, qid)
        vid = ln.text("vid")
        query = ln.text("query")
        duration = ln.duration()
        domain = ln.domain(domains)
        labels: tuple[int, ...] = ()
        target: tuple[float, ...] = ()
        if require_labels or ln.present("label"):
            labels = _parse_labels(ln)
            # the public code trains on (match + 1) / 2: 0, 0.5 (match 0) or 1; from label without match
            target = tuple((m + 1) / 2 for m in obj["match"]) if ln.present("match") else tuple(map(float, labels))
        n = len(labels) if labels else None
        if n is None:   # unlabelled: one clip per clip_seconds (or the release's 50-frame step at 30 fps)
            n = max(1, round(duration / (clip_seconds or 50 / 30)))
        samples.append(Sample(qid=qid, vid=vid, query=query, duration=duration, windows=(),
                              clip_ids=tuple(range(len(labels))), saliency=tuple((float(y),) for y in labels),
                              clip_seconds=duration / n, num_clips=n, domain=domain, saliency_target=target,
                              source=f"{path}:{line_no}", raw=obj))
    return require_samples(path, samples)
