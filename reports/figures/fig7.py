"""Figure 7: MR mAP against K (how many of the backbone's last layers the head reads), one line
per refinement strategy — single layer, mean of the last K, recurrent forward, recurrent
reversed — with error bars (± std over seeds, or the 95 % bootstrap interval over queries
with one seed). At K = 1 the four strategies are one architecture, so one run starts every line.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from typing import Callable

from r2bench.reports.figures.style import COLUMN_WIDTH, FigureSkipped, save, setup
from r2bench.reports.tables.common import Layout, build_table

KEY_LABEL = "MR mAP"
MARKERS = {"Single": "s", "Mean": "D", "Forward": "^", "Reversed": "o"}
COLOURS = {"Single": "#7570b3", "Mean": "#e7298a", "Forward": "#d95f02", "Reversed": "#1b9e77"}


def points(records: list[dict], layout: Layout, strategies: tuple[str, ...], ks: tuple[int, ...],
           row: Callable[[str, int], str]) -> pd.DataFrame:
    """One row per (dataset, strategy, K): mean MR mAP, error-bar ends, seeds, spread. ``row(strategy,
    K)`` names the suite's row of that point (``layout``: the suite's table)."""
    table = build_table(records, layout)
    by_name = {res.name: res for res in table.rows}
    out = []
    for b, block in enumerate(table.blocks):
        if block.dataset is None:
            continue
        for strategy in strategies:
            for k in ks:
                res = by_name.get(row(strategy, k))
                cell = res.cells.get((b, KEY_LABEL)) if res is not None else None
                if cell is None or math.isnan(cell.mean):
                    continue
                if cell.spread == "seed std":
                    lo, hi = cell.mean - cell.std, cell.mean + cell.std
                elif cell.spread == "bootstrap":
                    lo, hi = cell.low, cell.high
                else:
                    lo = hi = cell.mean
                out.append(dict(dataset=block.dataset, strategy=strategy, k=k, mean=cell.mean, low=lo, high=hi,
                                seeds=cell.n_seeds, spread=cell.spread or "none", significant=cell.significant))
    return pd.DataFrame(out, columns=["dataset", "strategy", "k", "mean", "low", "high", "seeds", "spread",
                                      "significant"])


def plot(data: pd.DataFrame, out_dir: str | Path, stem: str = "fig7_strategies") -> list[Path]:
    return save(figure(data), out_dir, stem)


def figure(data: pd.DataFrame):
    """One panel per dataset; x: K, y: MR mAP, a line per strategy (in the order of ``data``) with error bars."""
    setup()
    import matplotlib.pyplot as plt

    if data.empty:
        raise FigureSkipped("no fig7 run has an MR mAP")
    datasets = list(dict.fromkeys(data["dataset"]))
    strategies = list(dict.fromkeys(data["strategy"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(COLUMN_WIDTH * len(datasets), 2.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        here = data[data["dataset"] == dataset]
        for i, strategy in enumerate(strategies):
            line = here[here["strategy"] == strategy].sort_values("k")
            if line.empty:
                continue
            x = line["k"].to_numpy(float) + (i - 1.5) * 0.04   # small dodge so error bars stay apart
            y = line["mean"].to_numpy()
            err = np.vstack([y - line["low"].to_numpy(), line["high"].to_numpy() - y])
            ax.errorbar(x, y, yerr=err, label=strategy, marker=MARKERS.get(strategy, "o"), color=COLOURS.get(strategy),
                        markersize=3.5, capsize=2, elinewidth=0.7)
        ax.set_xticks(sorted(set(data["k"])))
        ax.set_xlabel("K (last layers used)")
        ax.set_ylabel("MR mAP")
        spreads = sorted(set(here["spread"]) - {"none"})
        bars = {"seed std": "± std over seeds", "bootstrap": "95 % bootstrap CI"}
        ax.set_title(f"{dataset}" + (f" (error bars: {', '.join(bars[s] for s in spreads)})" if spreads else ""),
                     fontsize=7)
    axes[0, 0].legend(frameon=False, ncol=len(strategies), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    return fig


def render(records: list[dict], out_dir: str | Path, layout: Layout, strategies: tuple[str, ...],
           ks: tuple[int, ...], row: Callable[[str, int], str]) -> list[Path]:
    return plot(points(records, layout, strategies, ks, row), out_dir)
