"""The R² Block: token mappers, query-modulated spatial pooling, temporal layers."""
from __future__ import annotations

import math

import torch
from timm.layers import DropPath
from torch import Tensor, nn

from r2bench.methods.head.config import HeadConfig


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
        if cfg.xavier_kaiming_init:
            self.init_like_public_code()

    @torch.no_grad()
    def init_like_public_code(self) -> None:
        """nncore 0.4.4's initialisation: Xavier-uniform for each q/k/v/out projection (each a
        C×C matrix, so in_proj is initialised in three blocks), Kaiming-normal (fan_out,
        leaky_relu a=0) for the FFN, zero biases."""
        for attn in (self.cross, self.self_attn):
            for w in attn.in_proj_weight.chunk(3, dim=0):
                nn.init.xavier_uniform_(w)
            nn.init.xavier_uniform_(attn.out_proj.weight)
            nn.init.zeros_(attn.in_proj_bias)
            nn.init.zeros_(attn.out_proj.bias)
        for lin in (self.ffn[0], self.ffn[2]):
            nn.init.kaiming_normal_(lin.weight, a=0, mode="fan_out", nonlinearity="leaky_relu")
            nn.init.zeros_(lin.bias)

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


