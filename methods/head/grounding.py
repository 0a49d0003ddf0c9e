"""GroundingHead: R² Block over K layers, temporal pyramid, classification/regression heads.

Padding. In evaluation (and in training under the ``paper`` protocol) every sample is computed
as if it ran alone at its real length: TEF and positions by the real length, padded text tokens
masked, a level keeps the floor(T_i / stride) points made of real clips only, and padded
positions are zeroed before the heads' convolutions, so batch-mates cannot change a sample's
output. Under the ``official`` protocol, training reproduces the public code's padded batch
(``pad_length_train``, ``pool_padded_text_train``, ``pyramid_padding_train``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2bench.methods.head.block import R2Block, sinusoid_positions
from r2bench.methods.head.config import HeadConfig


@dataclass
class HeadOutput:
    h: Tensor                       # B, T, C final frame features (before any ReLU)
    query: Tensor                   # B, C pooled final query
    saliency: Tensor                # B, T cosine(ReLU(h) or h, query) — the saliency loss's input
    levels: list[dict]              # per pyramid level: cls (B,Tl), reg (B,Tl,2) or None, mask (B,Tl), stride, index
    layer_cls: list[Tensor] = field(default_factory=list)     # per step: mapped CLS (B, T, C)
    layer_queries: list[Tensor] = field(default_factory=list)  # per step: pooled query (B, C)
    video_mask: Tensor | None = None
    padded_pyramid: bool = False    # padding reached the pyramid (official training semantics)


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
        # no regression head without windows to regress (the public HD configs: coord_head_cfg=None)
        self.reg_head = (nn.Sequential(nn.Conv1d(c, c, 3, padding=1), nn.ReLU(), nn.Conv1d(c, 2, 3, padding=1))
                         if cfg.regression else None)
        # per-level scales of the regression (the public code's ``coef``; unused, so left out, without regression)
        self.reg_scales = nn.Parameter(torch.ones(len(cfg.strides))) if cfg.regression else None

    # ---- R² Block -----------------------------------------------------------------------
    def _layer_schedule(self, video: Tensor, text: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(video, text) tokens per refinement step from the K layers given (lowest first)."""
        cfg = self.cfg
        if video.shape[2] != cfg.k or text.shape[1] != cfg.k:
            raise ValueError(f"head expects {cfg.k} layers, got video {video.shape[2]}, text {text.shape[1]}")
        if cfg.layer_mode == "single":
            return [(video[:, :, 0], text[:, 0])]
        if cfg.layer_mode == "mean":
            return [(video.mean(2), text.mean(1))]
        order = range(cfg.k - 1, -1, -1) if cfg.reverse else range(cfg.k)
        return [(video[:, :, k], text[:, k]) for k in order]

    def pool_query(self, text: Tensor, mask: Tensor) -> Tensor:
        scores = self.query_pool(text).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.einsum("bl,blc->bc", scores.softmax(-1), text)

    def forward(self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor, *,
                train_semantics: bool | None = None) -> HeadOutput:
        """video (B, T, K, N, Dv), video_mask (B, T), text (B, K, Lt, Dt), text_mask (B, Lt).

        ``train_semantics``: treat padding as training does (default: ``self.training``);
        it only matters for the ``*_train`` protocol fields."""
        cfg = self.cfg
        train = self.training if train_semantics is None else train_semantics
        b, t = video.shape[:2]
        video_mask = video_mask.bool()
        text_mask = text_mask.bool()
        padded_length = train and cfg.pad_length_train
        pool_mask = torch.ones_like(text_mask) if train and cfg.pool_padded_text_train else text_mask
        pos = sinusoid_positions(torch.ones_like(video_mask) if padded_length else video_mask,
                                 cfg.hidden).to(video.dtype)
        if cfg.use_tef:
            length = (torch.full((b, 1), float(t), device=video.device) if padded_length
                      else video_mask.sum(1, keepdim=True).clamp(min=1).float())
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
        relu_h = F.relu(h)
        saliency = F.cosine_similarity(relu_h if cfg.relu_h else h, query[:, None], dim=-1)
        padded_pyramid = train and cfg.pyramid_padding_train
        return HeadOutput(h=h, query=query, saliency=saliency,
                          levels=self._pyramid(h, relu_h, video_mask, padded_pyramid),
                          layer_cls=layer_cls, layer_queries=layer_queries, video_mask=video_mask,
                          padded_pyramid=padded_pyramid)

    # ---- pyramid and heads --------------------------------------------------------------
    def _pyramid(self, h: Tensor, relu_h: Tensor, video_mask: Tensor, padded: bool) -> list[dict]:
        """Levels of stride s have floor(T/s) points (Conv1d k=2 s=2 drops a trailing frame).

        ``padded=False``: a point is valid when all its clips are real (floor(T_i/s) points,
        what a sample alone gets), and padded points are zeroed before each head convolution
        (the only convolutions that look at a neighbour; the k=2/s=2 downsampling of a valid
        point reads real clips only). ``padded=True`` (public code, training): a point is
        valid when any of its clips is real (max-pooled mask) and nothing is zeroed."""
        x = relu_h.transpose(1, 2) if self.cfg.relu_h else h.transpose(1, 2)   # B, C, T
        frame_mask = video_mask.float()[:, None]                                # B, 1, T
        levels = []
        for i, (stride, level) in enumerate(zip(self.cfg.strides, self.pyramid)):
            if h.shape[1] < stride:
                continue
            feat = relu_h.transpose(1, 2) if stride == 1 else level(x)
            if stride == 1:
                mask = video_mask
            elif padded:
                mask = F.max_pool1d(frame_mask, stride, stride)[:, 0].bool()
            else:
                mask = -F.max_pool1d(-frame_mask, stride, stride)[:, 0] > 0.5
            cls = self._run_head(self.cls_head, feat, None if padded else mask).squeeze(1)
            reg = None
            if self.reg_head is not None:
                reg = self._run_head(self.reg_head, feat, None if padded else mask).exp().transpose(1, 2)
                reg = reg * self.reg_scales[i]
            levels.append(dict(cls=cls, reg=reg, mask=mask, stride=stride, index=i))
        return levels

    @staticmethod
    def _run_head(head: nn.Sequential, feat: Tensor, mask: Tensor | None) -> Tensor:
        """Conv → ReLU → Conv, with padded points zeroed before each convolution when masked."""
        if mask is None:
            return head(feat)
        m = mask[:, None].to(feat.dtype)
        return head[2](head[1](head[0](feat * m)) * m)


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a (B, C, T) tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)
