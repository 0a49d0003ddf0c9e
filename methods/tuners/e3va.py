"""E3VA (Yin et al., "Parameter-efficient is not sufficient: Exploring Parameter, Memory, and
Time Efficient Adapter Tuning for Dense Predictions", arXiv 2306.09729, 2023): low-rank
adapters on a gradient "highway" beside the frozen backbone (METL: no gradient enters CLIP).

Configuration (R²-Tuning Table 9: "E3VA (r=16)"; visual tower only, as in E3VA, a vision
method): every block ``i`` of the visual tower hands on its attention-branch output ``a_i`` and
its MLP-branch output ``m_i`` (E3VA paper, Fig. 2: "intermediate activations from W/SW-MSA and
MLP are sent to E3VA"); two parallel adapters per block map them, d → r → d, and their sum
accumulates along the highway, which joins the backbone's last-layer output through a
trainable norm ("the highway is integrated to the FPN with trainable norm")::

    h = Σ_i up_i(act(down_i(a_i))) + up'_i(act(down'_i(m_i)))
    out = LayerNorm_θ(x_L + h)                      # (B, T, 1, N, D) to the shared head

The text tower is frozen CLIP, last layer, unchanged.

Read through taps, not hooks: attention and MLP branches of every block, the residual stream
of the last block only, so the model is cacheable (25 tensors per frame at ViT-B/32).

Choices where the E3VA paper (no public code) does not say, all ours:

* adapters with biases and a GELU between the projections (AdaptFormer-style); the
  "dual low-rank" details are not reproduced;
* up-projections zero-initialised (weight and bias), so the highway starts at 0 and ``out``
  starts as ``LayerNorm(x_L)`` with unit weight and zero bias. The shared head's first op is
  its own LayerNorm of the tokens (``methods.head.block.mapper``), and LayerNorm is
  idempotent up to its ε, so at init the head sees what "w/o Tuning" feeds it; only the two
  TEF channels the head appends before that LayerNorm make it "identity-ish" rather than
  exact (exact with ``use_tef=False``). Gradients reach the up-projections at the first step
  and the down-projections from the second on, as with LoRA;
* the norm is a fresh LayerNorm(768), not CLIP's ``ln_post``: the head reads pre-``ln_post``
  tokens for every method.

Count at ViT-B/32, r=16: 12 blocks × 2 adapters × (768·16+16 + 16·768+768) = 608,640, plus
the LayerNorm 1,536 = **610,176** extra; total 2,836,236 + 610,176 = 3,446,412 = **3.287 M**
(2^20) vs the paper's **3.3** ✓. Without biases (``e3va_bias=False``): 589,824 + 1,536 →
3.268, also 3.3 ✓; the text tower too would give ≈ 3.68 ✗, so the paper's E3VA was
visual-only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.hooks import Taps
from r2bench.methods.model import LayerTokens, TransferModel
from r2bench.methods.registry import register


@dataclass
class E3VAConfig(HeadConfig):
    """HeadConfig with K=1 plus E3VA's adapter rank and bias switch."""

    k: int = 1
    e3va_rank: int = 16
    e3va_bias: bool = True


class LowRankAdapter(nn.Module):
    """d → r → d with a GELU between; the up-projection starts at zero (the adapter outputs 0)."""

    def __init__(self, width: int, rank: int, bias: bool):
        super().__init__()
        self.down = nn.Linear(width, rank, bias=bias)
        self.act = nn.GELU()
        self.up = nn.Linear(rank, width, bias=bias)
        nn.init.zeros_(self.up.weight)
        if bias:
            nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.act(self.down(x)))


class E3VAHighway(nn.Module):
    """The highway: adapters on every block's attention and MLP branches, summed, joined to the
    last block's output through a trainable LayerNorm."""

    def __init__(self, width: int, depth: int, rank: int, bias: bool):
        super().__init__()
        self.attn_adapters = nn.ModuleList(LowRankAdapter(width, rank, bias) for _ in range(depth))
        self.mlp_adapters = nn.ModuleList(LowRankAdapter(width, rank, bias) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        attn, mlp = tokens.video["attn"], tokens.video["mlp"]          # B, T, L, N, D
        if attn.shape[2] != len(self.attn_adapters):
            raise ValueError(f"E3VA expects the branches of {len(self.attn_adapters)} blocks, got {attn.shape[2]}")
        highway = None
        for i, (adapt_attn, adapt_mlp) in enumerate(zip(self.attn_adapters, self.mlp_adapters)):
            step = adapt_attn(attn[:, :, i]) + adapt_mlp(mlp[:, :, i])
            highway = step if highway is None else highway + step
        out = self.norm(tokens.video["block"][:, :, -1] + highway)    # B, T, N, D
        return LayerTokens({"block": out[:, :, None]}, tokens.video_mask, tokens.text, tokens.text_mask)


@register("e3va", label="E3VA (r=16)", category="METL", config=E3VAConfig)
def build(backbone: Backbone, cfg: E3VAConfig) -> TransferModel:
    if cfg.k != 1:
        raise ValueError(f"E3VA hands the head one layer (its joined output): k must be 1, got {cfg.k}")
    depth = backbone.depth
    taps = Taps(tuple(range(depth)), ("attn", "mlp", "block"), {"block": (depth - 1,)})
    neck = E3VAHighway(backbone.video_width, depth, cfg.e3va_rank, cfg.e3va_bias)
    return TransferModel(backbone, cfg, backbone_grad=False, neck=neck, video_taps=taps)
