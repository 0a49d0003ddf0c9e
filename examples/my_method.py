"""A temporal-convolution adapter on frozen CLIP features: the template to copy for your own method.

    r2bench check-method examples/my_method.py my_temporal_adapter

What it does (a deliberately small METL method): CLIP runs frozen and without gradient, its last
layer's tokens (every frame: class token + patches) get a bottleneck adapter that mixes
neighbouring frames, and the result goes to the shared grounding head::

    h   = down(LN(x))                  # channels  768 → 64, per token
    h   = dwconv_t(h)                  # frames    a depth-wise convolution over time, kernel 3
    out = x + up(GELU(h))              # channels  64 → 768, zero-initialised: starts as "w/o Tuning"

Everything a method file needs comes from ``r2bench.methods``. The four parts:

1. a config dataclass deriving from ``HeadConfig`` (so the head's switches stay overridable by
   name, e.g. ``--set head.dropout=0.3``); give your own fields distinctive names;
2. a neck (an ``nn.Module``): it receives the tapped tokens as ``LayerTokens`` and returns the
   head's input, ``LayerTokens`` with a ``"block"`` entry of shape (B, T, K, N, D);
3. a builder ``build(backbone, cfg) -> TransferModel``, registered with ``@register``;
4. nothing else: no harness file changes. ``r2bench check-method`` runs the method contract on it
   (the same checks every built-in method passes) and prints its parameter count at ViT-B/32 and
   its peak memory at the paper's setting.

Count at ViT-B/32 (width 768), bottleneck 64, kernel 3: LN 1,536 + down 49,216 + conv 256 + up
49,920 = 100,928 extra → 2,937,164 learnable parameters with the shared head (2.801 M, M = 2^20).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from r2bench.methods import HeadConfig, LayerTokens, TransferModel, register


# 1. The config: the shared head's fields (HeadConfig) plus yours, with defaults = your paper's setting.
@dataclass
class TemporalAdapterConfig(HeadConfig):
    k: int = 1                          # the head reads one layer: the adapted last one
    my_adapter_bottleneck: int = 64
    my_adapter_kernel: int = 3          # frames seen by the temporal convolution (odd)

    def __post_init__(self):
        super().__post_init__()         # HeadConfig checks its own fields
        if self.my_adapter_bottleneck < 1 or self.my_adapter_kernel < 1 or self.my_adapter_kernel % 2 == 0:
            raise ValueError("my_adapter_bottleneck must be ≥ 1 and my_adapter_kernel odd and ≥ 1")


# 2. The neck: frozen tokens in, the head's input out. It runs with autograd, after the backbone.
class TemporalAdapter(nn.Module):
    def __init__(self, width: int, bottleneck: int, kernel: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.down = nn.Linear(width, bottleneck)
        # depth-wise over time: one kernel per channel; padding keeps the number of frames
        self.conv = nn.Conv1d(bottleneck, bottleneck, kernel, padding=kernel // 2, groups=bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)  # the adapter adds 0 at init: the head first sees frozen CLIP
        nn.init.zeros_(self.up.bias)

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        # tokens.video["block"]: (B, T, L, N, D) — the tapped layers (here one: the last block);
        # tokens.video_mask: (B, T), False on padded frames (videos of a batch differ in length)
        x = tokens.video["block"][:, :, -1]                                   # B, T, N, D
        h = self.down(self.norm(x))                                           # B, T, N, r
        # Padded frames must never change real ones (the contract checks it): anything that mixes
        # frames must read zeros there, exactly what the convolution's own zero padding assumes.
        h = h * tokens.video_mask[:, :, None, None].to(h.dtype)
        b, t, n, r = h.shape
        h = self.conv(h.permute(0, 2, 3, 1).reshape(b * n, r, t))             # (B·N, r, T): time last
        h = h.reshape(b, n, r, t).permute(0, 3, 1, 2)                         # back to B, T, N, r
        out = x + self.up(F.gelu(h))
        # hand the head one layer (K = 1) of CLIP's width; the text tower stays as it came
        return LayerTokens({"block": out[:, :, None]}, tokens.video_mask, tokens.text, tokens.text_mask)


# 3. The builder. `category` says whether gradients flow through the backbone: "METL"/"frozen"
#    (no: backbone_grad=False, memory-efficient, features can be cached) or "PETL"/"full" (yes:
#    backbone_grad=True, e.g. with hooks inside CLIP's blocks; see r2bench.methods.BlockHooks).
@register("my_temporal_adapter", label="Temporal-conv adapter (example)", category="METL",
          config=TemporalAdapterConfig)
def build(backbone, cfg: TemporalAdapterConfig) -> TransferModel:
    if cfg.k != 1:
        raise ValueError(f"the adapter hands the head one layer: k must be 1, got {cfg.k}")
    neck = TemporalAdapter(backbone.video_width, cfg.my_adapter_bottleneck, cfg.my_adapter_kernel)
    # video_taps: which blocks the backbone hands the neck; the default is the head's last K
    # (here the last block). A side network would tap more, e.g. backbone.taps(range(-1, backbone.depth)).
    return TransferModel(backbone, cfg, backbone_grad=False, neck=neck)
