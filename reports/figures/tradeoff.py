"""The memory–accuracy trade-off: peak training memory (x) against MR mAP (y), bubble area ∝
learnable parameters, one labelled bubble per row, coloured by whether gradients flow through
CLIP (full, PETL) or not (frozen, METL).

Panels: the paper's Table 9 (its printed numbers), and ours. Our memory is the peak of one
training step at the paper's setting (ViT-B/32, 224², batch 32 × 75 frames, FP16; measured on
CUDA, estimated elsewhere — said in the panel title), our parameters are counted at that setting,
and our MR mAP is the trained suite's (with its interval as an error bar). A ``--paper-scale``
ledger has no MR mAP: its panel puts our memory and parameters at the paper's MR mAP, and says so.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from r2bench.reports.figures.style import (CATEGORY_FAMILY, FAMILY_COLOURS, FAMILY_LABELS, TEXT_WIDTH, FigureSkipped, save,
                                   setup)
from r2bench.reports.paper import paper_table
from r2bench.reports.records import PAPER_SCALE
from r2bench.reports.tables.common import Column, Layout, build_table

MAX_AREA = 700.0     # pt², the largest bubble
COLUMNS = ["name", "family", "memory", "params", "map", "low", "high", "dataset", "memory_source", "paper_name"]


def paper_points() -> pd.DataFrame:
    """The paper's Table 9 rows."""
    paper = paper_table("table9_transfer_methods")
    return pd.DataFrame([dict(name=r["method"], family=CATEGORY_FAMILY.get(r["kind"], "METL"),
                              memory=float(r["memory_GB"]), params=float(r["params_M"]), map=float(r["MR-mAP"]),
                              low=math.nan, high=math.nan, dataset="QVHighlights val (paper)", memory_source="paper",
                              paper_name=r["method"])
                         for _, r in paper.iterrows()], columns=COLUMNS)


def our_points(records: list[dict], layout: Layout) -> pd.DataFrame:
    """One point per (dataset, row) of the suite with a memory figure; ``map`` NaN without metrics."""
    group = next(iter(layout.roles))
    columns = (Column("memory", "memory_gib", kind="size", group=group),
               Column("params", "params_M", kind="size", group=group),
               Column("map", "MR-full-mAP", group=group))
    table = build_table(records, replace(layout, columns=columns, roles={group: layout.roles[group]},
                                         show_missing=False, info=(), ratio_to=None))
    out = []
    for b, block in enumerate(table.blocks):
        if block.dataset is None:
            continue
        for res in table.rows:
            memory, params, score = (res.cells[(b, c.label)] for c in columns)
            if math.isnan(memory.mean):
                continue
            cats = {r.get("category") for r in res.records if r.get("dataset") == block.dataset}
            family = CATEGORY_FAMILY.get(next(iter(cats)) if len(cats) == 1 else "", "METL")
            if score.spread == "seed std":
                low, high = score.mean - score.std, score.mean + score.std
            else:
                low, high = score.low, score.high
            sources = {r.get("memory_source") for r in res.records if r.get("memory_source")}
            out.append(dict(name=res.name, family=family, memory=memory.mean, params=params.mean, map=score.mean,
                            low=low, high=high, dataset=block.dataset,
                            memory_source="estimate" if "estimate" in sources else ",".join(sorted(sources)),
                            paper_name=str(res.paper["method"]) if res.paper is not None and "method" in res.paper
                            else None))
    return pd.DataFrame(out, columns=COLUMNS)


def with_paper_map(points: pd.DataFrame) -> pd.DataFrame:
    """Paper-scale points: our memory and parameters at the paper's MR mAP (matched by the paper row
    each of our rows declares)."""
    paper = paper_points().set_index("name")["map"]
    points = points.copy()
    points["map"] = [paper.get(n, math.nan) if n else math.nan for n in points["paper_name"]]
    points["low"] = points["high"] = math.nan
    return points


def plot(panels: list[tuple[str, pd.DataFrame]], out_dir: str | Path, stem: str = "tradeoff",
         y_label: str = "MR mAP") -> list[Path]:
    """``figure(panels)`` saved as ``<stem>.png`` and ``<stem>.pdf``."""
    return save(figure(panels, y_label), out_dir, stem)


def figure(panels: list[tuple[str, pd.DataFrame]], y_label: str = "MR mAP"):
    """One bubble chart per (title, points); bubble area on one scale across panels."""
    setup()
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    panels = [(t, p.dropna(subset=["memory", "map"])) for t, p in panels]
    panels = [(t, p) for t, p in panels if len(p)]
    if not panels:
        raise FigureSkipped("no row has both a memory figure and an MR mAP")
    biggest = max(float(np.nanmax(p["params"].to_numpy(float))) if p["params"].notna().any() else 1.0
                  for _, p in panels)
    scale = MAX_AREA / max(biggest, 1e-9)
    width = TEXT_WIDTH if len(panels) > 1 else TEXT_WIDTH * 0.6
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 2.9), squeeze=False)
    for ax, (title, p) in zip(axes[0], panels):
        for family, part in p.groupby("family"):
            area = np.nan_to_num(part["params"].to_numpy(float), nan=0.0) * scale
            ax.scatter(part["memory"], part["map"], s=np.maximum(area, 12), color=FAMILY_COLOURS[family],
                       alpha=0.55, edgecolor="black", linewidth=0.5, zorder=3)
        bars = p.dropna(subset=["low", "high"])
        if len(bars):
            ax.errorbar(bars["memory"], bars["map"], yerr=[bars["map"] - bars["low"], bars["high"] - bars["map"]],
                        fmt="none", ecolor="black", elinewidth=0.6, capsize=2, zorder=4)
        ax.set_xlabel("peak training memory (GiB)" + (" — estimated" if (p["memory_source"] == "estimate").any()
                                                       else ""))
        ax.set_ylabel(y_label)
        ax.set_title(title, fontsize=7)
        lo, hi = float(p["memory"].min()), float(p["memory"].max())
        pad = max(1.0, 0.12 * (hi - lo))
        ax.set_xlim(max(0.0, lo - pad), hi + 2.5 * pad)
        _label(ax, p, scale)

    families = sorted({f for _, p in panels for f in p["family"]})
    handles = [Line2D([], [], marker="o", linestyle="", markersize=6, markerfacecolor=FAMILY_COLOURS[f],
                      markeredgecolor="black", alpha=0.6, label=FAMILY_LABELS[f]) for f in families]
    for size in _size_legend(biggest):
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=math.sqrt(max(size * scale, 12)),
                              markerfacecolor="white", markeredgecolor="grey", label=f"{size:g} M params"))
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(handles), 5),
               frameon=False, fontsize=6, handletextpad=2.2, columnspacing=3.0, borderpad=1.2)
    fig.tight_layout()
    return fig


def _label(ax, points: pd.DataFrame, scale: float, gap: float = 7.0) -> None:
    """Each bubble's name to the right of its edge; labels that would overlap (within ``gap`` pt
    vertically and 40 pt horizontally) are moved apart vertically."""
    ax.figure.canvas.draw()   # fixes the axes limits, so data → points is final
    to_pt = ax.transData.transform
    placed: list[tuple[float, float]] = []
    for _, r in points.sort_values("map").iterrows():
        radius = math.sqrt(max(np.nan_to_num(r["params"]) * scale, 12)) / 2
        x, y = to_pt((r["memory"], r["map"])) * 72 / ax.figure.dpi
        x += radius + 2
        dy = 0.0
        while any(abs(x - px) < 40 and abs(y + dy - py) < gap for px, py in placed):
            dy += gap / 2
        placed.append((x, y + dy))
        ax.annotate(r["name"], (r["memory"], r["map"]), xytext=(radius + 2, dy), textcoords="offset points",
                    fontsize=6, va="center", zorder=5)


def _size_legend(biggest: float) -> list[float]:
    """Two or three round parameter counts spanning the bubbles."""
    top = float(f"{biggest:.1g}") if biggest > 0 else 1.0
    return sorted({top, float(f"{top / 10:.1g}")} if top >= 10 else {top, float(f"{top / 3:.1g}")})


def panels_for(records: list[dict], layout: Layout, with_paper: bool = False) -> list[tuple[str, pd.DataFrame]]:
    """The panels of one suite's trade-off figure (``with_paper``: the paper's Table 9 first)."""
    ours = our_points(records, layout)
    panels = [("Paper: QVHighlights val, ViT-B/32 (memory in GB as printed)", paper_points())] if with_paper else []
    for dataset, part in ours.groupby("dataset", sort=False):
        src = "estimated" if (part["memory_source"] == "estimate").any() else "measured"
        if len(part) > 1 and len({(round(m, 2), round(q, 3)) for m, q in zip(part["memory"], part["params"])}) == 1:
            continue   # every row at one memory and size: nothing to trade off
        if dataset == PAPER_SCALE:
            panels.append((f"Ours at the paper's setting (memory {src}); y = the paper's MR mAP",
                           with_paper_map(part)))
        else:
            panels.append((f"Ours: MR mAP on {dataset}; memory at the paper's setting ({src})", part))
    if not panels and len(ours):
        raise FigureSkipped("every row has the same memory and parameters: nothing to trade off")
    return panels


def render(records: list[dict], layout: Layout, out_dir: str | Path, with_paper: bool = False,
           stem: str = "tradeoff") -> list[Path]:
    """The trade-off figure of one suite, PNG and PDF."""
    return plot(panels_for(records, layout, with_paper), out_dir, stem)
