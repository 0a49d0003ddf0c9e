"""Figure 8: the attention maps of query-modulated spatial pooling, per refinement step (layer),
for two queries on the same video, overlaid on its frames.

The R² Block pools each frame's tokens with softmax(w_q(text) · w_v(video) / √C) (one
distribution over the frame's tokens per query token). Forward hooks on the blocks' ``w_q`` and
``w_v`` capture their outputs while the model runs, and the maps are rebuilt from them with the
block's own scale — the head is not edited. A map is the mean over the query's real tokens of
these distributions, over the patch tokens ([CLS] left out), on the backbone's patch grid.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from r2bench.reports.figures import runs
from r2bench.reports.figures.style import TEXT_WIDTH, FigureSkipped, save, setup

N_FRAMES = 4


def attention_maps(model, batch: dict) -> list[torch.Tensor]:
    """Per refinement step: (B, T, P) pooling attention over the P patch tokens, averaged over
    each query's real tokens (captured from the blocks' ``w_q``/``w_v`` outputs)."""
    captured: dict[str, list[torch.Tensor]] = {"q": [], "v": []}
    handles = []
    for block in model.head.blocks:
        if not (hasattr(block, "w_q") and hasattr(block, "w_v")):
            raise FigureSkipped(f"{type(block).__name__} has no w_q/w_v: not an R² Block")
        handles.append(block.w_q.register_forward_hook(lambda m, i, o: captured["q"].append(o.detach())))
        handles.append(block.w_v.register_forward_hook(lambda m, i, o: captured["v"].append(o.detach())))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in handles:
            h.remove()
    if len(captured["q"]) != len(captured["v"]) or not captured["q"]:
        raise FigureSkipped("query-modulated pooling did not run (no w_q/w_v calls captured)")
    scale = model.head.blocks[0].scale
    mask = runs.text_mask(batch["text_ids"]).float()                          # B, Lt
    maps = []
    for q, v in zip(captured["q"], captured["v"]):                          # (B, Lt, C), (B, T, N, C)
        att = torch.einsum("bjc,btnc->btjn", q.float(), v.float()).mul(scale).softmax(-1)
        att = torch.einsum("btjn,bj->btn", att, mask / mask.sum(1, keepdim=True))
        patches = att[..., 1:]                                                # [CLS] left out
        maps.append(patches / patches.sum(-1, keepdim=True).clamp(min=1e-12))
    return maps


def pick_video(samples: dict) -> list:
    """The first video (by id) of the split with two different queries; else one query."""
    by_vid: dict[str, list] = {}
    for s in samples.values():
        by_vid.setdefault(s.vid, []).append(s)
    for vid in sorted(by_vid):
        queries = {s.query: s for s in by_vid[vid]}
        if len(queries) >= 2:
            return sorted(queries.values(), key=lambda s: str(s.qid))[:2]
    if not by_vid:
        raise FigureSkipped("the evaluation split has no queries")
    return [by_vid[sorted(by_vid)[0]][0]]


def pick_frames(samples: list, n_clips: int, fps: float, n: int = N_FRAMES) -> list[int]:
    """``n`` frames spread over the queries' ground-truth windows (the whole video if too few)."""
    inside = sorted({i for s in samples for (a, b) in s.windows for i in range(n_clips)
                     if a <= (i + 0.5) / fps < b})
    pool = inside if len(inside) >= n else list(range(n_clips))
    idx = np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)
    return [pool[i] for i in idx]


def render(record: dict, out_dir: str | Path, sources: runs.Sources, stem: str = "fig8_attention") -> list[Path]:
    """Figure 8 for one run (an R²-style head), PNG and PDF in ``out_dir``."""
    return save(figure(record, sources), out_dir, stem)


def figure(record: dict, sources: runs.Sources):
    """Figure 8: rows = query × refinement step, columns = frames."""
    setup()
    import matplotlib.pyplot as plt

    model = runs.load_model(record, sources)
    samples = pick_video(runs.samples_by_qid(record, sources))
    batch = runs.batch(model, record, sources, samples)
    maps = attention_maps(model, batch)
    grid = int(round(math.sqrt(maps[0].shape[-1])))
    if grid * grid != maps[0].shape[-1]:
        raise FigureSkipped(f"{maps[0].shape[-1]} patch tokens are not a square grid")
    layers = runs.step_layers(record.get("config") or {}, model.backbone.depth)
    spec = runs.dataset_spec(record, sources)
    n_clips = int(batch["video_mask"][0].sum())
    frames_idx = pick_frames(samples, n_clips, spec.fps)
    frames = runs.display_frames(record, sources, samples[0].vid)
    size = frames.shape[1]

    n_rows, n_cols = len(samples) * len(maps), len(frames_idx)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.75 * TEXT_WIDTH, 0.75 * n_rows * TEXT_WIDTH / (n_cols + 0.6)),
                             squeeze=False)
    for qi, sample in enumerate(samples):
        for step, m in enumerate(maps):
            row = qi * len(maps) + step
            vmax = float(m[qi, frames_idx].max())            # one scale per row (query × layer)
            for col, t in enumerate(frames_idx):
                ax = axes[row, col]
                heat = m[qi, t].reshape(1, 1, grid, grid)
                heat = F.interpolate(heat, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
                ax.imshow(frames[min(t, len(frames) - 1)])
                ax.imshow(heat, cmap="turbo", alpha=0.45, vmin=0, vmax=vmax)
                ax.set_xticks([]), ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"t = {(t + 0.5) / spec.fps:.0f} s")
                if col == 0:
                    ax.set_ylabel(f"Q{qi + 1} · layer {layers[step]}")
    lines = [f'Q{i + 1}: "{s.query}"' for i, s in enumerate(samples)]
    note = "" if len(samples) == 2 else " (no video of this split has two different queries)"
    fig.suptitle(f"Pooling attention, video {samples[0].vid}{note}\n" + "\n".join(lines), y=1.0, fontsize=7)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    return fig
