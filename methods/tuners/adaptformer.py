"""AdaptFormer (Chen et al., NeurIPS 2022): a parallel bottleneck adapter beside the MLP of every
visual block — an eleventh method, not in the paper's Table 9, added as docs/architecture.md
describes (one file, one import line; the contract test covers it unedited).

Configuration (AdaptFormer §3.2, "AdaptMLP", and its video-recognition setting): in block l,
with x' the stream after attention, ``x = x' + MLP(LN(x')) + s · up(ReLU(down(LN(x'))))`` — the
adapter reads the same LayerNorm output as the MLP (the block's own ``ln_2``); bottleneck 64,
scale s = 0.1, down-projection Kaiming-uniform, up-projection and both biases zero, so the
model starts as frozen CLIP. Visual tower only; no dropout. Gradients flow back through CLIP
to the adapters of lower blocks (PETL).

Count at ViT-B/32: 12 × (768·64 + 64 + 64·768 + 768) = 1,189,632 extra → 4,025,868 =
3.839 (2^20) with the K = 1 head (not in the paper's table).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.hooks import BlockHooks, TowerContext
from r2bench.methods.model import TransferModel
from r2bench.methods.registry import register


@dataclass
class AdaptFormerConfig(HeadConfig):
    """HeadConfig with K=1, plus AdaptFormer's bottleneck width and scale."""

    k: int = 1
    adaptformer_bottleneck: int = 64
    adaptformer_scale: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if self.adaptformer_bottleneck < 1:
            raise ValueError(f"adaptformer_bottleneck must be ≥ 1, got {self.adaptformer_bottleneck}")


class AdaptMLP(BlockHooks):
    """One parallel adapter per visual block, added to the MLP branch."""

    towers = ("video",)

    def __init__(self, width: int, depth: int, bottleneck: int, scale: float):
        super().__init__()
        self.scale = scale
        self.down = nn.ModuleList(nn.Linear(width, bottleneck) for _ in range(depth))
        self.up = nn.ModuleList(nn.Linear(bottleneck, width) for _ in range(depth))
        for down, up in zip(self.down, self.up):
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            nn.init.zeros_(down.bias)
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)

    def mlp_input(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        ctx.state["adaptformer_x"] = x          # x': the stream the MLP reads (through ln_2)
        return x

    def mlp_output(self, index: int, m: Tensor, ctx: TowerContext) -> Tensor:
        h = ctx.block.ln_2(ctx.state.pop("adaptformer_x"))
        return m + self.scale * self.up[index](torch.relu(self.down[index](h)))


@register("adaptformer", label="AdaptFormer", category="PETL", config=AdaptFormerConfig)
def build(backbone: Backbone, cfg: AdaptFormerConfig) -> TransferModel:
    hooks = AdaptMLP(backbone.video_width, backbone.depth, cfg.adaptformer_bottleneck, cfg.adaptformer_scale)
    return TransferModel(backbone, cfg, backbone_grad=True, hooks=hooks)
