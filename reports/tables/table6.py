"""Table 6: MR mAP by query length (words), ours beside the paper's.

Each run's per-query MR mAP (``per_query.csv``) is joined on qid with the query text of its
predictions file, and the queries are bucketed by their number of words. QVHighlights uses the
paper's buckets (1–10, 11–20, 21–30, 31–40, 41+ words). Other datasets use buckets over the
lengths that occur in their evaluation queries (up to five buckets of about equal size, see
:func:`length_buckets`): the built-in benchmark's queries are 2–13 words long, so the paper's
edges would put all of them in one bucket. The table says so, and lists the paper's rows
with their own edges underneath.

Per cell: the bucket's mean MR mAP with a 95 % bootstrap interval over its queries (mean ±
std over seeds with several seeds), and ``*`` when the row differs from the reference row
(w/o Tuning) on the bucket's queries (paired permutation test; Holm over the table's rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from r2bench.reports import records as rec
from r2bench.reports.paper import paper_table
from r2bench.reports.tables.common import (Block, Cell, Column, Layout, Table, TableSpec, _per_query_matrix,
                                           build_table, cells_on_queries, fmt, pool, setting_lines, write_table)

KEY = "MR-full-mAP"
PAPER_TABLE = "table6_query_length"
PAPER_EDGES = ((1, 10), (11, 20), (21, 30), (31, 40), (41, None))
PAPER_COLUMNS = ("words_1-10", "words_11-20", "words_21-30", "words_31-40", "words_41+")
MAX_BUCKETS = 5



@dataclass(frozen=True)
class QueryLengthTable(TableSpec):
    """Table 6's declaration: the suite's rows by query-length bucket (one table per dataset)."""

    def build(self, records: list[dict], layout: Layout, out_dir: Path) -> list[Table]:
        return build(records, layout)


def label(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{lo}+ words"
    return f"{lo} word{'s' if lo > 1 else ''}" if lo == hi else f"{lo}–{hi} words"


def length_buckets(lengths, n: int = MAX_BUCKETS) -> tuple[tuple[int, int | None], ...]:
    """Up to ``n`` buckets of consecutive word counts holding about equal numbers of queries
    (a bucket closes once it holds ≥ 1/n of the queries; a small remainder joins the last one)."""
    counts = pd.Series(list(lengths)).value_counts().sort_index()
    if counts.empty:
        return ()
    target = counts.sum() / n
    buckets, start, held = [], None, 0
    for length, count in counts.items():
        start = length if start is None else start
        held += count
        if held >= target and len(buckets) < n - 1:
            buckets.append([start, length])
            start, held = None, 0
    if start is not None:
        if buckets and held < target / 2:
            buckets[-1][1] = int(counts.index[-1])
        else:
            buckets.append([start, int(counts.index[-1])])
    return tuple((int(lo), int(hi)) for lo, hi in buckets)


def bucket_of(words: int, buckets) -> int | None:
    for i, (lo, hi) in enumerate(buckets):
        if words >= lo and (hi is None or words <= hi):
            return i
    return None


def query_lengths(records: list[dict]) -> pd.Series:
    """Words per query (index qid as text) from the runs' predictions files (first run wins)."""
    lengths = {}
    for r in records:
        for line in rec.predictions(r):
            qid = str(line.get("qid"))
            if qid not in lengths and isinstance(line.get("query"), str):
                lengths[qid] = len(line["query"].split())
    return pd.Series(lengths, dtype=float)


def build(records: list[dict], layout: Layout, paper=None) -> list[Table]:
    """One table per dataset found in ``records`` (columns: that dataset's length buckets), with
    the rows and reference of ``layout`` (the suite's declaration)."""
    base_layout = layout
    frame = paper if isinstance(paper, pd.DataFrame) else (pd.read_csv(paper) if paper else
                                                           paper_table(layout.paper_table or PAPER_TABLE))
    datasets = list(dict.fromkeys(r.get("dataset") for r in records)) or [None]
    tables = []
    for dataset in datasets:
        here = [r for r in records if r.get("dataset") == dataset]
        ok = [r for r in here if r.get("status") == "ok"]
        groups = pool(ok, base_layout, f" on {dataset}")
        lengths = query_lengths(ok)
        paper_edges = dataset == "qvhighlights"
        buckets = PAPER_EDGES if paper_edges else length_buckets(lengths.to_numpy(int))
        columns = tuple(Column(label(lo, hi), KEY, PAPER_COLUMNS[i] if paper_edges else None)
                        for i, (lo, hi) in enumerate(buckets))
        layout = replace(base_layout, columns=columns)
        base = build_table(here, replace(base_layout, columns=()), frame)  # rows, statuses, failure notes
        block = Block("", dataset, columns)
        matrices, notes = {}, {}
        for row, runs in groups.items():
            m, why = _per_query_matrix(runs, KEY)
            if m is None:
                notes[row] = why.replace("no interval, no test", "no buckets")
            else:
                missing = m.index.difference(lengths.index)
                if len(missing):
                    notes[row] = f"{len(missing)} qids have no query text in the predictions"
                matrices[row] = m
        words = lengths.reindex(next(iter(matrices.values())).index) if matrices else pd.Series(dtype=float)
        sizes = []
        for b, col in enumerate(columns):
            qids = [q for q, w in words.items() if not math.isnan(w) and bucket_of(int(w), buckets) == b]
            sizes.append(len(qids))
            cells, more = cells_on_queries(matrices, groups, qids, base_layout.reference, KEY)
            for res in base.rows:
                cell = cells.get(res.name, Cell())
                if res.paper is not None and col.paper:
                    cell.paper = float(res.paper[col.paper])
                    cell.paper_text = fmt(cell.paper)
                res.cells[(0, col.label)] = cell
            for row, note in more.items():
                notes.setdefault(row, note)
        for res in base.rows:
            if res.name in notes:
                res.notes.append(notes[res.name])
        edges = ("the paper's bucket edges" if paper_edges else
                 "bucket edges over the lengths of this dataset's queries — they differ from the paper's "
                 "(1–10 … 41+ words), which would put every query here in one bucket")
        setting = setting_lines(here, layout, [block])
        setting.insert(-1, f"Queries per bucket: {', '.join(f'{c.label}: {n}' for c, n in zip(columns, sizes))} "
                           f"({edges}).")
        paper_rows = "; ".join(f"{r['method']} " + " / ".join(f"{float(r[c]):.2f}" for c in PAPER_COLUMNS)
                               for _, r in frame.iterrows())
        footer = [f"Paper's rows (QVHighlights val; words 1–10 / 11–20 / 21–30 / 31–40 / 41+): {paper_rows}."]
        tables.append(Table(layout, [block], base.rows, setting, footer))
    return tables
