"""TVSum JSONL (the UniVTG / R²-Tuning release): one video per line.

Fields: ``qid`` (= ``vid``), ``vid``, ``query`` (the video's title), ``domain`` (one of
:data:`DOMAINS`), ``label`` (one row per 2-s clip, each row the scores 1–5 of every annotator;
20 in TVSum) and ``duration``. In this release ``duration`` counts 2-s clips, not seconds
(sTEELN-vY30: 4,468 frames at 30 fps = 149 s, ``duration`` 74 = its number of label rows), so
it must equal the number of rows; the Sample's ``duration`` is converted to seconds.
"""
from __future__ import annotations

from os import PathLike
from typing import Sequence

from r2bench.datasets.formats.base import (JsonLine, Sample, UniqueQids, describe, is_number, iter_jsonl,
                                   register_reader, require_samples)

DOMAINS = ("VT", "VU", "GA", "MS", "PK", "PR", "FM", "BK", "BT", "DS")   # the paper's Table 4 order
CLIP_SECONDS = 2.0
MIN_SCORE, MAX_SCORE = 1, 5


def _parse_labels(ln: JsonLine) -> tuple[tuple[float, ...], ...]:
    rows = ln.list_of("label", ln.get("label"))
    if not rows:
        raise ln.fail("label", "expected one row of annotator scores per clip, found an empty list")
    width = None
    out = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and row and all(is_number(s) and MIN_SCORE <= s <= MAX_SCORE for s in row)):
            raise ln.fail(f"label[{i}]", f"expected a non-empty list of scores in {MIN_SCORE}..{MAX_SCORE} "
                                         f"(one per annotator), found {describe(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ln.fail(f"label[{i}]", f"expected {width} scores (as in label[0]: one per annotator), "
                                         f"found {len(row)}")
        out.append(tuple(float(s) for s in row))
    return tuple(out)


@register_reader("tvsum")
def read_tvsum(path: str | PathLike, *, clip_seconds: float | None = CLIP_SECONDS, require_labels: bool = True,
               domains: Sequence[str] = DOMAINS) -> list[Sample]:
    """Read and validate a TVSum file (every clip labelled by every annotator)."""
    clip = float(clip_seconds or CLIP_SECONDS)
    samples: list[Sample] = []
    qids = UniqueQids()
    for line_no, obj in iter_jsonl(path):
        ln = JsonLine(path, line_no, obj)
        qid = ln.qid()
        qids.check(ln, qid)
        vid = ln.text("vid")
        query = ln.text("query")
        domain = ln.domain(domains)
        n = ln.get("duration")
        if isinstance(n, bool) or not (isinstance(n, int) or (is_number(n) and float(n).is_integer())) or n <= 0:
            raise ln.fail("duration", f"expected a positive whole number of {clip:g}-s clips (this release counts "
                                      f"clips, not seconds), found {describe(n)}")
        n = int(n)
        labels: tuple[tuple[float, ...], ...] = ()
        if require_labels or ln.present("label"):
            labels = _parse_labels(ln)
            if len(labels) != n:
                raise ln.fail("duration", f"expected the number of clips, which is the number of 'label' rows "
                                          f"({len(labels)}), found {n}")
        samples.append(Sample(qid=qid, vid=vid, query=query, duration=n * clip, windows=(),
                              clip_ids=tuple(range(len(labels))), saliency=labels, clip_seconds=clip,
                              # the public code: (sum of the 20 scores − 20) / 80, i.e. (mean − 1) / 4
                              saliency_target=tuple((sum(r) / len(r) - MIN_SCORE) / (MAX_SCORE - MIN_SCORE)
                                                    for r in labels),
                              num_clips=n, domain=domain, source=f"{path}:{line_no}", raw=obj))
    return require_samples(path, samples)
