"""LST, Ladder Side-Tuning (Sung, Cho, Bansal, NeurIPS 2022; ylsung/Ladder-Side-Tuning at
1798e82): a side transformer beside the frozen backbone, fed by "ladders" from every backbone
layer (METL: no gradient enters CLIP).

Configuration (the release's defaults, ``VL-T5/src/side_transformers/config.py`` SideConfig and
``VL-T5/src/my_transformers/modeling_t5.py`` l. 895–960, 1124, 1177–1190, 1268, 1644):

* a side network of the backbone's depth with every width divided by the reduction factor
  r = 8 and the number of heads kept (ViT-B/32 visual: width 96, 12 heads × 8, MLP 384);
  its blocks are CLIP's own pre-LN residual blocks (open_clip ``ResidualAttentionBlock``, the
  backbone's activation), randomly initialised (LST's optional init from a pruned copy of the
  backbone is not used). Attention runs over one frame's tokens: nothing mixes frames, so
  padding frames cannot reach real ones;
* ladders: ``side_0 = down_0(dropout(x_0))`` from the embeddings (tap layer -1), then for every
  block ``i``: ``μ_i = σ(α_i / T)`` with α_i = 0 at init and T = 0.1,
  ``side ← μ_i·side + (1 − μ_i)·down_{i+1}(b_i)``, ``side ← side_block_i(side)``; every
  down-sampler is a Linear(d, d/r) with bias (``add_bias_sampling=True``);
* ``out = up(dropout(LN(side)))``, Linear(d/r, d) with bias, handed to the shared head in place
  of the last layer (B, T, 1, N, D) (LST's prediction uses the side output only). Dropout 0.1
  is T5's rate in the release.

The text tower is frozen CLIP (last layer) unless ``lst_text=True``, which runs a second ladder
network on it (width 64, 8 heads, CLIP's causal mask).

Count at ViT-B/32, visual, r=8: side blocks 12 × 111,840 + down-samplers 13 × 73,824 + gates 12
+ final LN 192 + up-sampler 74,496 = **2,376,492** extra; total 5,212,728 = **4.971 M** (2^20)
vs the paper's **7.4** (4,870,749 – 4,975,606 extra). Both towers (``lst_text=True``): 3,436,536
→ 5.982. No configuration we know of (r ∈ 2…32 per tower, with or without the first
down-sampler, side depth 4–12) gives 7.35–7.45; r=4 visual-only has 7,406,412 extra, i.e.
"7.4" in 10^6 without the head, which is the most plausible reading of the paper's figure (a
count of the side network alone, in a different unit from the table's other rows).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from open_clip.transformer import ResidualAttentionBlock
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.model import LayerTokens, TransferModel
from r2bench.methods.registry import register


@dataclass
class LSTConfig(HeadConfig):
    """HeadConfig with K=1 plus LST's reduction factor, gate, dropout and text switch."""

    k: int = 1
    lst_reduction: int = 8
    lst_gate_alpha: float = 0.0
    lst_gate_temperature: float = 0.1
    lst_dropout: float = 0.1
    lst_text: bool = False


class Ladder(nn.Module):
    """LST's side network for one tower: down-samplers from x_0 and every block, gated merges,
    reduced-width blocks, final LayerNorm and up-sampler."""

    def __init__(self, width: int, depth: int, heads: int, reduction: int, act_layer: type,
                 gate_alpha: float, gate_temperature: float, dropout: float, causal: bool):
        super().__init__()
        side = width // reduction
        if side * reduction != width or side % heads:
            raise ValueError(f"LST: width {width} / reduction {reduction} must be a whole number divisible "
                             f"by the backbone's {heads} heads")
        self.causal = causal
        self.temperature = gate_temperature
        self.down = nn.ModuleList(nn.Linear(width, side) for _ in range(depth + 1))   # x_0, then every block
        self.gates = nn.Parameter(torch.full((depth,), float(gate_alpha)))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(side, heads, act_layer=act_layer) for _ in range(depth))
        self.norm = nn.LayerNorm(side)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(side, width)

    def gate_values(self) -> Tensor:
        """μ_i = σ(α_i / T): how much of the side state each block keeps."""
        return torch.sigmoid(self.gates / self.temperature)

    def forward(self, layers: Tensor) -> Tensor:
        """``layers`` (M, depth + 1, L, D): x_0 and every block's output → (M, L, D)."""
        length = layers.shape[2]
        mask = (torch.full((length, length), float("-inf"), device=layers.device).triu_(1)
                if self.causal else None)
        side = self.down[0](self.dropout(layers[:, 0]))
        mu = self.gate_values()
        for i, block in enumerate(self.blocks):
            side = mu[i] * side + (1 - mu[i]) * self.down[i + 1](layers[:, i + 1])
            side = block(side, attn_mask=None if mask is None else mask.to(side.dtype))
        return self.up(self.dropout(self.norm(side)))


class LadderSideNetworks(nn.Module):
    """The visual ladder, and the text ladder when enabled; hands the head their outputs as
    its one layer."""

    def __init__(self, video: Ladder, text: Ladder | None):
        super().__init__()
        self.video = video
        self.text = text

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        blocks = tokens.video["block"]                                  # B, T, depth + 1, N, D
        b, t = blocks.shape[:2]
        video = self.video(blocks.flatten(0, 1)).unflatten(0, (b, t))[:, :, None]
        text = tokens.text["block"]
        if self.text is not None:
            text = self.text(text)[:, None]                             # B, 1, Lt, Dt
        return LayerTokens({"block": video}, tokens.video_mask, {"block": text}, tokens.text_mask)


def _ladder(blocks: nn.ModuleList, width: int, cfg: LSTConfig, causal: bool) -> Ladder:
    first = blocks[0]
    return Ladder(width, len(blocks), first.attn.num_heads, cfg.lst_reduction, type(first.mlp.gelu),
                  cfg.lst_gate_alpha, cfg.lst_gate_temperature, cfg.lst_dropout, causal)


@register("lst", label="LST", category="METL", config=LSTConfig)
def build(backbone: Backbone, cfg: LSTConfig) -> TransferModel:
    if cfg.k != 1:
        raise ValueError(f"LST hands the head one layer (its side output): k must be 1, got {cfg.k}")
    video = _ladder(backbone.video_blocks, backbone.video_width, cfg, causal=False)
    text = _ladder(backbone.text_blocks, backbone.text_width, cfg, causal=True) if cfg.lst_text else None
    all_layers = tuple(range(-1, backbone.depth))
    text_taps = backbone.taps(range(-1, len(backbone.text_blocks))) if cfg.lst_text else None
    return TransferModel(backbone, cfg, backbone_grad=False, neck=LadderSideNetworks(video, text),
                         video_taps=backbone.taps(all_layers), text_taps=text_taps)
