"""Score a prediction file: ``python -m r2bench.bench.evaluate --dataset NAME GT.jsonl PRED.jsonl``.

The dataset (``datasets.registry``) names the reader of the ground truth and the metric. Prints
the brief metrics as JSON (the whole nested result with ``--full``); ``--per-query OUT.csv``
also writes one row per query (per video for YouTube Highlights / TVSum). Bad input (either
file) prints the error, naming file, line and field, to stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from r2bench.bench.metrics import evaluate, get_metric, load_submission
from r2bench.core.errors import InputError
from r2bench.core.io import atomic_write
from r2bench.datasets.registry import DATASETS, get_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r2bench evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("ground_truth", help="annotation file with labels, in the dataset's format")
    parser.add_argument("predictions", help="prediction JSONL (Moment-DETR format; vid + pred_saliency_scores "
                                            "for YouTube Highlights / TVSum)")
    parser.add_argument("--full", action="store_true", help="print the full nested result, not only 'brief'")
    parser.add_argument("--per-query", metavar="OUT.csv", help="write the per-query values (index qid) here")
    args = parser.parse_args(argv)
    spec = get_dataset(args.dataset)
    try:
        gt = spec.read(args.ground_truth, require_labels=True)
        submission = load_submission(args.predictions, gt, get_metric(spec.metric))
        result = evaluate(spec.metric, submission, gt, validate_lines=False)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.per_query:
        atomic_write(args.per_query, result.per_query.to_csv())
    print(json.dumps(result.full if args.full else result.brief, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
