"""Score a prediction file: ``python -m r2bench.bench.evaluate --dataset NAME GT.jsonl PRED.jsonl``.

The dataset (``datasets.registry``) names the reader of the ground truth and the metric. Prints
the brief metrics as strict JSON (the whole nested result with ``--full``; a metric that is
undefined, e.g. an empty length bucket, is ``null``); ``--per-query OUT.csv`` also writes one row
per query (per video for YouTube Highlights / TVSum).

Bad input (either file) prints one error line, naming file, line and field, to stderr and exits
with status 2. ``--lenient`` accepts what the official evaluator accepts and scores it as the
official code does (see :mod:`bench.metrics.submission`), with one warning per kind of deviation.
A result that cannot be written (``--per-query`` into a read-only folder, a full disk) prints one
error line naming the path and exits with status 1. Warnings, the readers' included, go to stderr
as ``warning: ...`` lines (through :mod:`logging`).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

from r2bench.bench.metrics import evaluate, get_metric, load_submission
from r2bench.core.errors import InputError
from r2bench.core.io import atomic_write
from r2bench.datasets.registry import DATASETS, get_dataset

log = logging.getLogger("r2bench.bench.evaluate")
EXIT_BAD_INPUT, EXIT_CANNOT_WRITE = 2, 1


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN/Infinity)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):   # NumPy scalars
        return strict_json(value.item())
    return value


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


@contextmanager
def _stderr_logging() -> Iterator[None]:
    """While the command runs: ``r2bench`` log records of level WARNING and above go to stderr as
    ``warning: ...``, and ``warnings.warn`` calls (e.g. a reader's clamp notice) are turned
    into such records instead of Python's raw ``file:line: Category: message`` output."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    handler.setLevel(logging.WARNING)
    root = logging.getLogger("r2bench")
    old_level = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.WARNING:
        root.setLevel(logging.WARNING)

    def show(message, category, filename, lineno, file=None, line=None):
        log.warning("%s", message)

    try:
        with warnings.catch_warnings():          # restores showwarning and the filters on exit
            warnings.simplefilter("always")
            warnings.showwarning = show
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r2bench evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("ground_truth", help="annotation file with labels, in the dataset's format")
    parser.add_argument("predictions", help="prediction JSONL (Moment-DETR format; vid + pred_saliency_scores "
                                            "for YouTube Highlights / TVSum)")
    parser.add_argument("--full", action="store_true", help="print the full nested result, not only 'brief'")
    parser.add_argument("--per-query", metavar="OUT.csv", help="write the per-query values (index qid) here")
    parser.add_argument("--lenient", action="store_true",
                        help="accept what the official evaluator accepts (wrong saliency lengths, repeated qids, "
                             "windows with negative times or end < start, ...) and score it as the official code "
                             "does, with a warning per kind of deviation; the default refuses such files")
    args = parser.parse_args(argv)
    spec = get_dataset(args.dataset)
    with _stderr_logging():
        try:
            gt = spec.read(args.ground_truth, require_labels=True)
            submission = load_submission(args.predictions, gt, get_metric(spec.metric), lenient=args.lenient)
            result = evaluate(spec.metric, submission, gt, validate_lines=False)
        except InputError as e:
            return _fail(str(e), EXIT_BAD_INPUT)
        text = json.dumps(strict_json(result.full if args.full else result.brief), indent=2, allow_nan=False)
        if args.per_query:
            try:
                atomic_write(args.per_query, result.per_query.to_csv())
            except OSError as e:
                return _fail(f"cannot write the per-query table to {args.per_query}: {e.strerror or e}; "
                             "choose a writable file with --per-query", EXIT_CANNOT_WRITE)
        try:
            print(text)
            sys.stdout.flush()
        except OSError as e:
            return _fail(f"cannot write the metrics to standard output: {e.strerror or e}", EXIT_CANNOT_WRITE)
    return 0


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
