"""Render one suite from its ledger: its tables (Markdown, LaTeX, CSV) and its figures (PNG, PDF).

Which tables and figures a suite has is decided here, by the suite's name (the ``suite``
field of its records), so ``python -m r2bench.reports`` can render any suite folder without
``bench``. A suite this module does not know gets a generic table (its rows, the five
QVHighlights metrics, parameters and memory; the first row is the reference).

A figure that cannot be drawn (no checkpoint, weights not found, …) is reported with its
reason, never dropped silently; a ledger that cannot be tabulated honestly (two
configurations under one row name) raises :class:`~reports.tables.common.TableError`.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from r2bench.reports import records as rec
from r2bench.reports.figures.sources import FigureSkipped, Sources, check_run
from r2bench.reports.tables import datasets as dataset_tables
from r2bench.reports.tables import table6, table9
from r2bench.reports.tables.ablations import LAYOUTS, TABLE5
from r2bench.reports.tables.common import Column, Layout, Row, Table, build_table, default_row, write_table

log = logging.getLogger(__name__)
FIGURES_DIR = "figures"


@dataclass
class Figure:
    name: str
    caption: str
    paths: list[Path]

    @property
    def png(self) -> Path:
        return next(p for p in self.paths if p.suffix == ".png")


@dataclass
class Rendered:
    suite: str
    suite_dir: Path
    records: list[dict]
    tables: list[Table] = field(default_factory=list)
    table_files: list[Path] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (figure, why)

    @property
    def paths(self) -> list[Path]:
        return self.table_files + [p for f in self.figures for p in f.paths]


# --------------------------------------------------------------------------- tables

def generic_layout(suite: str, records: list[dict]) -> Layout:
    """A table for a suite without a layout: its rows in ledger order, first row = reference."""
    rows = tuple(Row(name) for name in dict.fromkeys(default_row(r) for r in records)) or (Row("–"),)
    columns = (Column("#Params (M)", "params_M", kind="size"), Column("Memory (GiB)", "memory_gib", kind="size"),
               Column("MR R1@0.5", "MR-full-R1@0.5"), Column("MR R1@0.7", "MR-full-R1@0.7"),
               Column("MR mAP", "MR-full-mAP"), Column("HD mAP", "HL-min-VeryGood-mAP"),
               Column("HD HIT@1", "HL-min-VeryGood-Hit1"))
    return Layout(suite=suite, title=f"Suite {suite}", rows=rows, columns=columns, reference=rows[0].name,
                  reference_why="the suite's first row (this suite declares no reference).")


def layout_for(suite: str, records: list[dict]) -> Layout:
    if suite == "table9":
        return table9.LAYOUT
    if suite in dataset_tables.TARGETS:     # (build_table needs dataset_tables.paper_frame for Table 1)
        return dataset_tables.layout(suite, stand_in=True)
    if suite == "table6":
        return table6.LAYOUT
    return LAYOUTS.get(suite) or generic_layout(suite, records)


def tables_for(suite: str, records: list[dict]) -> list[Table]:
    if suite == "table9":
        return [table9.build(records)]
    if suite in dataset_tables.TARGETS:     # Tables 1–4: per-domain runs merged (files beside the ledger)
        return [dataset_tables.build(suite, records)]
    if suite == "table6":
        return table6.build(records)
    return [build_table(records, layout_for(suite, records))]


# --------------------------------------------------------------------------- figures

def _first_run(records: list[dict], row: str, layout: Layout) -> dict | None:
    """The lowest-seed ok run of ``row`` on the first dataset that has one."""
    runs = [r for r in records if r.get("status") == "ok" and layout.row_of(r) == row]
    return min(runs, key=lambda r: (str(r.get("dataset")) != str(runs[0].get("dataset")), r.get("seed") or 0),
               default=None)


def figure_jobs(suite: str, records: list[dict], layout: Layout, out: Path, sources: Sources) -> list:
    """(name, caption, thunk) for every figure of the suite; a thunk returns paths or
    [(caption, paths)] (several figures) and may raise ``FigureSkipped``."""
    from r2bench.reports.figures import fig7, tradeoff   # ledger-only figures; model figures import torch when drawn

    def model_figure(name: str, record: dict, checkpoint: bool = True):
        import importlib
        check_run(record, sources, checkpoint=checkpoint)   # before importing torch
        return importlib.import_module(f"r2bench.reports.figures.{name}")

    jobs = []
    trained = [r for r in records if r.get("status") == "ok"]
    if suite in dataset_tables.TARGETS:     # one method per table: no trade-off or model figures
        return jobs
    jobs.append(("tradeoff", "Memory–accuracy trade-off: peak training memory at the paper's setting (x), MR mAP "
                             "(y), bubble area ∝ learnable parameters; colours: gradient through CLIP or not.",
                 lambda: tradeoff.render(records, layout, out, with_paper=suite == "table9")))
    if suite == "fig7":
        jobs.append(("fig7", "Figure 7: MR mAP against K under four refinement strategies.",
                     lambda: fig7.render(records, out)))
    if suite == "table5":
        def fig9_job():
            items = [(row.name, run) for row in TABLE5.rows if (run := _first_run(records, row.name, TABLE5))]
            if not items:
                raise FigureSkipped("no row of the suite has a finished run")
            for _, run in items:
                check_run(run, sources, checkpoint=True)
            return model_figure("fig9", items[0][1]).render(items, out, sources)
        jobs.append(("fig9", "Figure 9: cosine similarity of video (x) and text (y) features across the layers the "
                             "head reads, one panel per calibration setting.", fig9_job))
    # attention maps and qualitative results of R²-Tuning's configuration, once per suite that trains it
    # as a row of its own (the other ablations train the same configuration again)
    model_row = {"table9": table9.R2_ROW, "table6": "R²-Tuning", "table5": TABLE5.reference}.get(suite)
    if model_row and any(layout.row_of(r) == model_row for r in trained):
        run = _first_run(records, model_row, layout)
        jobs.append(("fig8", f"Figure 8: query-modulated pooling attention per layer ({model_row}, seed "
                             f"{run.get('seed')}, {run.get('dataset')}).",
                     lambda: model_figure("fig8", run).render(run, out, sources)))
        jobs.append(("qualitative", f"Qualitative results ({model_row}): successes and failure cases.",
                     lambda: model_figure("qualitative", run, checkpoint=False).render(run, out, sources)))
    return jobs


def run_figures(rendered: Rendered, layout: Layout, out: Path, sources: Sources) -> None:
    for name, caption, job in figure_jobs(rendered.suite, rendered.records, layout, out, sources):
        try:
            result = job()
        except FigureSkipped as e:
            rendered.skipped.append((name, str(e)))
            log.info("figure %s of %s skipped: %s", name, rendered.suite, e)
            continue
        except Exception as e:  # a figure bug must not lose the tables; the report shows it
            rendered.skipped.append((name, f"error: {type(e).__name__}: {e}"))
            log.warning("figure %s of %s failed:\n%s", name, rendered.suite, traceback.format_exc())
            continue
        if result and isinstance(result[0], tuple):
            rendered.figures += [Figure(name, f"{caption} {sub}", paths) for sub, paths in result]
        else:
            rendered.figures.append(Figure(name, caption, list(result)))


# --------------------------------------------------------------------------- entry points

def render_suite(suite_dir: str | Path, out_dir: str | Path | None = None, *, figures: bool = True,
                 sources: Sources | None = None) -> Rendered:
    """Tables and figures of the suite whose ledger is in ``suite_dir`` (written to ``out_dir``,
    default ``suite_dir``; figures under ``figures/``)."""
    suite_dir = Path(suite_dir)
    out = Path(out_dir or suite_dir)
    records = rec.load_records(suite_dir)
    suite = rec.suite_name(records, suite_dir)
    rendered = Rendered(suite, suite_dir, records)
    layout = layout_for(suite, records)
    rendered.tables = tables_for(suite, records)
    for i, table in enumerate(rendered.tables):
        if i:   # a second table of one suite (table6 on a second dataset) gets its own files
            from dataclasses import replace
            table.layout = replace(table.layout, suite=f"{table.layout.suite}_{table.blocks[0].dataset}")
        rendered.table_files += write_table(table, out)
    if suite == "table1":                   # the test-split submission file, next to the results
        rendered.table_files += dataset_tables.write_submissions(records, out)
    if figures:
        run_figures(rendered, layout, out / FIGURES_DIR, sources or Sources())
    return rendered


def render(suite_dir: str | Path, out_dir: str | Path | None = None, **kwargs) -> list[Path]:
    """``render_suite`` returning the files written (tables first) — what ``run_all`` calls."""
    return render_suite(suite_dir, out_dir, **kwargs).paths
