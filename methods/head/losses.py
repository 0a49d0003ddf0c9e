"""Training targets (FCOS-style assignment) and the five losses (Eq. 10–15)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from methods.head.config import HeadConfig
from methods.head.grounding import HeadOutput


def regression_range(strides: tuple[int, ...], index: int) -> tuple[float, float]:
    """Distances (frames) a level is responsible for: (0,2), (2,4), (4,8), (8,∞) for strides 1–8."""
    lo = 0.0 if index == 0 else 2.0 * strides[index - 1]
    hi = math.inf if index == len(strides) - 1 else 2.0 * strides[index]
    return lo, hi


def assign_targets(level: dict, windows: list[Tensor], fps: Tensor, strides: tuple[int, ...],
                   radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """FCOS-style labels (B, Tl) and regression targets (B, Tl, 2) in stride units for one level.

    A point j·s is positive for a window if it lies within `radius`·s of the window centre
    (clipped to the window) and its larger distance to the boundaries is in the level's
    range; ties go to the shortest window."""
    stride, mask = level["stride"], level["mask"]
    b, tl = mask.shape
    lo, hi = regression_range(strides, level["index"])
    points = torch.arange(tl, device=mask.device, dtype=torch.float32) * stride
    labels = torch.zeros(b, tl, device=mask.device)
    targets = torch.zeros(b, tl, 2, device=mask.device)
    for i, win in enumerate(windows):
        if win.numel() == 0:
            continue
        w = win.to(mask.device).float() * fps[i]                      # frames, (G, 2)
        left = points[:, None] - w[None, :, 0]                        # Tl, G
        right = w[None, :, 1] - points[:, None]
        centre = (w[:, 0] + w[:, 1]) / 2
        c_lo = torch.maximum(w[:, 0], centre - radius * stride)
        c_hi = torch.minimum(w[:, 1], centre + radius * stride)
        inside = (points[:, None] >= c_lo) & (points[:, None] <= c_hi)
        reach = torch.maximum(left, right)
        ok = inside & (reach >= lo) & (reach <= hi) & mask[i, :, None]
        lengths = (w[:, 1] - w[:, 0])[None].expand(tl, -1).masked_fill(~ok, math.inf)
        best = lengths.argmin(1)
        pos = ok.any(1)
        labels[i] = pos.float()
        rows = torch.arange(tl, device=mask.device)
        targets[i] = torch.stack([left[rows, best], right[rows, best]], -1) / stride * pos[:, None]
    return labels, targets


def saliency_contrastive(saliency: Tensor, target: Tensor, mask: Tensor, tau: float,
                         generator: torch.Generator | None = None) -> Tensor:
    """Eq. 15: per sample, one random positive clip against the clips of lower saliency.

    Branch-free (no data-dependent shapes), so the same code runs on fake tensors when
    memory is estimated. Samples without a positive or without a lower clip are left out."""
    positive = (target > 0) & mask
    draw = torch.rand(target.shape, generator=generator).to(target.device)
    p = draw.masked_fill(~positive, -1.0).argmax(1, keepdim=True)             # B, 1
    level = target.gather(1, p)
    negative = (target < level) & mask
    logits = (saliency / tau).masked_fill(~negative, float("-inf"))
    logits = logits.scatter(1, p, (saliency / tau).gather(1, p))
    loss = logits.logsumexp(1) - (saliency / tau).gather(1, p).squeeze(1)
    valid = (positive.any(1) & negative.any(1)).float()
    return (loss.nan_to_num(0.0) * valid).sum() / valid.sum().clamp(min=1)


def info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Symmetric InfoNCE between rows of a and b (positives on the diagonal)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def head_losses(out: HeadOutput, windows: list[Tensor], fps: Tensor, saliency_target: Tensor,
                cfg: HeadConfig, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """All five losses (Eq. 10–15), weighted, plus ``total``."""
    cls_sum = reg_sum = n_valid = n_pos = out.h.new_zeros(())
    for level in out.levels:
        labels, targets = assign_targets(level, windows, fps, cfg.strides)
        valid = level["mask"].float()
        focal = sigmoid_focal_loss(level["cls"].float(), labels, alpha=-1 if cfg.focal_alpha is None else cfg.focal_alpha,
                                   gamma=cfg.focal_gamma, reduction="none")
        cls_sum = cls_sum + (focal * valid).sum()
        n_valid = n_valid + valid.sum()
        pos = labels * valid
        l1 = F.l1_loss(level["reg"].float(), targets, reduction="none").sum(-1)
        reg_sum = reg_sum + (l1 * pos).sum()
        n_pos = n_pos + pos.sum()
    cls_loss = cls_sum / n_valid.clamp(min=1)
    reg_loss = reg_sum / n_pos.clamp(min=1)
    zero = out.h.sum() * 0
    mask = out.video_mask
    sal_loss = saliency_contrastive(out.saliency.float(), saliency_target, mask, cfg.temperature, generator)
    # calibration: per-layer CLS features averaged over positive frames vs per-layer pooled queries
    positive = (saliency_target > 0) & mask
    weight = torch.where(positive.any(1, keepdim=True), positive, mask).float()
    weight = weight / weight.sum(1, keepdim=True).clamp(min=1)
    videos = torch.stack([torch.einsum("bt,btc->bc", weight, f.float()) for f in out.layer_cls], 1)  # B, K, C
    queries = torch.stack([q.float() for q in out.layer_queries], 1)                               # B, K, C
    video_cal = (torch.stack([info_nce(videos[:, k], queries[:, k], cfg.temperature) for k in range(videos.shape[1])]).mean()
                 if videos.shape[0] > 1 else zero)
    layer_cal = (torch.stack([info_nce(videos[i], queries[i], cfg.temperature) for i in range(videos.shape[0])]).mean()
                 if videos.shape[1] > 1 else zero)
    losses = {
        "cls": cfg.cls_weight * cls_loss,
        "reg": cfg.reg_weight * reg_loss,
        "saliency": cfg.saliency_weight * sal_loss,
        "video_calibration": cfg.video_calibration_weight * video_cal,
        "layer_calibration": cfg.layer_calibration_weight * layer_cal,
    }
    losses["total"] = sum(losses.values())
    return losses


