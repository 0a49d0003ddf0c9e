"""Training targets (FCOS-style assignment) and the five losses (Eq. 10–15).

Weights (``HeadConfig``): focal 1.0; L1 0.1 on the sum of both boundary distances per
positive point, divided by the number of positives — the same loss as the public code's
0.2 on their mean (nncore ``L1Loss`` with ``avg_factor`` = 2 × positives); saliency 0.1;
video and layer calibration 0.1 each. Logit scale of the contrastive terms:
exp(log(1/τ)) clamped at 100, computed in float32 as the public code does (≈ 1/τ).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from r2bench.methods.head.config import HeadConfig
from r2bench.methods.head.grounding import HeadOutput


def regression_range(strides: tuple[int, ...], index: int) -> tuple[float, float]:
    """Distances (frames) a level is responsible for: (0,2), (2,4), (4,8), (8,∞) for strides 1–8."""
    lo = 0.0 if index == 0 else 2.0 * strides[index - 1]
    hi = math.inf if index == len(strides) - 1 else 2.0 * strides[index]
    return lo, hi


@lru_cache(maxsize=None)
def logit_scale(tau: float, max_scale: float = 100.0) -> float:
    """exp(log(1/τ)) in float32, clamped at ``max_scale`` (nncore InfoNCE / SampledNCE).
    Memoised and warmed at import for τ = 0.07, so it never runs under fake tensors."""
    return float(torch.tensor([math.log(1 / tau)]).exp().clamp(max=max_scale))


logit_scale(0.07)


def assign_targets(level: dict, windows: list[Tensor], fps: Tensor, strides: tuple[int, ...],
                   radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """FCOS-style labels (B, Tl) and regression targets (B, Tl, 2) in stride units for one level.

    A point j·s is positive for a window if it lies within `radius`·s of the window centre
    (clipped to the window) and its larger distance to the boundaries is in the level's
    range; ties go to the shortest window. Labels are geometric: the losses apply the level
    mask (as the public code does)."""
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
        ok = inside & (reach >= lo) & (reach <= hi)
        lengths = (w[:, 1] - w[:, 0])[None].expand(tl, -1).masked_fill(~ok, math.inf)
        best = lengths.argmin(1)
        pos = ok.any(1)
        labels[i] = pos.float()
        rows = torch.arange(tl, device=mask.device)
        targets[i] = torch.stack([left[rows, best], right[rows, best]], -1) / stride * pos[:, None]
    return labels, targets


def widen_windows(windows: Tensor, n_clips: Tensor, fps: Tensor) -> Tensor:
    """The public code's window binding (Grounding.bind_boundary): clamp to the video's clips,
    swap reversed ends, widen windows shorter than one clip to one clip about their centre.
    ``n_clips`` and ``fps`` are 0-d tensors (no host sync, so it runs on fake tensors)."""
    max_time = (n_clips.float() / fps).to(windows.device)
    half = (0.5 / fps).to(windows.device)
    w = torch.minimum(windows.float().clamp(min=0), max_time)
    w = torch.where((w[:, 1] < w[:, 0])[:, None], w.flip(1), w)
    centre = torch.minimum(torch.maximum(w.sum(1) / 2, half), max_time - half)
    short = (w[:, 1] - w[:, 0]) < 2 * half
    return torch.where(short[:, None], torch.stack([centre - half, centre + half], 1), w)


def positive_clips(target: Tensor, mask: Tensor, rule: str = "nonzero") -> Tensor:
    """Which real clips are positives for the saliency loss (B, T): ``"nonzero"`` target > 0
    (QVHighlights, windows), ``"above_half"`` target > 0.5 (the public YouTube Highlights code:
    ``(match + 1) / 2 > 0.5``), ``"above_median"`` target > the video's lower median over its
    real clips (the public TVSum code, torch's median)."""
    if rule == "nonzero":
        return (target > 0) & mask
    if rule == "above_half":
        return (target > 0.5) & mask
    if rule == "above_median":
        n = mask.sum(1, keepdim=True)
        ordered = target.float().masked_fill(~mask, float("inf")).sort(1).values
        median = ordered.gather(1, torch.div((n - 1).clamp(min=0), 2, rounding_mode="floor"))
        return (target > median) & mask
    raise ValueError(f"positive clip rule must be nonzero, above_half or above_median, got {rule!r}")


def draw_positive_clips(target: Tensor, mask: Tensor, generator: torch.Generator | None = None,
                        rule: str = "nonzero") -> tuple[Tensor, Tensor]:
    """One random positive clip (:func:`positive_clips`) per sample, and whether the sample has one."""
    positive = positive_clips(target, mask, rule)
    draw = torch.rand(target.shape, generator=generator).to(target.device)
    return draw.masked_fill(~positive, -1.0).argmax(1), positive.any(1)


def saliency_contrastive(saliency: Tensor, target: Tensor, mask: Tensor, tau: float,
                         generator: torch.Generator | None = None, pos_clip: Tensor | None = None,
                         rule: str = "nonzero") -> Tensor:
    """Eq. 15 (paper): per sample, one positive clip against the clips of strictly lower
    saliency in the same video.

    Branch-free (no data-dependent shapes), so the same code runs on fake tensors when
    memory is estimated. Samples without a positive or without a lower clip are left out."""
    if pos_clip is None:
        pos_clip = draw_positive_clips(target, mask, generator, rule)[0]
    p = pos_clip.to(target.device)[:, None]
    level = target.gather(1, p)
    negative = (target < level) & mask
    logits = (saliency / tau).masked_fill(~negative, float("-inf"))
    logits = logits.scatter(1, p, (saliency / tau).gather(1, p))
    loss = logits.logsumexp(1) - (saliency / tau).gather(1, p).squeeze(1)
    valid = (positive_clips(target, mask, rule).any(1) & negative.any(1)).float()
    return (loss.nan_to_num(0.0) * valid).sum() / valid.sum().clamp(min=1)


def sampled_nce(saliency: Tensor, target: Tensor, mask: Tensor, tau: float, pos_clip: Tensor,
                valid: Tensor, directions: tuple[str, ...] = ("row", "col")) -> Tensor:
    """The public code's SampledNCELoss: logits = cosine × exp(log(1/τ)) over the clips whose
    saliency is ≤ the positive's (ties and the positive included); a row term (the positive
    against its own video's clips) plus a column term (each sample's positive clip against
    the same clip index of the other videos of the batch), each averaged over the samples.
    ``valid``: samples that have a positive clip (the others are left out). ``directions``:
    the terms summed (the public highlight-detection configs use the row term only)."""
    b = saliency.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=saliency.device)
    p = pos_clip.to(saliency.device)[:, None]
    onehot = torch.zeros_like(mask).scatter(1, p, True)
    allowed = ((target <= target.gather(1, p)) & mask & valid[:, None]) | onehot
    logits = (saliency * logit_scale(tau)).masked_fill(~allowed, float("-inf"))
    terms = torch.zeros_like(saliency[:, 0])
    if "row" in directions:
        terms = terms + logits.log_softmax(1).gather(1, p).squeeze(1)
    if "col" in directions:
        col = logits[:, p.squeeze(1)].T.masked_fill(~valid[None, :] & ~eye, float("-inf"))  # [b, b'] = logits[b', p_b]
        terms = terms + col.log_softmax(1).diagonal()
    w = valid.float()
    return -(terms * w).sum() / w.sum().clamp(min=1)


def info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Symmetric InfoNCE between rows of a and b (positives on the diagonal); with leading
    batch dimensions (…, M, C), the mean over all of them (nncore ``infonce_loss``)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2) * logit_scale(tau)
    m = logits.shape[-1]
    labels = torch.arange(m, device=a.device).repeat(logits.numel() // (m * m))
    return (F.cross_entropy(logits.reshape(-1, m), labels)
            + F.cross_entropy(logits.transpose(-1, -2).reshape(-1, m), labels)) / 2


def _cls_terms(logits: Tensor, labels: Tensor, cfg: HeadConfig) -> Tensor:
    """Per-point classification loss: sigmoid focal loss (nncore FocalLoss) or binary cross-entropy
    (nncore DynamicBCELoss), unreduced; labels may be soft (in [0, 1])."""
    if cfg.cls_loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    return sigmoid_focal_loss(logits.float(), labels, alpha=-1 if cfg.focal_alpha is None else cfg.focal_alpha,
                              gamma=cfg.focal_gamma, reduction="none")


def _window_losses(out: HeadOutput, windows: list[Tensor], fps: Tensor, cfg: HeadConfig) -> tuple[Tensor, Tensor]:
    """Classification (over valid points) and L1 regression (over positives) against FCOS-style
    targets from the ground-truth windows."""
    if cfg.widen_short_windows:
        lengths = out.video_mask.sum(1)
        windows = [widen_windows(w, lengths[i], fps[i]) if w.numel() else w for i, w in enumerate(windows)]
    cls_sum = reg_sum = n_valid = n_pos = out.h.new_zeros(())
    for level in out.levels:
        labels, targets = assign_targets(level, windows, fps, cfg.strides)
        valid = level["mask"].float()
        cls_sum = cls_sum + (_cls_terms(level["cls"], labels, cfg) * valid).sum()
        n_valid = n_valid + valid.sum()
        pos = labels if out.padded_pyramid else labels * valid   # the public code regresses every positive point
        l1 = F.l1_loss(level["reg"].float(), targets, reduction="none").sum(-1)
        reg_sum = reg_sum + (l1 * pos).sum()
        n_pos = n_pos + pos.sum()
    return cls_sum / n_valid.clamp(min=1), reg_sum / n_pos.clamp(min=1)


def _clip_cls_loss(level: dict, saliency_target: Tensor, cfg: HeadConfig) -> Tensor:
    """Classification at stride 1 against the per-clip saliency target (soft labels in [0, 1]),
    summed over real clips ÷ their number (public BundleLoss without ``loss_reg``)."""
    valid = level["mask"].float()
    target = saliency_target.to(level["cls"].device).float().clamp(0, 1)
    return (_cls_terms(level["cls"], target, cfg) * valid).sum() / valid.sum().clamp(min=1)


def head_losses(out: HeadOutput, windows: list[Tensor], fps: Tensor, saliency_target: Tensor,
                cfg: HeadConfig, generator: torch.Generator | None = None,
                pos_clip: Tensor | None = None) -> dict[str, Tensor]:
    """All five losses (Eq. 10–15), weighted, plus ``total``.

    ``pos_clip`` (B,): the positive clip of each sample for the saliency loss and, under
    ``calibration_clip="sampled"``, the calibration losses; drawn from ``generator`` if None."""
    mask = out.video_mask
    zero = out.h.sum() * 0
    if cfg.regression:
        cls_loss, reg_loss = _window_losses(out, windows, fps, cfg)
    else:   # the public HD configs: classification learns the per-clip saliency target, no regression
        cls_loss, reg_loss = _clip_cls_loss(out.levels[0], saliency_target, cfg), out.h.new_zeros(())
    drawn, has_positive = draw_positive_clips(saliency_target, mask, generator, cfg.positive_clips)
    pos_clip = drawn if pos_clip is None else pos_clip.to(drawn.device).long()
    saliency = out.saliency.float()
    if cfg.saliency_loss == "sampled_nce":
        sal_loss = sampled_nce(saliency, saliency_target, mask, cfg.temperature, pos_clip, has_positive,
                               cfg.saliency_directions)
    else:
        sal_loss = saliency_contrastive(saliency, saliency_target, mask, cfg.temperature, pos_clip=pos_clip,
                                        rule=cfg.positive_clips)
    # calibration: per-layer CLS features (the positive clip's, or averaged over positive clips)
    # against per-layer pooled queries
    if cfg.calibration_clip == "sampled":
        rows = torch.arange(len(pos_clip), device=pos_clip.device)
        videos = torch.stack([f.float()[rows, pos_clip] for f in out.layer_cls], 1)               # B, K, C
    else:
        positive = positive_clips(saliency_target, mask, cfg.positive_clips)
        weight = torch.where(positive.any(1, keepdim=True), positive, mask).float()
        weight = weight / weight.sum(1, keepdim=True).clamp(min=1)
        videos = torch.stack([torch.einsum("bt,btc->bc", weight, f.float()) for f in out.layer_cls], 1)
    queries = torch.stack([q.float() for q in out.layer_queries], 1)                               # B, K, C
    video_cal = (info_nce(videos.transpose(0, 1), queries.transpose(0, 1), cfg.temperature)   # per layer, across videos
                 if videos.shape[0] > 1 else zero)
    layer_cal = info_nce(videos, queries, cfg.temperature) if videos.shape[1] > 1 else zero  # per video, across layers
    losses = {
        "cls": cfg.cls_weight * cls_loss,
        "reg": cfg.reg_weight * reg_loss,
        "saliency": cfg.saliency_weight * sal_loss,
        "video_calibration": cfg.video_calibration_weight * video_cal,
        "layer_calibration": cfg.layer_calibration_weight * layer_cal,
    }
    losses["total"] = sum(losses.values())
    return losses
