"""ST-Adapter (Pan et al., NeurIPS 2022; linziyi96/st-adapter@b914b38), Table 9 row
"ST-Adapter": in every visual block, patch tokens (CLS skipped) get
x ← x + fc2(DWConv3D(fc1(x))) with a depth-wise (3, 1, 1) convolution over (time, height,
width) and no non-linearity (``class Adapter`` in ``models_adapter.py``). The conv weight and
bias and both fc biases start at zero, so the adapter is the identity at initialisation.

Configuration: the release's K400 setting ``clip_vit_base_patch16_adapter12x384`` — 12 adapters,
bottleneck 384, between attention and MLP. ``st_adapter_bottleneck`` None means half the visual
width: 384 at ViT-B (width 768), 64 on the synthetic benchmark's tiny CLIP, whose width (128)
an absolute 384 would triple. Option
``st_adapter_points="attn_mlp"``: 24 adapters, also before attention (the release's SSv2
setting). Frames of one video are rows b·T … b·T + T − 1 (``ctx.frames_per_video``); padded frames
(``ctx.frame_mask`` False) are zeroed after fc1, before the temporal convolution, so they act
like the zero padding at a clip's ends and cannot change real frames.

Count at ViT-B/32: per adapter 768·384 + 384 + 384·3 + 384 + 384·768 + 768 = 592,512;
12 adapters = 7,110,144 + head 2,836,236 = 9,946,380 = 9.486 × 2^20 against the paper's 12.2.
No natural configuration gives 12.2 (24 × 384 → 16.27, 12 × 512 → 11.74; 12.2 would need a
bottleneck of ≈538); the paper does not say how it configured or counted ST-Adapter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.hooks import BlockHooks, TowerContext
from r2bench.methods.model import TransferModel
from r2bench.methods.registry import register

ADAPTER_POINTS = ("mlp", "attn_mlp")


@dataclass
class STAdapterConfig(HeadConfig):
    """HeadConfig with K=1, plus the adapters' bottleneck width and placement."""

    k: int = 1
    st_adapter_bottleneck: int | None = None   # None: half the visual width (384 at ViT-B)
    st_adapter_points: str = "mlp"      # "mlp": before each MLP (12); "attn_mlp": also before attention (24)

    def __post_init__(self):
        super().__post_init__()
        if self.st_adapter_points not in ADAPTER_POINTS:
            raise ValueError(f"st_adapter_points must be one of {ADAPTER_POINTS}, got {self.st_adapter_points!r}")
        if self.st_adapter_bottleneck is not None and self.st_adapter_bottleneck < 1:
            raise ValueError(f"st_adapter_bottleneck must be ≥ 1, got {self.st_adapter_bottleneck}")


class STAdapter(nn.Module):
    """fc1 → depth-wise Conv3d (3, 1, 1) over (T, H, W) → fc2 on the patch tokens of T-frame videos."""

    def __init__(self, width: int, bottleneck: int, kernel_t: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(width, bottleneck)
        self.conv = nn.Conv3d(bottleneck, bottleneck, (kernel_t, 1, 1), padding=(kernel_t // 2, 0, 0),
                              groups=bottleneck)
        self.fc2 = nn.Linear(bottleneck, width)
        for tensor in (self.conv.weight, self.conv.bias, self.fc1.bias, self.fc2.bias):
            nn.init.zeros_(tensor)

    def forward(self, x: Tensor, frames: int, frame_mask: Tensor | None) -> Tensor:
        """x (B·T, 1 + H·W, D) → the same with the adapter's output added to the patch tokens."""
        n, length, _ = x.shape
        side = int(round((length - 1) ** 0.5))
        if side * side != length - 1 or n % frames:
            raise ValueError(f"ST-Adapter needs square patch grids and whole videos: got {n} rows of "
                             f"{length} tokens for {frames} frames per video")
        h = self.fc1(x[:, 1:])                                            # (B·T, H·W, C)
        if frame_mask is not None:
            h = h * frame_mask.reshape(n, 1, 1).to(h.dtype)               # padded frames → 0
        b, c = n // frames, h.shape[-1]
        h = h.reshape(b, frames, side, side, c).permute(0, 4, 1, 2, 3)   # (B, C, T, H, W)
        h = self.conv(h).permute(0, 2, 3, 4, 1).reshape(n, side * side, c)
        return torch.cat([x[:, :1], x[:, 1:] + self.fc2(h)], dim=1)


class STAdapterHooks(BlockHooks):
    """One adapter before the MLP of every visual block (and before attention for ``attn_mlp``)."""

    towers = ("video",)

    def __init__(self, depth: int, width: int, bottleneck: int, points: str):
        super().__init__()
        self.pre_mlp = nn.ModuleList(STAdapter(width, bottleneck) for _ in range(depth))
        self.pre_attn = (nn.ModuleList(STAdapter(width, bottleneck) for _ in range(depth))
                         if points == "attn_mlp" else None)

    @staticmethod
    def _frames(x: Tensor, ctx: TowerContext) -> int:
        return ctx.frames_per_video or x.shape[0]

    def block_input(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        if self.pre_attn is None:
            return x
        return self.pre_attn[index](x, self._frames(x, ctx), ctx.frame_mask)

    def mlp_input(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        return self.pre_mlp[index](x, self._frames(x, ctx), ctx.frame_mask)


@register("st_adapter", label="ST-Adapter", category="PETL", config=STAdapterConfig)
def build(backbone: Backbone, cfg: STAdapterConfig) -> TransferModel:
    bottleneck = cfg.st_adapter_bottleneck or backbone.video_width // 2
    hooks = STAdapterHooks(backbone.depth, backbone.video_width, bottleneck, cfg.st_adapter_points)
    return TransferModel(backbone, cfg, backbone_grad=True, hooks=hooks)
