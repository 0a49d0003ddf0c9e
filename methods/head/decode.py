"""Test-time decoding: candidate windows, NMS, saliency."""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms as box_nms

from methods.head.config import HeadConfig
from methods.head.grounding import HeadOutput


def window_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix of windows a (N, 2) and b (M, 2)."""
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None] - inter
    return inter / union.clamp(min=1e-9)


def linear_soft_nms(windows: Tensor, scores: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Linear soft-NMS: each kept window decays the scores of later overlapping ones by (1 − IoU).
    Hand-written: torchvision offers hard NMS only."""
    windows, scores = windows.clone(), scores.clone()
    for i in range(len(scores)):
        j = i + int(scores[i:].argmax())
        windows[[i, j]], scores[[i, j]] = windows[[j, i]], scores[[j, i]]
        if i + 1 < len(scores):
            iou = window_iou(windows[i:i + 1], windows[i + 1:])[0]
            scores[i + 1:] *= torch.where(iou > threshold, 1 - iou, torch.ones_like(iou))
    order = scores.argsort(descending=True, stable=True)
    return windows[order], scores[order]


def hard_nms(windows: Tensor, scores: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Greedy NMS through torchvision (1-D windows as unit-height boxes have the same IoU)."""
    boxes = torch.stack([windows[:, 0], torch.zeros_like(scores), windows[:, 1], torch.ones_like(scores)], 1)
    keep = box_nms(boxes.float(), scores.float(), threshold)
    return windows[keep], scores[keep]


def decode(out: HeadOutput, fps: Tensor, durations: Tensor, cfg: HeadConfig) -> list[dict]:
    """Per sample: ranked windows [[start, end, score], …] (seconds) and per-clip saliency."""
    results = []
    saliency = out.saliency
    if cfg.saliency_times_cls:
        saliency = saliency * out.levels[0]["cls"].sigmoid()
    for i in range(out.h.shape[0]):
        cand_w, cand_s = [], []
        for level in out.levels:
            m = level["mask"][i]
            points = torch.arange(m.shape[0], device=m.device, dtype=torch.float32)[m] * level["stride"]
            reg = level["reg"][i][m].float() * level["stride"]
            cand_w.append(torch.stack([points - reg[:, 0], points + reg[:, 1]], 1) / fps[i])
            cand_s.append(level["cls"][i][m].float().sigmoid())
        windows, scores = torch.cat(cand_w), torch.cat(cand_s)
        top = scores.argsort(descending=True, stable=True)[: cfg.max_windows]
        windows = windows[top].clamp(0, float(durations[i]))
        scores = scores[top]
        if cfg.nms == "hard":
            windows, scores = hard_nms(windows, scores, cfg.nms_threshold)
        elif cfg.nms == "linear":
            windows, scores = linear_soft_nms(windows, scores, cfg.nms_threshold)
        n_valid = int(out.video_mask[i].sum())
        results.append(dict(
            windows=[[round(float(s), 4), round(float(e), 4), round(float(c), 4)]
                     for (s, e), c in zip(windows.tolist(), scores.tolist())],
            saliency=[round(float(x), 4) for x in saliency[i, :n_valid].tolist()]))
    return results
