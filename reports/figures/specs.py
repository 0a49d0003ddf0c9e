"""Figures as declarations: a suite lists the figures it wants (``Suite.figures``), each an
object that plans its drawing jobs from the suite's records and table layout. The renderer
(``reports.render``) runs whatever a suite declares; it knows no suite by name, so adding a
figure to a suite touches only that suite's declaration.

A job is ``(name, caption, thunk)``; the thunk returns the files written (or ``[(sub-caption,
files)]`` for several figures) and may raise :class:`FigureSkipped` with the reason.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from r2bench.reports.figures.sources import FigureSkipped, Sources, check_run
from r2bench.reports.tables.common import Layout

Job = tuple[str, str, Callable[[], list]]


def first_run(records: list[dict], row: str, layout: Layout) -> dict | None:
    """The lowest-seed ok run of ``row`` on the first dataset that has one."""
    runs = [r for r in records if r.get("status") == "ok" and layout.row_of(r) == row]
    return min(runs, key=lambda r: (str(r.get("dataset")) != str(runs[0].get("dataset")), r.get("seed") or 0),
               default=None)


def _model_figure(name: str, record: dict, sources: Sources, checkpoint: bool = True):
    """The figure module ``name`` after the cheap checks of ``record`` (before torch is imported)."""
    check_run(record, sources, checkpoint=checkpoint)
    return importlib.import_module(f"r2bench.reports.figures.{name}")


class FigureSpec:
    """One figure of a suite. ``jobs`` returns what to draw (nothing when the runs it needs are absent)."""

    name = "figure"

    def jobs(self, records: list[dict], layout: Layout, out: Path, sources: Sources) -> list[Job]:
        raise NotImplementedError


@dataclass(frozen=True)
class Tradeoff(FigureSpec):
    """Memory (x) against MR mAP (y), bubble area ∝ learnable parameters; ``with_paper``: the
    paper's points in a panel of their own (Table 9)."""

    with_paper: bool = False
    name = "tradeoff"

    def jobs(self, records, layout, out, sources):
        from r2bench.reports.figures import tradeoff
        return [(self.name, "Memory–accuracy trade-off: peak training memory at the paper's setting (x), MR mAP (y), "
                            "bubble area ∝ learnable parameters; colours: gradient through CLIP or not.",
                 lambda: tradeoff.render(records, layout, out, with_paper=self.with_paper))]


@dataclass(frozen=True)
class KLines(FigureSpec):
    """Figure 7: MR mAP against K, one line per strategy; ``row(strategy, K)`` names the row."""

    strategies: tuple[str, ...]
    ks: tuple[int, ...]
    row: Callable[[str, int], str]
    name = "fig7"

    def jobs(self, records, layout, out, sources):
        from r2bench.reports.figures import fig7
        return [(self.name, "Figure 7: MR mAP against K under four refinement strategies.",
                 lambda: fig7.render(records, out, layout, self.strategies, self.ks, self.row))]


@dataclass(frozen=True)
class LayerSimilarity(FigureSpec):
    """Figure 9: video–text cosine similarity across the head's layers, one panel per row of the table."""

    name = "fig9"

    def jobs(self, records, layout, out, sources):
        def draw():
            items = [(row.name, run) for row in layout.rows if (run := first_run(records, row.name, layout))]
            if not items:
                raise FigureSkipped("no row of the suite has a finished run")
            for _, run in items:
                check_run(run, sources, checkpoint=True)
            return _model_figure("fig9", items[0][1], sources).render(items, out, sources)
        return [(self.name, "Figure 9: cosine similarity of video (x) and text (y) features across the layers the "
                            "head reads, one panel per calibration setting.", draw)]


@dataclass(frozen=True)
class AttentionMaps(FigureSpec):
    """Figure 8: the query-modulated pooling attention per layer, from the first run of ``row``."""

    row: str
    name = "fig8"

    def jobs(self, records, layout, out, sources):
        run = first_run(records, self.row, layout)
        if run is None:
            return []
        return [(self.name, f"Figure 8: query-modulated pooling attention per layer ({self.row}, seed "
                            f"{run.get('seed')}, {run.get('dataset')}).",
                 lambda: _model_figure("fig8", run, sources).render(run, out, sources))]


@dataclass(frozen=True)
class Qualitative(FigureSpec):
    """Successes and failure cases of the first run of ``row``: frames, ground truth, prediction."""

    row: str
    name = "qualitative"

    def jobs(self, records, layout, out, sources):
        run = first_run(records, self.row, layout)
        if run is None:
            return []
        return [(self.name, f"Qualitative results ({self.row}): successes and failure cases.",
                 lambda: _model_figure("qualitative", run, sources, checkpoint=False).render(run, out, sources))]


@dataclass(frozen=True)
class LearningCurves(FigureSpec):
    """Every row's validation score and training loss per epoch (seeds averaged, spread shaded)."""

    name = "curves"

    def jobs(self, records, layout, out, sources):
        from r2bench.reports.figures import curves
        return [(self.name, "Learning curves: validation score on a fixed subset of queries (left) and training "
                            "loss (right) per epoch, one line per row (mean over seeds, ± std shaded).",
                 lambda: curves.render(records, layout, out))]
