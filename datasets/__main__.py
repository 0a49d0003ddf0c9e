"""Summarise an annotation file: ``python -m r2bench.datasets --dataset NAME FILE``.

Reads FILE with the dataset's reader (every record validated; ground truth may be absent, as
in a test split) and prints JSON: ``num_queries``, ``num_videos``, duration statistics (per
video, seconds), windows per query, window lengths, clips, annotators, domains, how many
window ends were clamped to the duration, and ``missing``: the labels the dataset's tasks need
that this file lacks, with the number of queries lacking them. Exit status 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter

import numpy as np

from r2bench.core.errors import InputError
from r2bench.datasets.formats.base import ClampWarning, Sample
from r2bench.datasets.registry import DATASETS, DatasetSpec, get_dataset


def _stats(values: list[float], digits: int = 2) -> dict | None:
    if not values:
        return None
    x = np.asarray(values, dtype=float)
    return {"min": round(float(x.min()), digits), "median": round(float(np.median(x)), digits),
            "mean": round(float(x.mean()), digits), "max": round(float(x.max()), digits)}


def summarize(spec: DatasetSpec, samples: list[Sample], clamped: int = 0) -> dict:
    """The JSON summary of ``samples`` read with ``spec``'s reader."""
    videos: dict[str, Sample] = {}
    for s in samples:
        videos.setdefault(s.vid, s)
    durations = [s.duration for s in videos.values()]
    lengths = [e - b for s in samples for b, e in s.windows]
    out: dict = {
        "dataset": spec.name,
        "num_queries": len(samples),
        "num_videos": len(videos),
        "duration_s": {**_stats(durations), "total_hours": round(sum(durations) / 3600, 2)},
        "queries_per_video": _stats(list(Counter(s.vid for s in samples).values())),
    }
    if "mr" in spec.tasks:
        labelled = [s for s in samples if s.windows]
        out["windows_per_query"] = _stats([len(s.windows) for s in labelled])
        out["window_length_s"] = _stats(lengths)
        out["clamped_window_ends"] = clamped
    if "hd" in spec.tasks:
        labelled = [s for s in samples if s.saliency]
        out["clips_per_video"] = _stats([s.num_clips for s in videos.values()])
        out["clip_seconds"] = _stats([s.clip_seconds for s in videos.values()], 3)
        out["labelled_clips_per_query"] = _stats([len(s.clip_ids) for s in labelled])
        out["annotators"] = sorted({len(s.saliency[0]) for s in labelled})
    if spec.domains or any(s.domain for s in samples):
        out["domains"] = dict(Counter(s.domain for s in samples))
    missing = {}
    if "mr" in spec.tasks and (n := sum(not s.windows for s in samples)):
        missing["relevant_windows (moment retrieval)"] = n
    if "hd" in spec.tasks and (n := sum(not s.saliency for s in samples)):
        missing["saliency labels (highlight detection)"] = n
    out["missing"] = missing
    out["evaluable"] = not missing
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m r2bench.datasets", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("file", help="annotation file in the dataset's format")
    args = p.parse_args(argv)
    spec = get_dataset(args.dataset)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ClampWarning)
            samples = spec.read(args.file, require_labels=False)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    clamped = 0
    for w in caught:
        if isinstance(w.message, ClampWarning):
            clamped += w.message.count
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    print(json.dumps({"file": args.file, **summarize(spec, samples, clamped)}, indent=2))
    return 0


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
