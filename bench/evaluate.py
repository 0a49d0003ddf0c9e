"""Score a prediction file: ``python -m bench.evaluate --dataset qvhighlights GT.jsonl PRED.jsonl [--full]``.

Prints the official "brief" metrics as JSON (the whole nested result with ``--full``).
Bad input (either file) prints the error to stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from bench.metrics.qvhighlights import evaluate_qvhighlights, load_submission
from datasets.formats.qvhighlights import read_jsonl
from datasets.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["qvhighlights"], default="qvhighlights")
    parser.add_argument("ground_truth", help="annotation JSONL with labels (QVHighlights format)")
    parser.add_argument("predictions", help="prediction JSONL (Moment-DETR format)")
    parser.add_argument("--full", action="store_true", help="print the full nested result, not only 'brief'")
    args = parser.parse_args(argv)
    try:
        gt = read_jsonl(args.ground_truth, require_labels=True)
        submission = load_submission(args.predictions, gt)
        result = evaluate_qvhighlights(submission, [s.raw for s in gt])
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result if args.full else result["brief"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
