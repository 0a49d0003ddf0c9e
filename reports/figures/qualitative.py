"""Qualitative figures, one per selected query: a strip of frames, the ground-truth windows, our
top windows, and the predicted saliency against the annotators' scores.

Queries are chosen from the run's per-query MR mAP (``per_query.csv``; without it, the top
window's IoU with the ground truth): the best ones (successes) and the worst ones (failure
cases, as the paper shows too), ties broken by qid. Drawn from the predictions file and the
dataset's annotations and videos; no model is run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from r2bench.reports import records as rec
from r2bench.reports.figures import runs
from r2bench.reports.figures.style import TEXT_WIDTH, FigureSkipped, save, setup

N_FRAMES = 8
MAX_SCORE = 4          # annotator scores are 0–4 (QVHighlights)
TOP_WINDOWS = 3
SELECT_KEY = "MR-full-mAP"


def top1_iou(pred: list, gts) -> float:
    """IoU of the first predicted window with the best-matching ground-truth window."""
    if not pred or not gts:
        return 0.0
    s, e = pred[0][:2]
    best = 0.0
    for a, b in gts:
        inter = max(0.0, min(e, b) - max(s, a))
        union = (e - s) + (b - a) - inter
        best = max(best, inter / union if union > 0 else 0.0)
    return best


def select(record: dict, samples: dict, n_best: int = 2, n_worst: int = 2) -> list[tuple[str, str, float, str]]:
    """[(qid, "success"|"failure", score, score name)] — best and worst queries of the run."""
    preds = {str(line["qid"]): line for line in rec.predictions(record)}
    if not preds:
        raise FigureSkipped(f"run {record['run_id']} has no predictions file")
    pq = rec.per_query(record)
    if pq is not None and SELECT_KEY in pq.columns:
        scores, name = pq[SELECT_KEY].dropna(), "MR AP"
    else:
        scores = {q: 100 * top1_iou(p.get("pred_relevant_windows"), samples[q].windows)
                  for q, p in preds.items() if q in samples}
        scores, name = pd.Series(scores, dtype=float), "top-1 IoU ×100"
    scores = scores[[q for q in scores.index if q in preds and q in samples and samples[q].windows]]
    if scores.empty:
        raise FigureSkipped("no query with both a prediction and ground-truth windows")
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    best = ordered[:n_best]
    worst = [kv for kv in sorted(scores.items(), key=lambda kv: (kv[1], kv[0])) if kv not in best][:n_worst]
    return [(q, "success", v, name) for q, v in best] + [(q, "failure", v, name) for q, v in worst]


def strip_frames(n: int, fps: float, gt_windows, k: int = N_FRAMES) -> list[int]:
    """``k`` frame indices: the centre frame of every ground-truth window (up to half of them),
    the rest spread evenly over the video."""
    centres = sorted({min(n - 1, max(0, int(((a + b) / 2) * fps))) for a, b in gt_windows})[: k // 2]
    spread = np.linspace(0, n - 1, max(k - len(centres), 1)).round().astype(int).tolist()
    chosen = sorted(set(centres) | set(spread))
    while len(chosen) > k:                       # drop spread frames closest to a chosen centre
        extra = [t for t in chosen if t not in centres]
        chosen.remove(min(extra, key=lambda t: min(abs(t - c) for c in centres)))
    return chosen


def figure(sample, pred: dict, frames: np.ndarray, fps: float, verdict: str, score: float, score_name: str,
           row: str = ""):
    """Frames strip, windows (ground truth, our top windows), saliency (annotators vs ours)."""
    setup()
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    duration = float(sample.duration)
    windows = (pred.get("pred_relevant_windows") or [])[:TOP_WINDOWS]
    idx = strip_frames(len(frames), fps, sample.windows)
    inside = lambda t, spans: any(a <= (t + 0.5) / fps < b for a, b, *_ in spans)
    fig = plt.figure(figsize=(TEXT_WIDTH, 2.9))
    gs = fig.add_gridspec(3, len(idx), height_ratios=[1.0, 0.55, 1.0], hspace=0.35, wspace=0.04)
    for c, t in enumerate(idx):
        ax = fig.add_subplot(gs[0, c])
        ax.imshow(frames[t])
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{(t + 0.5) / fps:.0f} s", fontsize=6, pad=2)
        # frame border: green inside a ground-truth window, orange inside our top window, both: dashed green
        gt, ours = inside(t, sample.windows), inside(t, windows[:1])
        colour = "#1b9e77" if gt else "#d95f02" if ours else "#cccccc"
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2.0 if gt or ours else 0.6)
            spine.set_linestyle("--" if gt and ours else "-")
    # windows: ground truth and our top windows
    ax = fig.add_subplot(gs[1, :])
    for a, b in sample.windows:
        ax.axvspan(a, b, ymin=0.55, ymax=0.95, color="#1b9e77", alpha=0.85, lw=0)
    for rank, w in enumerate(windows):
        y0 = 0.05 + (2 - rank) * 0.15
        ax.axvspan(w[0], w[1], ymin=y0, ymax=y0 + 0.12, color="#d95f02", alpha=1.0 - 0.25 * rank, lw=0)
        if len(w) > 2:
            ax.text(min(w[1], duration), (y0 + 0.06), f" {w[2]:.2f}", fontsize=5, va="center", transform=ax.get_xaxis_transform())
    ax.set_xlim(0, duration)
    ax.set_yticks([0.25, 0.75], [f"ours (top {len(windows)})", "ground truth"], fontsize=6)
    ax.set_ylim(0, 1)
    ax.grid(False)
    ax.tick_params(axis="x", labelbottom=False)
    # saliency: annotators' scores per 2-s clip against our per-frame saliency
    ax = fig.add_subplot(gs[2, :], sharex=ax)
    if sample.saliency:
        clip_s = 2.0
        t = (np.asarray(sample.clip_ids) + 0.5) * clip_s
        scores = np.asarray(sample.saliency, dtype=float)
        order = np.argsort(t)
        ax.fill_between(t[order], scores.min(1)[order], scores.max(1)[order], color="#1b9e77", alpha=0.2, lw=0,
                        step="mid", label="annotators (min–max)")
        ax.step(t[order], scores.mean(1)[order], where="mid", color="#1b9e77", label="annotators (mean)")
        ax.set_ylabel("annotator score")
        ax.set_ylim(0, MAX_SCORE + 0.2)
    ax2 = ax.twinx()
    sal = np.asarray(pred.get("pred_saliency_scores") or [], dtype=float)
    ax2.plot((np.arange(len(sal)) + 0.5) / fps, sal, color="#d95f02", label="ours (saliency)")
    ax2.set_ylabel("predicted saliency")
    ax2.grid(False)
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, duration)
    handles = [*ax.get_legend_handles_labels()[0], *ax2.get_legend_handles_labels()[0]]
    labels = [*ax.get_legend_handles_labels()[1], *ax2.get_legend_handles_labels()[1]]
    handles += [Patch(color="#1b9e77"), Patch(color="#d95f02")]
    labels += ["ground-truth window (frame border)", "our windows (border: top-1)"]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=3, frameon=False, fontsize=6)
    who = f"{row} — " if row else ""
    fig.suptitle(f'{who}{verdict} ({score_name} {score:.1f}), qid {sample.qid}: "{sample.query}"', y=0.99, fontsize=8)
    return fig


def render(record: dict, out_dir: str | Path, sources: runs.Sources, stem: str = "qualitative",
           n_best: int = 2, n_worst: int = 2) -> list[tuple[str, list[Path]]]:
    """One figure per selected query: [(caption, [png, pdf])]."""
    samples = runs.samples_by_qid(record, sources)
    preds = {str(line["qid"]): line for line in rec.predictions(record)}
    spec = runs.dataset_spec(record, sources)
    out = []
    for qid, verdict, score, name in select(record, samples, n_best, n_worst):
        sample = samples[qid]
        frames = runs.display_frames(record, sources, sample.vid, size=112)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in qid)
        fig = figure(sample, preds[qid], frames, spec.fps, verdict, score, name, row=record.get("row") or "")
        paths = save(fig, out_dir, f"{stem}_{verdict}_{safe}")
        out.append((f"{verdict}: qid {qid} ({name} {score:.1f})", paths))
    return out
