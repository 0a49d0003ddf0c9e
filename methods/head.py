"""The grounding head shared by every method: R² Block over K layers, pyramid, heads,
losses and decoding (paper Sec. 3–4; ../shared/spec/R2_TUNING.md).

Every method in the suite feeds its (adapted) per-layer tokens of both towers into this
head. R²-Tuning runs it recurrently over the last 4 layers; the baselines run it once on
the last layer (K = 1), which is what makes the comparison "identical heads and pipelines".

Where the paper and the authors' public code differ, the paper's value is the default and
the other is one field away (see ``HeadConfig``):
  focal α            paper 0.9          public code: none   (``focal_alpha=None``)
  L1 weight          paper 0.1          public code: 0.2    (``reg_weight``)
  padded text tokens masked in pooling  public code: not    (``mask_padded_text``)
  saliency at test   cosine             public code: × cls  (``saliency_times_cls``)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn
from torchvision.ops import nms as box_nms
from torchvision.ops import sigmoid_focal_loss

LAYER_MODES = ("recurrent", "single", "mean")
ATTENTION_ORDERS = ("cross_self", "self_cross")
NMS_KINDS = ("hard", "linear", "none")


@dataclass
class HeadConfig:
    """Architecture, loss and decoding settings of the shared head (paper defaults)."""

    num_layers: int = 4              # K: layers consumed / refinement steps
    layer_mode: str = "recurrent"    # "recurrent" | "single" (layer 13−K only) | "mean" (of the last K)
    reverse: bool = True             # refine 12 → 9 (True) or 9 → 12
    shared_block: bool = True        # one R² Block for all steps (recurrent) or one per step
    attention_order: str = "cross_self"
    temporal_layers: int = 1
    hidden: int = 256
    heads: int = 8
    ffn: int = 1024
    dropout: float = 0.5             # in the video/text MLPs (dataset preset)
    drop_path: float = 0.1
    use_tef: bool = True             # temporal encoding features (grounding datasets)
    strides: tuple[int, ...] = (1, 2, 4, 8)
    mask_padded_text: bool = True
    # losses
    focal_alpha: float | None = 0.9
    focal_gamma: float = 2.0
    cls_weight: float = 1.0
    reg_weight: float = 0.1
    saliency_weight: float = 0.1
    video_calibration_weight: float = 0.1
    layer_calibration_weight: float = 0.1
    temperature: float = 0.07
    # decoding
    max_windows: int = 50
    nms: str = "hard"
    nms_threshold: float = 0.7
    saliency_times_cls: bool = False

    def __post_init__(self):
        if self.layer_mode not in LAYER_MODES:
            raise ValueError(f"layer_mode must be one of {LAYER_MODES}, got {self.layer_mode!r}")
        if self.attention_order not in ATTENTION_ORDERS:
            raise ValueError(f"attention_order must be one of {ATTENTION_ORDERS}, got {self.attention_order!r}")
        if self.nms not in NMS_KINDS:
            raise ValueError(f"nms must be one of {NMS_KINDS}, got {self.nms!r}")
        if self.num_layers < 1 or self.temporal_layers < 1:
            raise ValueError("num_layers and temporal_layers must be ≥ 1")
        self.strides = tuple(self.strides)

    @property
    def steps(self) -> int:
        """Refinement steps: K when recurrent, else one."""
        return self.num_layers if self.layer_mode == "recurrent" else 1


class UniformDropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn as ``uniform ≥ p``: the same distribution, but on the
    CPU about 3× faster than torch's ``bernoulli_`` — which was a third of a training step,
    since the mappers drop out every one of the 50 tokens × T frames × K layers."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        mask = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))  # in place: 0 or 1/(1−p)
        return x * mask


def mapper(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """LN → Dropout → Linear → ReLU → LN → Dropout → Linear: maps CLIP tokens to the head width."""
    return nn.Sequential(nn.LayerNorm(in_dim), UniformDropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                         nn.LayerNorm(hidden), UniformDropout(dropout), nn.Linear(hidden, hidden))


def sinusoid_positions(mask: Tensor, dim: int) -> Tensor:
    """Fixed sine/cosine encoding of normalised positions (scale 2π) for (B, T) masks → (B, T, dim)."""
    pos = mask.float().cumsum(1)
    pos = pos / (pos[:, -1:] + 1e-6) * (2 * math.pi)
    freq = 10000 ** (2 * (torch.arange(dim // 2, device=mask.device) // 1) / dim)
    angles = pos[..., None] / freq
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(2)


class TemporalLayer(nn.Module):
    """Post-norm transformer decoder layer over frames: cross-attention to the query tokens,
    self-attention over frames, FFN (order switchable for Table 10)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        c = cfg.hidden
        self.order = cfg.attention_order
        self.cross = nn.MultiheadAttention(c, cfg.heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(c, cfg.heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(c, cfg.ffn), nn.ReLU(), nn.Linear(cfg.ffn, c))
        self.norm_cross, self.norm_self, self.norm_ffn = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.drop_path = DropPath(cfg.drop_path)

    def _cross(self, x, pos, text, text_pad):
        y = self.cross(x + pos, text, text, key_padding_mask=text_pad, need_weights=False)[0]
        return self.norm_cross(x + self.drop_path(y))

    def _self(self, x, pos, video_pad):
        q = x + pos
        y = self.self_attn(q, q, x, key_padding_mask=video_pad, need_weights=False)[0]
        return self.norm_self(x + self.drop_path(y))

    def forward(self, x: Tensor, pos: Tensor, text: Tensor, text_pad: Tensor, video_pad: Tensor) -> Tensor:
        if self.order == "cross_self":
            x = self._self(self._cross(x, pos, text, text_pad), pos, video_pad)
        else:
            x = self._cross(self._self(x, pos, video_pad), pos, text, text_pad)
        return self.norm_ffn(x + self.drop_path(self.ffn(x)))


class R2Block(nn.Module):
    """One refinement step's weights: token mappers, query-modulated spatial pooling, temporal layers."""

    def __init__(self, video_dim: int, text_dim: int, cfg: HeadConfig):
        super().__init__()
        c = cfg.hidden
        self.video_map = mapper(video_dim + (2 if cfg.use_tef else 0), c, cfg.dropout)
        self.text_map = mapper(text_dim, c, cfg.dropout)
        self.w_q = nn.Linear(c, c)
        self.w_v = nn.Linear(c, c)
        self.temporal = nn.ModuleList(TemporalLayer(cfg) for _ in range(cfg.temporal_layers))
        self.scale = c ** -0.5

    def pool(self, video: Tensor, text: Tensor, text_pool_mask: Tensor) -> Tensor:
        """Query-modulated spatial pooling (Eq. 4–6): for every frame, each text token attends over
        that frame's mapped tokens; add the text token back; max over (real) text tokens."""
        q = self.w_q(text)                                           # B, Lt, C
        v = self.w_v(video)                                          # B, T, N, C
        att = torch.einsum("bjc,btnc->btjn", q, v).mul_(self.scale).softmax(-1)
        pooled = torch.einsum("btjn,btnc->btjc", att, video) + text[:, None]
        pooled = pooled.masked_fill(~text_pool_mask[:, None, :, None], float("-inf"))
        return pooled.amax(dim=2)                                    # B, T, C


@dataclass
class HeadOutput:
    h: Tensor                       # B, T, C final frame features
    query: Tensor                   # B, C pooled final query
    saliency: Tensor                # B, T cosine(h, query)
    levels: list[dict]              # per pyramid level: cls (B,Tl), reg (B,Tl,2), mask (B,Tl), stride
    layer_cls: list[Tensor] = field(default_factory=list)     # per step: mapped CLS (B, T, C)
    layer_queries: list[Tensor] = field(default_factory=list)  # per step: pooled query (B, C)
    video_mask: Tensor | None = None


class GroundingHead(nn.Module):
    """R² Block (K recurrent steps) + temporal pyramid + classification/regression heads."""

    def __init__(self, video_dim: int, text_dim: int, cfg: HeadConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or HeadConfig()
        n_blocks = 1 if cfg.shared_block else cfg.steps
        self.blocks = nn.ModuleList(R2Block(video_dim, text_dim, cfg) for _ in range(n_blocks))
        self.pool_gates = nn.Parameter(torch.zeros(cfg.steps))        # g_k (tanh), zero-init
        self.fusion_gates = nn.Parameter(torch.zeros(cfg.steps - 1))  # φ_k (sigmoid), zero-init
        self.query_pool = nn.Linear(cfg.hidden, 1, bias=False)
        c = cfg.hidden
        self.pyramid = nn.ModuleList(
            nn.Sequential(*[m for _ in range(int(math.log2(s))) for m in
                            (nn.Conv1d(c, c, 2, 2), _ChannelLayerNorm(c), nn.ReLU())]) if s > 1 else nn.ReLU()
            for s in cfg.strides)
        if any(2 ** int(math.log2(s)) != s for s in cfg.strides):
            raise ValueError(f"pyramid strides must be powers of two, got {cfg.strides}")
        self.cls_head = nn.Sequential(nn.Conv1d(c, c, 3, padding=1), nn.ReLU(), nn.Conv1d(c, 1, 3, padding=1))
        self.reg_head = nn.Sequential(nn.Conv1d(c, c, 3, padding=1), nn.ReLU(), nn.Conv1d(c, 2, 3, padding=1))
        self.reg_scales = nn.Parameter(torch.ones(len(cfg.strides)))

    # ---- R² Block -----------------------------------------------------------------------
    def _layer_schedule(self, video: Tensor, text: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(video, text) tokens per refinement step from the K layers given (lowest first)."""
        cfg = self.cfg
        if video.shape[2] != cfg.num_layers or text.shape[1] != cfg.num_layers:
            raise ValueError(f"head expects {cfg.num_layers} layers, got video {video.shape[2]}, text {text.shape[1]}")
        if cfg.layer_mode == "single":
            return [(video[:, :, 0], text[:, 0])]
        if cfg.layer_mode == "mean":
            return [(video.mean(2), text.mean(1))]
        order = range(cfg.num_layers - 1, -1, -1) if cfg.reverse else range(cfg.num_layers)
        return [(video[:, :, k], text[:, k]) for k in order]

    def pool_query(self, text: Tensor, mask: Tensor) -> Tensor:
        scores = self.query_pool(text).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.einsum("bl,blc->bc", scores.softmax(-1), text)

    def forward(self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor) -> HeadOutput:
        """video (B, T, K, N, Dv), video_mask (B, T), text (B, K, Lt, Dt), text_mask (B, Lt)."""
        cfg = self.cfg
        b, t = video.shape[:2]
        video_mask = video_mask.bool()
        text_mask = text_mask.bool()
        pool_mask = text_mask if cfg.mask_padded_text else torch.ones_like(text_mask)
        pos = sinusoid_positions(video_mask, cfg.hidden).to(video.dtype)
        if cfg.use_tef:
            length = video_mask.sum(1, keepdim=True).clamp(min=1).float()
            start = torch.arange(t, device=video.device)[None].float() / length
            tef = torch.stack([start, start + 1 / length], -1).to(video.dtype)  # B, T, 2
        h, layer_cls, layer_queries = None, [], []
        for step, (v, q) in enumerate(self._layer_schedule(video, text)):
            block = self.blocks[0 if cfg.shared_block else step]
            if cfg.use_tef:
                v = torch.cat([v, tef[:, :, None].expand(-1, -1, v.shape[2], -1)], dim=-1)
            v = block.video_map(v)                                    # B, T, N, C
            q = block.text_map(q)                                     # B, Lt, C
            x = v[:, :, 0] + torch.tanh(self.pool_gates[step]) * block.pool(v, q, pool_mask)
            if h is not None:
                mix = torch.sigmoid(self.fusion_gates[step - 1])
                x = mix * x + (1 - mix) * h
            for layer in block.temporal:
                x = layer(x, pos, q, ~text_mask, ~video_mask)
            h = x
            layer_cls.append(v[:, :, 0])
            layer_queries.append(self.pool_query(q, text_mask))
        query = layer_queries[-1]
        saliency = F.cosine_similarity(h, query[:, None], dim=-1)
        return HeadOutput(h=h, query=query, saliency=saliency, levels=self._pyramid(h, video_mask),
                          layer_cls=layer_cls, layer_queries=layer_queries, video_mask=video_mask)

    # ---- pyramid and heads --------------------------------------------------------------
    def _pyramid(self, h: Tensor, video_mask: Tensor) -> list[dict]:
        x = h.transpose(1, 2)                                         # B, C, T
        levels = []
        for i, (stride, level) in enumerate(zip(self.cfg.strides, self.pyramid)):
            if h.shape[1] < stride:
                continue
            feat = level(x)
            mask = video_mask[:, ::stride][:, : feat.shape[-1]] if stride > 1 else video_mask
            cls = self.cls_head(feat).squeeze(1)
            reg = self.reg_head(feat).exp().transpose(1, 2) * self.reg_scales[i]
            levels.append(dict(cls=cls, reg=reg, mask=mask, stride=stride, index=i))
        return levels


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a (B, C, T) tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


# ---- training targets and losses ---------------------------------------------------------
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


# ---- decoding -----------------------------------------------------------------------------
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
