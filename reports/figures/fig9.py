"""Figure 9: cosine similarity of video and text features across the layers the head reads.

For every evaluation query (up to ``MAX_QUERIES``), each refinement step k gives a video
feature — the mapped [CLS] tokens averaged over the ground-truth frames, as the calibration
losses use them — and a text feature (the step's pooled query). Cell (i, j) is the mean over
queries of cos(video of layer i, text of layer j). The paper draws CLIP ViT-B/32's layers
7–12; we draw the layers the run's head reads: the last K of its backbone (R2Bench-Tiny,
K = 4: layers 3–6). One panel per run; the Table 5 suite gives the paper's four panels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from r2bench.reports.figures import runs
from r2bench.reports.figures.style import TEXT_WIDTH, FigureSkipped, save, setup

MAX_QUERIES = 200
BATCH = 16


def layer_similarity(model, batches) -> np.ndarray:
    """(K, K) mean cosine similarity, [video step i, text step j], over the batches' queries."""
    total, count = None, 0
    with torch.no_grad():
        for batch in batches:
            out = model(batch)
            positive = (batch["saliency"] > 0) & batch["video_mask"]
            weight = torch.where(positive.any(1, keepdim=True), positive, batch["video_mask"]).float()
            weight = weight / weight.sum(1, keepdim=True).clamp(min=1)
            videos = torch.stack([torch.einsum("bt,btc->bc", weight, f.float()) for f in out.layer_cls], 1)
            texts = torch.stack([q.float() for q in out.layer_queries], 1)
            sim = torch.einsum("bic,bjc->bij", F.normalize(videos, dim=-1), F.normalize(texts, dim=-1))
            total = sim.sum(0) if total is None else total + sim.sum(0)
            count += sim.shape[0]
    if total is None:
        raise FigureSkipped("no queries to compare")
    return (total / count).numpy()


def similarity_for(record: dict, sources: runs.Sources, max_queries: int = MAX_QUERIES) -> tuple[np.ndarray, list[str]]:
    """The run's (K, K) matrix with rows/columns in ascending layer order, and the layer labels."""
    config = record.get("config") or {}
    if config.get("layer_mode", "recurrent") != "recurrent" or int(config.get("k", 1)) < 2:
        raise FigureSkipped(f"run {record['run_id']} reads one feature per query (no layers to compare)")
    model = runs.load_model(record, sources)
    samples = sorted(runs.samples_by_qid(record, sources).values(), key=lambda s: str(s.qid))[:max_queries]
    batches = (runs.batch(model, record, sources, samples[i:i + BATCH]) for i in range(0, len(samples), BATCH))
    matrix = layer_similarity(model, batches)
    layers = [int(n) for n in runs.step_layers(config, model.backbone.depth)]
    order = np.argsort(layers)
    return matrix[np.ix_(order, order)], [str(layers[i]) for i in order]


def plot(panels: list[tuple[str, np.ndarray, list[str]]], out_dir: str | Path, stem: str = "fig9_layer_similarity",
         backbone: str = "") -> list[Path]:
    return save(figure(panels, backbone), out_dir, stem)


def figure(panels: list[tuple[str, np.ndarray, list[str]]], backbone: str = ""):
    """One heatmap per (title, matrix, layer labels); x: video layer, y: text layer; one colour scale."""
    setup()
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not panels:
        raise FigureSkipped("no run to draw")
    lo = min(float(m.min()) for _, m, _ in panels)
    hi = max(float(m.max()) for _, m, _ in panels)
    n = len(panels)
    fig, axes = plt.subplots(1, n + 1, figsize=(min(TEXT_WIDTH, 1.75 * n + 0.5), 2.0), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n + [0.06]})
    cbar_ax = axes[0, n]
    for i, (ax, (title, matrix, layers)) in enumerate(zip(axes[0][:n], panels)):
        sns.heatmap(matrix, ax=ax, vmin=lo, vmax=hi, cmap="viridis", square=True, annot=len(layers) <= 6,
                    fmt=".2f", annot_kws={"size": 5}, xticklabels=layers, yticklabels=layers,
                    cbar=i == n - 1, cbar_ax=cbar_ax if i == n - 1 else None,
                    cbar_kws={"label": "cosine similarity"})
        ax.invert_yaxis()
        ax.set_xlabel("video layer")
        ax.set_ylabel("text layer" if i == 0 else "")
        ax.set_title(f"({chr(97 + i)}) {title}", fontsize=7)
    if backbone:
        fig.suptitle(f"Video–text cosine similarity across layers ({backbone})", y=1.04)
    return fig


def render(items: list[tuple[str, dict]], out_dir: str | Path, sources: runs.Sources,
           stem: str = "fig9_layer_similarity") -> list[Path]:
    """Figure 9 from runs: ``items`` = [(panel title, record)]; runs that cannot be drawn are left out."""
    panels, backbone = [], ""
    for title, record in items:
        matrix, layers = similarity_for(record, sources)
        panels.append((title, matrix, layers))
        backbone = record.get("backbone", "")
    return plot(panels, out_dir, stem, backbone)
