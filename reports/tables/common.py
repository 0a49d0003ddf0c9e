"""The table engine every suite's renderer uses: ledger records → a table with an interval and
a significance mark in every metric cell, our rows beside the paper's, as Markdown, LaTeX, CSV
and HTML.

A table is declared as a :class:`Layout`: its rows (our row names and the paper row each
matches), its columns (our metric key and the paper's column), the reference row, and which of
our datasets plays each of the paper's dataset column groups (e.g. the paper's QVHighlights
columns ← our ``synthetic`` or ``qvhighlights`` runs; its Ego4D columns ← ``ego4d_nlq``).

What a cell shows (see ``docs/statistics.md``):

* metric cells: mean ± std over seeds when a row has several seeds, else the mean with a 95 %
  bootstrap interval over queries (from the runs' ``per_query.csv``); ``*`` when the method
  differs from the reference row (``stats.method_test``: seed and query variance, both rows with
  ≥ 2 seeds), ``†`` when one of the rows has one seed and the two trained models differ on the
  same queries (paired permutation test; retraining variance not counted); Holm-corrected over
  the rows of the table, per metric, α = 0.05. A row
  without per-query values shows its mean without interval, and its note says so.
* size cells (learnable parameters, peak memory): exact measurements, no interval; memory
  that was estimated rather than measured is marked ``(est.)``.
* ratio cells: a size divided by the same size of one named row (Table 9's memory ×R²).

Runs are pooled into a row with :func:`reports.stats.group_runs`, which refuses runs whose
identity differs in anything but the seed (:class:`TableError` names the row and the field).
Markdown and LaTeX are written by hand, so neither ``tabulate`` nor ``jinja2`` is needed.
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from r2bench.core.errors import InputError
from r2bench.core.io import atomic_write
from r2bench.reports import records as rec
from r2bench.reports import stats
from r2bench.reports.paper import paper_table

MISSING = "–"
NOT_RUN = "not run"
NOTE_CHARS = 90  # Markdown/LaTeX notes are cut here; the CSV keeps the full note
ALPHA = 0.05
N_RESAMPLES = stats.N_RESAMPLES   # bootstrap and permutation resamples per cell (tests lower it)
RANDOM_INIT_WARNING = "WARNING: randomly initialised backbone — metrics not comparable to the paper."
MARK = "*"
REFUSED = "refused"    # a cell whose run's per-query file no longer matches its record


class TableError(ValueError):
    """A ledger that cannot be rendered honestly (e.g. runs of two configurations under one row)."""


# --------------------------------------------------------------------------- declarations

def default_row(record: dict) -> str:
    """The row a record renders under: its ``row`` field (set from ``RunSpec.row``), else its label."""
    return record.get("row") or record.get("label") or record["method"]


@dataclass(frozen=True)
class Column:
    """One column: ``key`` is a brief metric (``metrics[key]``) or a record field (``params_M``);
    ``paper`` the paper CSV's column; ``group`` the dataset column group (``""`` = the only one)."""

    label: str
    key: str
    paper: str | None = None
    kind: str = "metric"          # metric | size | ratio
    group: str = ""
    digits: int = 2

    def __post_init__(self):
        if self.kind not in ("metric", "size", "ratio"):
            raise ValueError(f"column {self.label!r}: kind must be metric, size or ratio, got {self.kind!r}")


@dataclass(frozen=True)
class Row:
    """One of our rows; ``paper`` picks the paper's row: ``{paper column: value}`` (compared as text)."""

    name: str
    paper: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Layout:
    suite: str
    title: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    reference: str
    reference_why: str
    paper_table: str | None = None
    paper_setting: str = ""
    # dataset column group -> our datasets that fill it (empty tuple: any dataset)
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {"": ()})
    row_of: Callable[[dict], str] = default_row
    show_missing: bool = True      # list layout rows nobody ran ("not run")
    info: tuple[tuple[str, Callable], ...] = ()   # extra text columns: (header, fn(RowResult) -> str)
    ratio_to: str | None = None    # the row ratio columns divide by
    notes: tuple[str, ...] = ()    # extra lines under the table

    def __post_init__(self):
        names = [r.name for r in self.rows]
        if len(set(names)) != len(names):
            raise ValueError(f"layout {self.suite}: duplicate row names {names}")
        if self.reference not in names:
            raise ValueError(f"layout {self.suite}: reference row {self.reference!r} is not a row ({names})")
        unknown = {c.group for c in self.columns} - set(self.roles)
        if unknown:
            raise ValueError(f"layout {self.suite}: column groups {sorted(unknown)} have no dataset role")


# --------------------------------------------------------------------------- results

@dataclass
class Cell:
    text: str = MISSING
    mean: float = math.nan
    low: float = math.nan
    high: float = math.nan
    std: float = math.nan
    n_seeds: int = 0
    n_queries: int = 0
    spread: str = ""              # "seed std" | "bootstrap" | "" (no interval)
    p_holm: float = math.nan
    significant: bool = False
    seed_variance: str = ""     # how the comparison counted retraining variance (stats.method_test)
    paper: float = math.nan
    paper_text: str = MISSING


@dataclass
class Block:
    """The columns of one dataset group, filled from one dataset's runs (``dataset`` None: not run)."""

    group: str
    dataset: str | None
    columns: tuple[Column, ...]
    multi: bool = False           # the group has several datasets: headers name the dataset

    def header(self, column: Column) -> str:
        prefix = f"{self.group} " if self.group else ""
        where = f"[{self.dataset}] " if self.multi and self.dataset else ""
        return f"{prefix}{where}{column.label}"


@dataclass
class RowResult:
    name: str
    paper: pd.Series | None
    records: list[dict] = field(default_factory=list)
    cells: dict = field(default_factory=dict)       # (block index, column label) -> Cell
    status: str = NOT_RUN
    runs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        return "; ".join(dict.fromkeys(n for n in self.notes if n))


@dataclass
class Table:
    layout: Layout
    blocks: list[Block]
    rows: list[RowResult]
    setting: list[str]
    footer: list[str]

    @property
    def name(self) -> str:
        return self.layout.suite


# --------------------------------------------------------------------------- formatting

def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value, kind: str = "metric", digits: int = 2, paper: bool = False) -> str:
    """A cell's number: metrics to ``digits`` places, ratios as ``5.5×``, sizes to 3 significant
    digits (one decimal from 10 up); paper sizes as printed (no trailing zeros added)."""
    if _nan(value):
        return MISSING
    if kind == "metric":
        return f"{value:.{digits}f}"
    if kind == "ratio":
        return f"{value:.1f}×"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:{'' if paper else '#'}.3g}"


def video_note(record: dict) -> str:
    """What a run left out because videos were missing or unreadable (its metrics cover the rest)."""
    v = record["videos"]
    split = v.get("eval_split", "val")
    skipped, total = (v.get("skipped_queries") or {}).get(split, 0), (v.get("queries") or {}).get(split, 0)
    return (f"{skipped} of {total} {split} queries not scored ({v.get('missing', 0)} videos missing, "
            f"{v.get('unreadable', 0)} unreadable)")


def _seeds(runs: list[dict]) -> str:
    return ",".join(str(r.get("seed")) for r in runs)


# --------------------------------------------------------------------------- pooling

def pool(records: list[dict], layout: Layout, where: str = "") -> dict[str, list[dict]]:
    """Group ok runs into rows with ``stats.group_runs``; runs of one row that differ in anything
    but the seed are refused with a :class:`TableError` naming the row and the field."""
    try:
        return stats.group_runs(records, row=layout.row_of)
    except ValueError as e:
        raise TableError(f"{layout.suite}{where}: {e}. Re-run that row (run_all.py --fresh) or remove the "
                         f"stale runs from the ledger.") from None


def _per_query_matrix(runs: list[dict], key: str) -> tuple[pd.DataFrame | None, str]:
    """(qid × seed matrix of ``key``, "") or (None, why not)."""
    frames = {}
    split, sep, _ = key.partition(":")          # "test:MR-full-mAP": the test split's per-query values
    for r in runs:
        try:
            frame = rec.per_query(r, split if sep else None)
        except InputError as e:
            if "refused:" not in e.message:
                raise
            return None, f"{REFUSED}: {e}"
        if frame is None:
            return None, "no per-query values: no interval, no test"
        column = key.partition(":")[2] if sep else key
        if column not in frame.columns:
            return None, f"per-query file has no {key}: no interval, no test"
        frames[r.get("seed")] = frame.rename(columns={column: key}) if sep else frame
    try:
        return stats.per_query_matrix(frames, key), ""
    except ValueError as e:
        return None, f"per-query values not poolable ({e})"


def metric_cells(groups: Mapping[str, list[dict]], reference: str, key: str, digits: int = 2,
                 alpha: float = ALPHA) -> tuple[dict[str, Cell], dict[str, str]]:
    """Cells of one metric for every row of one dataset, and a note per row where one is due."""
    matrices, notes = {}, {}
    for row, runs in groups.items():
        matrix, why = _per_query_matrix(runs, key)
        if matrix is not None:
            matrices[row] = matrix
        elif why.startswith(REFUSED) or any(not math.isnan(rec.metric(r, key)) for r in runs):
            notes[row] = why       # a damaged per-query file, or a metric without per-query values
    refused = {row for row, why in notes.items() if why.startswith(REFUSED)}
    headline = {row: [rec.metric(r, key) for r in runs] for row, runs in groups.items() if row not in refused}
    cells, more = cells_from_matrices(matrices, headline, reference, key, digits, alpha,
                                      calibration=calibration_for(groups, key))
    for row in refused:            # the cell says so; its number is not shown
        cells[row] = Cell(text=REFUSED, n_seeds=len(groups[row]))
    return cells, {**notes, **more}


def cells_on_queries(matrices: Mapping[str, pd.DataFrame], groups: Mapping[str, list], qids, reference: str,
                     key: str) -> tuple[dict[str, Cell], dict[str, str]]:
    """Cells of the rows' per-query matrices restricted to ``qids`` (a column of queries: a
    length bucket, a query family), compared with the reference on those queries alone."""
    sub = {row: m.loc[m.index.intersection(qids)] for row, m in matrices.items()}
    sub = {row: m for row, m in sub.items() if len(m)}
    return cells_from_matrices(sub, {row: [math.nan] * len(groups[row]) for row in sub}, reference, key)


def calibration_for(groups: Mapping[str, list[dict]], key: str) -> stats.SeedVariance | None:
    """The calibrated seed variance of ``key`` that applies to every run of the table (the built-in
    benchmark's shipped calibration, ``datasets.synthetic.presets.seed_calibration``), else None."""
    from r2bench.datasets.synthetic.presets import seed_calibration
    found = seed_calibration([r for runs in groups.values() for r in runs])
    entry = (found or {}).get(key)
    if not entry:
        return None
    return stats.SeedVariance(float(entry["seed_sd"]), float(entry["df"]), float(entry.get("noise_sd", math.nan)),
                              str(entry.get("source", "")))


def cells_from_matrices(matrices: Mapping[str, pd.DataFrame], headline: Mapping[str, list[float]], reference: str,
                        key: str, digits: int = 2, alpha: float = ALPHA,
                        calibration: stats.SeedVariance | None = None) -> tuple[dict[str, Cell], dict[str, str]]:
    """Cells from per-query matrices (qid × seed) where a row has them, else from its per-seed
    headline values. Rows scored on the reference's queries are compared with the reference
    (``stats.compare_to_reference``, Holm over those rows; a one-seed row against ``calibration``
    where there is one); the others get an interval only."""
    cells, notes = {}, {}
    compared = pd.DataFrame()
    if reference in matrices:
        ref_qids = set(matrices[reference].index)
        same = {r: m for r, m in matrices.items() if set(m.index) == ref_qids}
        for r in set(matrices) - set(same):
            notes[r] = "scored on other queries than the reference: not compared"
        compared = stats.compare_to_reference(same, reference, key, alpha=alpha, n_resamples=N_RESAMPLES,
                                              calibration=calibration)
    elif matrices and reference in headline:
        for r in matrices:
            notes[r] = "reference row has no per-query values: not compared"
    for row, values in headline.items():
        cell = Cell(n_seeds=len(values))
        if row in compared.index:
            c = compared.loc[row]
            cell.mean, cell.low, cell.high, cell.std = c["mean"], c["ci_low"], c["ci_high"], c["seed_std"]
            cell.n_queries, cell.spread = int(c["n_queries"]), c["spread"]
            cell.p_holm, cell.significant = float(c["p_holm"]), bool(c["significant"])
            cell.seed_variance = str(c["seed_variance"])
        elif row in matrices:
            averaged = matrices[row].mean(axis=1, skipna=False)
            if averaged.notna().any():
                ci = stats.bootstrap_ci(averaged, n_resamples=N_RESAMPLES)
                _, std, _ = stats.seed_summary(matrices[row])
                cell.mean, cell.low, cell.high, cell.std, cell.n_queries = ci.mean, ci.low, ci.high, std, ci.n
                cell.spread = "seed std" if matrices[row].shape[1] > 1 else "bootstrap"
        elif any(not math.isnan(v) for v in values):
            cell.mean, cell.std, n = stats.seed_summary(values)
            cell.spread = "seed std" if n > 1 else ""
        if not math.isnan(cell.mean):
            if cell.spread:
                cell.text = stats.cell_text(dict(mean=cell.mean, seed_std=cell.std, ci_low=cell.low, ci_high=cell.high,
                                                 spread=cell.spread, significant=cell.significant,
                                                 seed_variance=cell.seed_variance),
                                            digits=digits, mark=MARK)
            else:
                cell.text = fmt(cell.mean, "metric", digits)
        cells[row] = cell
    return cells, notes


def size_cell(runs: list[dict], key: str) -> Cell:
    """An exact measurement (same for every seed); memory estimated rather than measured gets ``(est.)``."""
    values = [rec.metric(r, key) for r in runs]
    values = [v for v in values if not math.isnan(v)]
    cell = Cell(n_seeds=len(runs))
    if not values:
        return cell
    cell.mean = float(np.mean(values))
    cell.text = fmt(cell.mean, "size")
    if key == "memory_gib" and any(r.get("memory_source") == "estimate" for r in runs):
        cell.text += " (est.)"
    return cell


# --------------------------------------------------------------------------- building a table

def _paper_frame(layout: Layout, paper) -> pd.DataFrame | None:
    if isinstance(paper, pd.DataFrame):
        return paper
    if paper is not None:
        return pd.read_csv(paper)
    return paper_table(layout.paper_table) if layout.paper_table else None


def _paper_row(frame: pd.DataFrame | None, row: Row) -> pd.Series | None:
    if frame is None or not row.paper:
        return None
    for col in row.paper:
        if col not in frame.columns:
            raise TableError(f"paper table has no column {col!r} (row {row.name!r})")
    hit = np.ones(len(frame), dtype=bool)
    for col, value in row.paper.items():
        hit &= frame[col].astype(str).to_numpy() == str(value)
    if hit.sum() != 1:
        raise TableError(f"row {row.name!r}: {int(hit.sum())} paper rows match {dict(row.paper)}")
    return frame[hit].iloc[0]


def _blocks(layout: Layout, records: list[dict]) -> tuple[list[Block], list[str]]:
    """Dataset blocks in the layout's group order; datasets no group takes are named in a note."""
    datasets = list(dict.fromkeys(r.get("dataset") for r in records))
    blocks, taken = [], set()
    for group, wanted in layout.roles.items():
        columns = tuple(c for c in layout.columns if c.group == group)
        # a group that names its datasets shows them (two groups may name one: val and test columns);
        # a group open to any dataset takes those no group has taken
        mine = [d for d in datasets if (d in wanted) or (not wanted and d not in taken)]
        taken.update(mine)
        if not mine:
            blocks.append(Block(group, None, columns))
        for d in mine:
            blocks.append(Block(group, d, columns, multi=len(mine) > 1))
    skipped = [d for d in datasets if d not in taken]
    notes = [f"Runs on {', '.join(map(str, skipped))} are not shown: this table has no columns for that dataset."] \
        if skipped else []
    return blocks, notes


def build_table(records: list[dict], layout: Layout, paper=None) -> Table:
    """Every cell of the table from the ledger ``records`` (all statuses) of one suite."""
    frame = _paper_frame(layout, paper)
    blocks, extra_notes = _blocks(layout, records)
    declared = {r.name: r for r in layout.rows}
    seen_rows = list(dict.fromkeys(layout.row_of(r) for r in records))
    order = [r.name for r in layout.rows] + [n for n in seen_rows if n not in declared]
    results = {name: RowResult(name, _paper_row(frame, declared[name]) if name in declared else None)
               for name in order}
    for r in records:
        results[layout.row_of(r)].records.append(r)

    for b, block in enumerate(blocks):
        if block.dataset is None:
            for res in results.values():
                for col in block.columns:
                    res.cells[(b, col.label)] = Cell(text=NOT_RUN if col.kind == "metric" else MISSING)
            continue
        here = [r for r in records if r.get("dataset") == block.dataset]
        ok = [r for r in here if r.get("status") == "ok"]
        where = f" on {block.dataset}" if len(blocks) > 1 else ""
        groups = pool(ok, layout, where)
        for col in block.columns:
            if col.kind == "metric":
                cells, notes = metric_cells(groups, layout.reference, col.key, col.digits)
                for row, note in notes.items():
                    results[row].notes.append(note)
            else:
                cells = {row: size_cell(runs, col.key) for row, runs in groups.items()}
            for name, res in results.items():
                res.cells[(b, col.label)] = cells.get(name, Cell())
        for col in block.columns:
            if col.kind == "ratio":
                base = results.get(layout.ratio_to)
                base_v = base.cells.get((b, _size_twin(block, col).label), Cell()).mean if base else math.nan
                for res in results.values():
                    cell = res.cells[(b, col.label)]
                    value = res.cells.get((b, _size_twin(block, col).label), Cell()).mean
                    cell.mean = value / base_v if base_v and not math.isnan(base_v) else math.nan
                    cell.text = fmt(cell.mean, "ratio")
        for name, res in results.items():
            runs = groups.get(name, [])
            failed = [r for r in here if layout.row_of(r) == name and r.get("status") != "ok"]
            if len(runs) > 1:
                res.notes.append(f"{block.dataset + ': ' if len(blocks) > 1 else ''}seeds {_seeds(runs)}")
            res.notes += [video_note(r) for r in runs[:1] if r.get("videos")]
            if failed:
                last = failed[-1]
                count = f" ({len(failed)} runs)" if len(failed) > 1 else ""
                res.notes.append(f"{last.get('status')}{count}: {last.get('error') or 'no reason recorded'}")
            res.runs += len(runs)
            if runs:
                res.status = "ok"
            elif failed and res.status == NOT_RUN:
                res.status = str(failed[-1].get("status"))

    for res in results.values():
        if res.name == layout.reference:
            res.notes.insert(0, "reference row")
        if res.status == NOT_RUN:
            res.notes.append(NOT_RUN)
        for b, block in enumerate(blocks):
            for col in block.columns:
                cell = res.cells.setdefault((b, col.label), Cell())
                cell.paper = _paper_value(res.paper, col, frame, layout)
                cell.paper_text = fmt(cell.paper, col.kind, col.digits, paper=True)
    rows = [res for res in results.values()
            if layout.show_missing or res.records or res.name not in declared]
    return Table(layout, blocks, rows, setting_lines(records, layout, blocks), footer_lines(layout) + extra_notes)


def _size_twin(block: Block, col: Column) -> Column:
    """The size column a ratio column divides (same key)."""
    for c in block.columns:
        if c.kind == "size" and c.key == col.key:
            return c
    raise TableError(f"ratio column {col.label!r} has no size column with key {col.key!r}")


def _paper_value(paper_row: pd.Series | None, col: Column, frame, layout: Layout) -> float:
    if paper_row is None or not col.paper:
        return math.nan
    if col.kind == "ratio":
        base = _paper_row(frame, next(r for r in layout.rows if r.name == layout.ratio_to))
        try:
            return float(paper_row[col.paper]) / float(base[col.paper])
        except (TypeError, ValueError, ZeroDivisionError):
            return math.nan
    try:
        return float(paper_row[col.paper])
    except (TypeError, ValueError):
        return math.nan


def _values(records: list[dict], key: str) -> str:
    return ", ".join(sorted({str(r.get(key)) for r in records if r.get(key) not in (None, "")})) or "none"


def setting_lines(records: list[dict], layout: Layout, blocks: list[Block]) -> list[str]:
    """Header lines: the random-init warning (only when a random-init run has metrics), our
    setting per dataset, how to read a cell, the reference row, the paper's setting."""
    lines = []
    if any(r.get("weights") == "random-init" and r.get("status") == "ok" and r.get("metrics") for r in records):
        lines.append(RANDOM_INIT_WARNING)
    for block in blocks:
        group = f"{block.group} columns" if block.group else "ours"
        if block.dataset is None:
            wanted = "/".join(layout.roles.get(block.group) or ("any dataset",))
            lines.append(f"{group}: not run (no runs on {wanted} in this ledger; run the suite with "
                         f"--dataset {wanted.split('/')[-1]} into the same --out).")
            continue
        here = [r for r in records if r.get("dataset") == block.dataset]
        ok = [r for r in here if r.get("status") == "ok"]
        sources = {r.get("memory_source") for r in here if r.get("memory_source")}
        memory = "; ".join(f"{s} ({'measured' if s == 'cuda' else 'estimated, not a measured peak'})"
                           for s in sorted(sources)) or "none"
        lines.append(f"{group} — dataset {block.dataset} (version {_values(here, 'dataset_version')}); "
                     f"backbone {_values(here, 'backbone')}; weights {_values(here, 'weights')}; "
                     f"seeds {_values(ok, 'seed')}; memory source {memory}.")
    lines.append("Cells: mean ± std over seeds (several seeds) or mean [95 % bootstrap interval over queries] "
                 f"(one seed); {MARK} = the method differs from the reference row (t-test counting seed and query "
                 f"variance; both rows need ≥ 2 seeds, or, on the built-in benchmark at its default training, "
                 f"a one-seed row uses its shipped calibrated seed variance); {stats.QUERY_MARK} = one seed only: these trained models "
                 f"differ on these queries (paired permutation test; retraining variance not counted, so this "
                 f"overstates method differences — run --seeds 0 1 2). Holm-corrected over the table's rows per "
                 f"metric, α = {ALPHA}. Params and memory are "
                 "exact measurements (est. = estimated, not a measured peak).")
    lines.append(f"Reference row: {layout.reference} — {layout.reference_why}")
    if layout.paper_setting:
        lines.append(layout.paper_setting)
    return lines


def footer_lines(layout: Layout) -> list[str]:
    return list(layout.notes)


# --------------------------------------------------------------------------- writers

def headers(table: Table) -> list[str]:
    cols = ["Row", *(h for h, _ in table.layout.info)]
    for block in table.blocks:
        for col in block.columns:
            cols += [f"{block.header(col)} ours", f"{block.header(col)} paper"]
    return cols + ["Note"]


def display_cells(table: Table, res: RowResult, cut: bool = True) -> list[str]:
    cells = [res.name, *(fn(res) or MISSING for _, fn in table.layout.info)]
    for b, block in enumerate(table.blocks):
        for col in block.columns:
            cell = res.cells[(b, col.label)]
            cells += [cell.text, cell.paper_text]
    note = res.note
    if cut and len(note) > NOTE_CHARS:
        note = note[: NOTE_CHARS - 1] + "…"
    return cells + [note]


def to_markdown(table: Table) -> str:
    head = headers(table)
    n_info = 1 + len(table.layout.info)
    align = ["---"] * n_info + ["---:"] * (len(head) - n_info - 1) + ["---"]
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")
    lines = [f"# {table.layout.title}", ""]
    for line in table.setting:
        lines += [f"**{line}**" if line == RANDOM_INIT_WARNING else line, ""]
    lines += ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in display_cells(table, res)) + " |" for res in table.rows]
    if table.footer:
        lines += [""] + [f"{line}\n" for line in table.footer]
    return "\n".join(lines).rstrip("\n") + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "—": "---", "–": "--", "…": r"\ldots{}", "²": r"\textsuperscript{2}", "\n": " ",
        "±": r"$\pm$", "×": r"$\times$", "→": r"$\rightarrow$", "α": r"$\alpha$", "≤": r"$\leq$",
        "≥": r"$\geq$", "†": r"$\dagger$"}


def tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s))


def to_latex(table: Table) -> str:
    head = headers(table)
    n_info = 1 + len(table.layout.info)
    spec = "l" * n_info + "r" * (len(head) - n_info - 1) + "l"
    caption = " ".join(rf"\textbf{{{tex(s)}}}" if s == RANDOM_INIT_WARNING else tex(s) for s in table.setting)
    lines = [
        rf"% Generated by reports/tables ({table.name}); needs \usepackage{{graphicx}} (for \resizebox)",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex(table.layout.title)}. {caption}}}",
        rf"\label{{tab:{table.name}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\hline",
        " & ".join(tex(h) for h in head) + r" \\",
        r"\hline",
        *(" & ".join(tex(c) for c in display_cells(table, res)) + r" \\" for res in table.rows),
        r"\hline",
        r"\end{tabular}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def to_frame(table: Table) -> pd.DataFrame:
    """One row per table row: display text and the numbers behind every cell."""
    out = []
    for res in table.rows:
        row = {"Row": res.name, **{h: fn(res) for h, fn in table.layout.info},
               "status": res.status, "runs": res.runs, "note": res.note,
               "memory_source": ", ".join(sorted({str(r.get("memory_source")) for r in res.records
                                                  if r.get("memory_source")}))}
        for b, block in enumerate(table.blocks):
            for col in block.columns:
                cell, h = res.cells[(b, col.label)], block.header(col)
                row[f"{h} ours"] = cell.mean
                if col.kind == "metric":
                    row.update({f"{h} ours text": cell.text, f"{h} ours low": cell.low, f"{h} ours high": cell.high,
                                f"{h} ours std": cell.std, f"{h} ours seeds": cell.n_seeds,
                                f"{h} ours queries": cell.n_queries, f"{h} ours p_holm": cell.p_holm,
                                f"{h} ours significant": cell.significant,
                                f"{h} ours seed variance": cell.seed_variance})
                row[f"{h} paper"] = cell.paper
        out.append(row)
    return pd.DataFrame(out)


def to_html(table: Table) -> str:
    """The table as an HTML fragment (setting lines, table, footer) for the report."""
    e = html.escape
    parts = [f"<h3>{e(table.layout.title)}</h3>"]
    for line in table.setting:
        cls = ' class="warning"' if line == RANDOM_INIT_WARNING else ""
        parts.append(f"<p{cls}>{e(line)}</p>")
    n_info = 1 + len(table.layout.info)
    parts.append('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in headers(table))
                 + "</tr></thead><tbody>")
    for res in table.rows:
        cells = display_cells(table, res, cut=False)
        tds = [f"<td>{e(c)}</td>" if i < n_info or i == len(cells) - 1 else f'<td class="num">{e(c)}</td>'
               for i, c in enumerate(cells)]
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</tbody></table></div>")
    parts += [f"<p>{e(line)}</p>" for line in table.footer]
    return "\n".join(parts)


def write_table(table: Table, out_dir: str | Path) -> list[Path]:
    """``<suite>.md``, ``<suite>.tex`` and ``<suite>.csv`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = table.name
    return [
        atomic_write(out_dir / f"{name}.md", to_markdown(table)),
        atomic_write(out_dir / f"{name}.tex", to_latex(table)),
        atomic_write(out_dir / f"{name}.csv", to_frame(table).to_csv(index=False, lineterminator="\n")),
    ]


# --------------------------------------------------------------------------- a suite's table, declared

@dataclass(frozen=True)
class TableSpec:
    """What a suite declares about its table, besides its rows: the columns, the paper's table
    and setting, the dataset roles, notes and extra columns. The suite (``r2bench.bench.suites``)
    supplies the rows (its runs, each with the paper row it matches) and the reference row;
    :meth:`layout` joins both. ``paper_rows`` are rows of the paper's table that no run fills
    (shown with the paper's numbers only). Subclasses build other tables from the same
    declaration (``table6.QueryLengthTable``, ``datasets.DatasetTable``)."""

    title: str
    columns: tuple[Column, ...]
    reference_why: str
    paper_table: str | None = None
    paper_setting: str = ""
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {"": ()})
    info: tuple[tuple[str, Callable], ...] = ()
    ratio_to: str | None = None
    notes: tuple[str, ...] = ()
    show_missing: bool = True
    paper_rows: tuple[Row, ...] = ()

    def layout(self, suite: str, rows: tuple[Row, ...], reference: str) -> Layout:
        return Layout(suite=suite, title=self.title, rows=tuple(rows) + self.paper_rows, columns=self.columns,
                      reference=reference, reference_why=self.reference_why, paper_table=self.paper_table,
                      paper_setting=self.paper_setting, roles=self.roles, info=self.info, ratio_to=self.ratio_to,
                      notes=self.notes, show_missing=self.show_missing)

    def build(self, records: list[dict], layout: Layout, out_dir: Path) -> list[Table]:
        """The suite's tables from its ledger records (one here; a subclass may make several)."""
        return [build_table(records, layout)]

    def files(self, records: list[dict], out_dir: Path) -> list[Path]:
        """Files the table writes besides itself (e.g. Table 1's submission files)."""
        return []


def generic_layout(suite: str, records: list[dict]) -> Layout:
    """A table for a suite nobody declared (a ledger from a plugin's suite, say): its rows in
    ledger order, the first row the reference, the five QVHighlights metrics, params and memory."""
    rows = tuple(Row(name) for name in dict.fromkeys(default_row(r) for r in records)) or (Row("–"),)
    columns = (Column("#Params (M)", "params_M", kind="size"), Column("Memory (GiB)", "memory_gib", kind="size"),
               Column("MR R1@0.5", "MR-full-R1@0.5"), Column("MR R1@0.7", "MR-full-R1@0.7"),
               Column("MR mAP", "MR-full-mAP"), Column("HD mAP", "HL-min-VeryGood-mAP"),
               Column("HD HIT@1", "HL-min-VeryGood-Hit1"))
    return Layout(suite=suite, title=f"Suite {suite}", rows=rows, columns=columns, reference=rows[0].name,
                  reference_why="the suite's first row (this suite declares no reference).")
