"""Test-time decoding: candidate windows, rounding, NMS, saliency.

Per sample, as the public code's ``R2Tuning.forward(mode='test')`` and ``Grounding.evaluate``
do it (``official`` protocol): the top ``max_windows`` candidates by sigmoid(cls) over all
levels, clamped to [0, duration]; rows whose unclamped end is < duration rounded to the
dataset's unit; greedy NMS (hard: later rows with IoU ≥ θ get score 0 and stay; linear: every
later row × (1 − IoU)); sorted by score. The ``paper`` protocol removes suppressed rows,
thresholds linear soft-NMS and does not round. IoU is computed in float32 without epsilon,
like nncore's ``temporal_iou`` (zero-length windows give NaN, which never suppresses).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from r2bench.methods.head.config import HeadConfig
from r2bench.methods.head.grounding import HeadOutput


def window_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix of windows a (N, 2) and b (M, 2): intersection / (len_a + len_b − intersection)."""
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    return inter / ((a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None] - inter)


def _iou_row(w: np.ndarray, i: int) -> np.ndarray:
    """float32 IoU of row i with rows i+1: (same operations as nncore's temporal_iou)."""
    a, rest = w[i], w[i + 1:]
    inter = np.clip(np.minimum(a[1], rest[:, 1]) - np.maximum(a[0], rest[:, 0]), np.float32(0), None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / ((a[1] - a[0]) + (rest[:, 1] - rest[:, 0]) - inter)


def greedy_nms(windows: Tensor, scores: Tensor, kind: str, threshold: float, *, keep_suppressed: bool = True,
               thresholded: bool = False) -> tuple[Tensor, Tensor]:
    """Greedy NMS over ≤ ``max_windows`` rows: repeatedly move the best remaining row up, then
    ``kind="hard"``: set later rows with IoU ≥ ``threshold`` to score 0 (kept, or removed when
    ``keep_suppressed`` is False); ``kind="linear"``: multiply later rows by (1 − IoU) (only
    those with IoU ≥ ``threshold`` when ``thresholded``). Returns rows sorted by score.

    Hand-written in NumPy float32: torchvision's NMS removes rows and tests IoU > θ in
    double precision, and offers no soft-NMS."""
    if kind not in ("hard", "linear"):
        raise ValueError(f"NMS kind must be 'hard' or 'linear', got {kind!r}")
    w = windows.detach().cpu().float().numpy().copy()
    s = scores.detach().cpu().float().numpy().copy()
    thr = np.float32(threshold)
    suppressed = np.zeros(len(s), dtype=bool)
    for i in range(len(s)):
        j = i + int(np.argmax(s[i:]))
        w[[i, j]], s[[i, j]], suppressed[[i, j]] = w[[j, i]], s[[j, i]], suppressed[[j, i]]
        if i + 1 == len(s):
            break
        iou = _iou_row(w, i)
        if kind == "hard":
            hit = iou >= thr
            s[i + 1:][hit] = 0
            suppressed[i + 1:] |= hit
        else:
            decay = np.float32(1) - iou
            if thresholded:
                decay = np.where(iou >= thr, decay, np.float32(1)).astype(np.float32)
            s[i + 1:] *= decay
    if kind == "hard" and not keep_suppressed:
        w, s = w[~suppressed], s[~suppressed]
    order = np.argsort(-s, kind="stable")
    return torch.from_numpy(w[order]).to(windows.device), torch.from_numpy(s[order]).to(scores.device)


def hard_nms(windows: Tensor, scores: Tensor, threshold: float, keep_suppressed: bool = True) -> tuple[Tensor, Tensor]:
    return greedy_nms(windows, scores, "hard", threshold, keep_suppressed=keep_suppressed)


def linear_soft_nms(windows: Tensor, scores: Tensor, threshold: float | None = None) -> tuple[Tensor, Tensor]:
    """Linear soft-NMS; ``threshold=None`` decays every later row (public code)."""
    return greedy_nms(windows, scores, "linear", threshold or 0.0, thresholded=threshold is not None)


def cls_saliency(out: HeadOutput) -> Tensor:
    """The public code's per-clip score from the classification head: per clip, the maximum
    over levels of sigmoid(cls), where level j's T_ij = floor(T_i / s_j) scores are each
    repeated int(T_i / T_ij) times and padded with the last one to T_i. Vectorised over the
    batch with per-sample lengths T_i (a gather per level)."""
    lengths = out.video_mask.sum(1)                                            # B
    t = out.saliency.shape[1]
    clips = torch.arange(t, device=lengths.device)[None]
    best = torch.zeros_like(out.saliency, dtype=torch.float32)
    for level in out.levels:
        n = torch.div(lengths, level["stride"], rounding_mode="floor")        # T_ij
        reps = torch.div(lengths, n.clamp(min=1), rounding_mode="floor")
        idx = torch.minimum(torch.div(clips, reps[:, None], rounding_mode="floor"), (n - 1).clamp(min=0)[:, None])
        idx = idx.clamp(max=level["cls"].shape[1] - 1)
        score = level["cls"].float().sigmoid().gather(1, idx) * (n > 0)[:, None]
        best = torch.maximum(best, score)
    return best


def merged_saliency(out: HeadOutput) -> Tensor:
    """The public code's test-time saliency on grounding datasets (``merge_cls_sal=True``):
    :func:`cls_saliency` times the cosine saliency."""
    return cls_saliency(out) * out.saliency.float()


def output_saliency(out: HeadOutput, cfg: HeadConfig) -> Tensor:
    """The per-clip saliency a prediction carries: the cosine (``saliency_times_cls=False``),
    else the classification head's score, times the cosine when ``merge_cls_saliency``."""
    if not cfg.saliency_times_cls:
        return out.saliency
    return merged_saliency(out) if cfg.merge_cls_saliency else cls_saliency(out)


def decode_sample(out: HeadOutput, i: int, fps: float, duration: float, cfg: HeadConfig,
                  saliency: Tensor | None = None) -> dict[str, Tensor]:
    """Sample ``i``: ``raw`` (top candidates [start, end, score] in seconds, unclamped),
    ``windows`` (after clamping, rounding and NMS) and ``saliency`` (T_i,), all float32.
    Without regression (``cfg.regression=False``) ``raw`` and ``windows`` are None."""
    n_valid = int(out.video_mask[i].sum())
    sal = (saliency if saliency is not None else out.saliency)[i, :n_valid].float()
    if not cfg.regression:
        return dict(raw=None, windows=None, saliency=sal)
    cand_w, cand_s = [], []
    for level in out.levels:
        m = level["mask"][i]
        points = torch.arange(m.shape[0], device=m.device, dtype=torch.float32)[m] * level["stride"]
        reg = level["reg"][i][m].float() * level["stride"]
        cand_w.append(torch.stack([points - reg[:, 0], points + reg[:, 1]], 1) / fps)
        cand_s.append(level["cls"][i][m].float().sigmoid())
    windows, scores = torch.cat(cand_w), torch.cat(cand_s)
    top = scores.argsort(descending=True, stable=True)[: cfg.max_windows]
    raw = torch.cat([windows[top], scores[top, None]], 1)
    windows, scores = raw[:, :2].clamp(0, duration), raw[:, 2]
    if cfg.round_windows and cfg.window_unit is not None:
        unit = cfg.window_unit
        inside = raw[:, 1] < duration
        windows[inside] = torch.round(windows[inside] / unit) * unit
    if cfg.nms == "hard":
        windows, scores = hard_nms(windows, scores, cfg.nms_threshold, cfg.nms_keep_suppressed)
    elif cfg.nms == "linear":
        windows, scores = linear_soft_nms(windows, scores, cfg.nms_threshold if cfg.soft_nms_thresholded else None)
    return dict(raw=raw, windows=torch.cat([windows, scores[:, None]], 1), saliency=sal)


def decode(out: HeadOutput, fps: Tensor, durations: Tensor, cfg: HeadConfig) -> list[dict]:
    """Per sample: ranked windows [[start, end, score], …] (seconds; None without regression)
    and per-clip saliency."""
    saliency = output_saliency(out, cfg)
    results = []
    for i in range(out.h.shape[0]):
        d = decode_sample(out, i, float(fps[i]), float(durations[i]), cfg, saliency)
        windows = None if d["windows"] is None else \
            [[round(s, 4), round(e, 4), round(c, 4)] for s, e, c in d["windows"].tolist()]
        results.append(dict(windows=windows, saliency=[round(x, 4) for x in d["saliency"].tolist()]))
    return results
