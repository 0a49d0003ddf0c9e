"""Render one suite from its ledger: its tables (Markdown, LaTeX, CSV) and its figures (PNG, PDF).

What a suite's table and figures are is declared with the suite (``r2bench.bench.suites``: its
rows, a :class:`~r2bench.reports.tables.common.TableSpec` and its figure specs) and handed in
here; this module knows no suite by name. A ledger whose suite nobody declared (``suite`` None)
gets a generic table (its rows, the five QVHighlights metrics, parameters and memory; the first
row is the reference) and no figures.

A figure that cannot be drawn (no checkpoint, weights not found, …) is reported with its
reason, never dropped silently; a ledger that cannot be tabulated honestly (two
configurations under one row name) raises :class:`~r2bench.reports.tables.common.TableError`.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from r2bench.reports import records as rec
from r2bench.reports.figures.sources import FigureSkipped, Sources
from r2bench.reports.tables import breakdown
from r2bench.reports.tables.common import Layout, Table, TableSpec, generic_layout, build_table, write_table

log = logging.getLogger(__name__)
FIGURES_DIR = "figures"


class SuiteLike(Protocol):
    """What the renderer needs of a declared suite (``r2bench.bench.suites.Suite``)."""

    name: str
    table: TableSpec
    figures: tuple

    def layout(self) -> Layout: ...


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


def run_figures(rendered: Rendered, layout: Layout, specs: tuple, out: Path, sources: Sources) -> None:
    jobs = [job for spec in specs for job in spec.jobs(rendered.records, layout, out, sources)]
    for name, caption, job in jobs:
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

def render_suite(suite_dir: str | Path, out_dir: str | Path | None = None, *, suite: SuiteLike | None = None,
                 figures: bool = True, sources: Sources | None = None) -> Rendered:
    """Tables and figures of the suite whose ledger is in ``suite_dir`` (written to ``out_dir``,
    default ``suite_dir``; figures under ``figures/``), as ``suite`` declares them (None: the
    generic table)."""
    suite_dir = Path(suite_dir)
    out = Path(out_dir or suite_dir)
    records = rec.load_records(suite_dir)
    name = rec.suite_name(records, suite_dir)
    rendered = Rendered(name, suite_dir, records)
    if suite is not None and suite.name != name:
        raise ValueError(f"{suite_dir}: the ledger holds suite {name!r}, not {suite.name!r}")
    layout = suite.layout() if suite is not None else generic_layout(name, records)
    spec = suite.table if suite is not None else None
    rendered.tables = spec.build(records, layout, out) if spec is not None else [build_table(records, layout)]
    for i, table in enumerate(rendered.tables):
        if i:   # a second table of one suite (table6 on a second dataset) gets its own files
            table.layout = replace(table.layout, suite=f"{table.layout.suite}_{table.blocks[0].dataset}")
        rendered.table_files += write_table(table, out)
    if spec is not None:
        rendered.table_files += spec.files(records, out)
    if breakdown.applies(records):        # the built-in benchmark: which kind of query each row gets right
        table = breakdown.build(records, layout)
        if table is not None:
            rendered.tables.append(table)
            rendered.table_files += breakdown.write(table, out)
    if figures and suite is not None:
        run_figures(rendered, layout, tuple(suite.figures), out / FIGURES_DIR, sources or Sources())
    return rendered


def render(suite_dir: str | Path, out_dir: str | Path | None = None, **kwargs) -> list[Path]:
    """``render_suite`` returning the files written (tables first)."""
    return render_suite(suite_dir, out_dir, **kwargs).paths
