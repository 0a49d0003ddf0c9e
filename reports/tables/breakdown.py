"""The built-in benchmark's breakdown by what each query asks: MR mAP per (row, query family).

No real dataset says which detail a query needs. The built-in benchmark does: a query names its
target by the coarsest description that is unambiguous in its video (colour and shape; or also
its size, the half of the frame it is in, or its motion), so each query belongs to a family:

* ``coarse``: colour and shape only;
* ``fine``: at least one fine attribute; and, by the attribute it names (a query may name
  several), ``fine: size``, ``fine: position`` (the half of the frame), ``fine: motion``.

Per family, each row's cell is the mean MR mAP over the family's queries with its 95 %
bootstrap interval (mean ± seed std with several seeds), and the mark against the suite's
reference row on those same queries (paired permutation; Holm over the rows), as in every
table. Written beside the suite's table as ``breakdown.md/.tex`` and ``breakdown.csv`` (one
line per row and family), and shown in the report. Rendered for any suite whose runs are on
the built-in benchmark (``dataset == "synthetic"``).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd

from r2bench.core.io import atomic_write
from r2bench.reports import records as rec
from r2bench.reports.tables.common import (Block, Cell, Column, Layout, Table, _per_query_matrix, build_table,
                                           cells_on_queries, pool, setting_lines, write_table)

KEY = "MR-full-mAP"
DATASET = "synthetic"
FAMILIES = ("coarse", "fine", "fine: size", "fine: position", "fine: motion")
SIZE_WORDS = ("small", "large")
POSITION_WORDS = ("upper half", "lower half")
MOTION_WORDS = ("moving ", "standing still")


def families(query: str) -> tuple[str, ...]:
    """The families of a built-in benchmark query, read from its words (``generator.describe``
    writes them): ``("coarse",)`` or ``("fine", "fine: size", …)``."""
    q = f" {query.lower()} "
    fine = [name for name, words in (("fine: size", SIZE_WORDS), ("fine: position", POSITION_WORDS),
                                     ("fine: motion", MOTION_WORDS))
            if any(f" {w}" in q for w in words)]
    return ("fine", *fine) if fine else ("coarse",)


def applies(records: list[dict]) -> bool:
    return any(r.get("dataset") == DATASET and r.get("status") == "ok" for r in records)


def build(records: list[dict], layout: Layout) -> Table | None:
    """The breakdown table of the suite's runs on the built-in benchmark (None without any)."""
    here = [r for r in records if r.get("dataset") == DATASET]
    ok = [r for r in here if r.get("status") == "ok"]
    if not ok:
        return None
    base_layout = replace(layout, suite=f"{layout.suite}_breakdown",
                          title=f"{layout.title.split(':')[0]} — breakdown by query family (built-in benchmark)",
                          paper_table=None, paper_setting="", roles={"": (DATASET,)}, info=(), ratio_to=None,
                          notes=(), show_missing=False)
    groups = pool(ok, base_layout, f" on {DATASET}")
    queries = {}
    for r in ok:
        for line in rec.predictions(r):
            queries.setdefault(str(line.get("qid")), line.get("query") or "")
    family_of = {qid: families(q) for qid, q in queries.items()}
    matrices, notes = {}, {}
    for row, runs in groups.items():
        m, why = _per_query_matrix(runs, KEY)
        if m is None:
            notes[row] = why
        else:
            matrices[row] = m
    columns = tuple(Column(f.capitalize() if f in ("coarse", "fine") else f"Fine: {f.split(': ')[1]}", KEY)
                    for f in FAMILIES)
    base = build_table(here, replace(base_layout, columns=()))
    long_rows, sizes = [], []
    for b, (family, col) in enumerate(zip(FAMILIES, columns)):
        qids = [q for q, fams in family_of.items() if family in fams]
        sizes.append(len(qids))
        cells, more = cells_on_queries(matrices, groups, qids, layout.reference, KEY)
        for res in base.rows:
            cell = cells.get(res.name, Cell())
            res.cells[(0, col.label)] = cell
            if not math.isnan(cell.mean):
                long_rows.append(dict(row=res.name, family=family, queries=cell.n_queries, seeds=cell.n_seeds,
                                      mr_map=round(cell.mean, 4), ci_low=round(cell.low, 4),
                                      ci_high=round(cell.high, 4), seed_std=round(cell.std, 4),
                                      spread=cell.spread, p_holm=cell.p_holm, significant=cell.significant))
        for row, note in more.items():
            notes.setdefault(row, note)
    for res in base.rows:
        if res.name in notes:
            res.notes.append(notes[res.name])
    block = Block("", DATASET, columns)
    lay = replace(base_layout, columns=columns)
    setting = setting_lines(here, lay, [block])
    setting.insert(-1, "Queries per family: " + ", ".join(f"{c.label} {n}" for c, n in zip(columns, sizes))
                   + " (a fine query is counted under each fine attribute it names).")
    footer = ["Families: the coarsest description that singles the target out in its video — colour and shape "
              "(coarse), or also its size, the half of the frame it is in, or its motion (fine). A method that "
              "recovers fine detail gains on the fine columns (docs/benchmark.md)."]
    table = Table(lay, [block], [r for r in base.rows if r.records], setting, footer)
    table.long = pd.DataFrame(long_rows, columns=["row", "family", "queries", "seeds", "mr_map", "ci_low", "ci_high",
                                                  "seed_std", "spread", "p_holm", "significant"])
    return table


def write(table: Table, out_dir: str | Path) -> list[Path]:
    """``<suite>_breakdown.md/.tex/.csv`` (the wide table) and ``breakdown.csv`` (one line per row and family)."""
    paths = write_table(table, out_dir)
    paths.append(atomic_write(Path(out_dir) / "breakdown.csv", table.long.to_csv(index=False, lineterminator="\n")))
    return paths
