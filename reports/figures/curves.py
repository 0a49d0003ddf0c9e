"""Learning curves: every run's validation score and training loss per epoch.

A table ranks methods by where their runs ended; the curves say whether they ended converged.
Each run records ``curve`` (one point per epoch: the mean of each loss term over the epoch and
the score on a fixed subset of validation queries). One line per row (its seeds averaged,
their spread shaded), validation score on the left, total loss on the right.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from r2bench.reports.figures.style import TEXT_WIDTH, FigureSkipped, save, setup
from r2bench.reports.tables.common import Layout


def points(records: list[dict], layout: Layout) -> pd.DataFrame:
    """One row per (row, seed, epoch): the validation score (its key), and the total loss."""
    out = []
    for r in records:
        if r.get("status") != "ok":
            continue
        for p in r.get("curve") or []:
            score = next(((k[4:], v) for k, v in p.items() if k.startswith("val_") and k != "val_queries"), (None, np.nan))
            out.append(dict(row=layout.row_of(r), seed=r.get("seed"), epoch=p["epoch"], metric=score[0],
                            score=score[1], loss=p.get("loss_total", np.nan)))
    return pd.DataFrame(out, columns=["row", "seed", "epoch", "metric", "score", "loss"])


def figure(data: pd.DataFrame):
    setup()
    import matplotlib.pyplot as plt
    if data.empty:
        raise FigureSkipped("no run of the suite recorded a learning curve")
    fig, (left, right) = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 2.4))
    for row, here in data.groupby("row", sort=False):
        by_epoch = here.groupby("epoch")
        for ax, column in ((left, "score"), (right, "loss")):
            mean, std = by_epoch[column].mean(), by_epoch[column].std().fillna(0.0)
            line, = ax.plot(mean.index, mean.values, marker="o", markersize=2.5, label=row)
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=line.get_color(), alpha=0.15,
                            linewidth=0)
    metric = next((m for m in data["metric"] if m), "score")
    left.set_xlabel("epoch")
    left.set_ylabel(f"val {metric} (subset)")
    right.set_xlabel("epoch")
    right.set_ylabel("training loss (total)")
    left.legend(frameon=False, fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def render(records: list[dict], layout: Layout, out_dir: str | Path, stem: str = "curves") -> list[Path]:
    return save(figure(points(records, layout)), out_dir, stem)
