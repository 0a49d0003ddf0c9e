"""GroundingHead: R² Block over K layers, temporal pyramid, classification/regression heads."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.head.block import R2Block, sinusoid_positions
from methods.head.config import HeadConfig


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


