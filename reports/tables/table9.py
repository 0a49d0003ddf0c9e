"""Table 9 (transfer methods): our runs beside the paper's numbers, as Markdown, LaTeX and CSV.

Rows are the paper's methods (matched by registry name through ``PAPER_ROW_NAMES``), in the
paper's order; methods the paper lacks come after. Columns: learnable parameters and peak
memory (exact, ``(est.)`` when estimated), memory as a multiple of R²-Tuning's beside the
paper's multiple (Full-Tuning: 58.5 / 10.6 = 5.5×), then the five metrics with intervals and
significance against **w/o Tuning** (see ``reports.tables.common``).

Why w/o Tuning is the reference: every row of Table 9 is a way of transferring CLIP into the
same head; the question each row answers is whether it beats not tuning CLIP at all — the
cheapest option, with the identical head and pipeline. (R²-Tuning against each baseline is
a different question, answered by the diff between two rows' marks and intervals.)

Usage: ``python -m r2bench.reports.tables.table9 SUITE_DIR [--out DIR] [--paper CSV] [--include-missing]``
(``SUITE_DIR`` holds the suite's ``ledger.jsonl``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from r2bench.core.errors import InputError
from r2bench.reports.paper import PAPER_ROW_NAMES
from r2bench.reports.records import load_records
from r2bench.reports.tables.common import (RANDOM_INIT_WARNING, Column, Layout, Row, RowResult, Table, TableError,
                                   build_table, default_row, write_table)

PAPER_TABLE = "table9_transfer_methods"
REFERENCE = "w/o Tuning"
R2_ROW = "R2-Tuning"
PAPER_SETTING = ("Paper: QVHighlights val, CLIP ViT-B/32 backbone (R²-Tuning, Table 9); "
                 "paper memory as printed (GB), at 224×224, batch 32, FP16.")
__all__ = ["LAYOUT", "render", "build", "RANDOM_INIT_WARNING"]


def row_of(record: dict) -> str:
    """Table 9's rows are the paper's method names."""
    return PAPER_ROW_NAMES.get(record["method"]) or default_row(record)


def kind(res: RowResult) -> str:
    """The paper's family for the row, else the category our registry gives it."""
    if res.paper is not None:
        return str(res.paper["kind"])
    return ", ".join(sorted({str(r.get("category")) for r in res.records if r.get("category")}))


LAYOUT = Layout(
    suite="table9",
    title="Table 9 — transfer methods: ours vs paper",
    rows=tuple(Row(name, {"method": name}) for name in PAPER_ROW_NAMES.values()),
    columns=(
        Column("#Params (M)", "params_M", "params_M", "size"),
        Column("Memory (GiB)", "memory_gib", "memory_GB", "size"),
        Column("Memory ×R²", "memory_gib", "memory_GB", "ratio"),
        Column("MR R1@0.5", "MR-full-R1@0.5", "MR-R1@0.5"),
        Column("MR R1@0.7", "MR-full-R1@0.7", "MR-R1@0.7"),
        Column("MR mAP", "MR-full-mAP", "MR-mAP"),
        Column("HD mAP", "HL-min-VeryGood-mAP", "HD-mAP"),
        Column("HD HIT@1", "HL-min-VeryGood-Hit1", "HD-HIT@1"),
    ),
    reference=REFERENCE,
    reference_why=("frozen CLIP with the same head: every transfer method should beat not tuning at all; "
                   "a mark says the difference is more than query noise."),
    paper_table=PAPER_TABLE,
    paper_setting=PAPER_SETTING,
    row_of=row_of,
    show_missing=False,
    info=(("Kind", kind),),
    ratio_to=R2_ROW,
)


def build(records: list[dict], paper=None, *, include_missing: bool = False) -> Table:
    return build_table(records, replace(LAYOUT, show_missing=include_missing), paper)


def render(suite_dir, out_dir=None, paper=None, *, include_missing: bool = False) -> list[Path]:
    """Write ``table9.md``, ``table9.tex`` and ``table9.csv`` (into ``out_dir``, default the suite
    folder) from ``<suite_dir>/ledger.jsonl``; return their paths.

    ``paper``: the paper table (``None`` = committed copy, a CSV path, or a DataFrame)."""
    table = build(load_records(suite_dir), paper, include_missing=include_missing)
    return write_table(table, out_dir or suite_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2bench.reports.tables.table9", description=__doc__.splitlines()[0])
    parser.add_argument("suite_dir", help="folder holding the suite's ledger.jsonl")
    parser.add_argument("--out", help="output directory (default: the suite folder)")
    parser.add_argument("--paper", help="paper table CSV (default: the committed copy)")
    parser.add_argument("--include-missing", action="store_true", help="also list paper methods we did not run")
    args = parser.parse_args(argv)
    try:
        paths = render(args.suite_dir, args.out, args.paper, include_missing=args.include_missing)
    except (InputError, TableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
