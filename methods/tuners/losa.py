"""LoSA, Low-rank Side Adaptation (Mercea, Gritsenko, Schmid, Arnab, "Time-, Memory- and
Parameter-Efficient Visual Adaptation", CVPR 2024, arXiv 2402.02887): a parallel side network
that iteratively refines the frozen backbone's per-layer features with low-rank mixers (METL:
no gradient enters CLIP).

What the paper states and this file follows: "a lightweight network in parallel that operates
on features from the frozen, pretrained backbone"; a side state "iteratively refines the
features obtained from a frozen backbone" (Fig. 3); the adaptor is built of "low-rank MLP
projections alternating between channel and token dimensions"; for video the token dimension
is "factorised into spatial and temporal axes". R²-Tuning Table 9 uses rank 16.

Our reading (the method section and code were not reachable: google-research/scenic, which the
paper names for its code, has no LoSA project at 4a38d47), per block ``i`` of the visual
tower, with ``b_i`` its output (B, T, N, D) and ``h_0 = 0``::

    u   = down_i(LN_i(h_{i-1} + b_i))          # channels  D → r
    u   = u + spatial_i(u)                     # tokens    N → r → N (per frame, per channel)
    u   = u + temporal_i(u)                    # frames    T → r → T (per token, per channel)
    h_i = h_{i-1} + up_i(GELU(u))              # channels  r → D, zero-initialised
    out = b_L + h_L                            # (B, T, 1, N, D) to the shared head

Channel → token → token → channel projections, all at rank r; the side state refines the
frozen features layer by layer; the full-width tensors it keeps for backward are two per block
(the LayerNorm's input and output), which keeps LoSA memory-efficient. At init ``h_L = 0`` and
LoSA hands the head exactly the frozen last layer, as "w/o Tuning" does.

The temporal mixer has T-sized weights, so a fixed ``losa_max_frames`` (75 = QVHighlights'
150 s at 0.5 fps) bounds the video length; a batch of T frames uses the first T rows/columns,
which is exactly zero-padding to ``losa_max_frames``. Padded frames are zeroed before every
temporal mix, so they never reach real frames. The paper's temporal mixer is T-sized (ViViT
clips of a fixed length); a T-agnostic mixer would be a different method, so we keep T_max.

Count at ViT-B/32, r=16, T_max=75, per block: LN 1,536 + down 12,304 + spatial (50·16+16 +
16·50+50) 1,666 + temporal (75·16+16 + 16·75+75) 2,491 + up 13,056 = 31,053; × 12 =
**372,636** extra; total 3,208,872 = **3.060 M** (2^20) vs the paper's **4.8** (2,144,500 –
2,249,357 extra). No rank-16 reading we could build reaches it (mixers at full width, MLP-Mixer
style, give ≈ 0.41 M; adding the text tower ≈ 0.65 M); the gap of ≈ 1.8 M most plausibly comes
from channel projections wider than the rank (a width near 120 on the visual tower, or near 70
on both towers, would fit) or from extra per-layer projections in the authors' unreleased
implementation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.model import LayerTokens, TransferModel
from r2bench.methods.registry import register


@dataclass
class LoSAConfig(HeadConfig):
    """HeadConfig with K=1 plus LoSA's rank and the longest video its temporal mixer takes."""

    k: int = 1
    losa_rank: int = 16
    losa_max_frames: int = 75


class TokenMixer(nn.Module):
    """A low-rank MLP over a token axis of length ``n`` (n → r → n, GELU between). Called with
    ``length`` < ``n`` it uses the first ``length`` rows and columns: exactly the MLP on the
    input zero-padded to ``n``, cut back to ``length``."""

    def __init__(self, n: int, rank: int):
        super().__init__()
        self.n = n
        self.fc1 = nn.Linear(n, rank)
        self.fc2 = nn.Linear(rank, n)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (..., length) with the token axis last."""
        length = x.shape[-1]
        if length > self.n:
            raise ValueError(f"LoSA's temporal mixer takes at most {self.n} frames, got {length} "
                             f"(raise losa_max_frames; it changes the parameter count)")
        hidden = F.gelu(F.linear(x, self.fc1.weight[:, :length], self.fc1.bias))
        return F.linear(hidden, self.fc2.weight[:length], self.fc2.bias[:length])


class LoSALayer(nn.Module):
    """One refinement step: channels down, spatial and temporal token mixing, channels up."""

    def __init__(self, width: int, tokens: int, max_frames: int, rank: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.down = nn.Linear(width, rank)
        self.spatial = TokenMixer(tokens, rank)
        self.temporal = TokenMixer(max_frames, rank)
        self.up = nn.Linear(rank, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, z: Tensor, frame_mask: Tensor) -> Tensor:
        """``z`` (B, T, N, D), ``frame_mask`` (B, T) → the state's increment (B, T, N, D)."""
        u = self.down(self.norm(z))                                   # B, T, N, r
        u = u + self.spatial(u.transpose(2, 3)).transpose(2, 3)       # mix N
        u = u * frame_mask[:, :, None, None].to(u.dtype)              # padded frames reach nothing
        u = u + self.temporal(u.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)   # mix T
        return self.up(F.gelu(u))


class LoSASideNetwork(nn.Module):
    """The side state refined over every block's output; hands the head ``b_L + h_L``."""

    def __init__(self, width: int, depth: int, tokens: int, max_frames: int, rank: int):
        super().__init__()
        self.layers = nn.ModuleList(LoSALayer(width, tokens, max_frames, rank) for _ in range(depth))

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        blocks = tokens.video["block"]                                 # B, T, L, N, D
        if blocks.shape[2] != len(self.layers):
            raise ValueError(f"LoSA expects the outputs of {len(self.layers)} blocks, got {blocks.shape[2]}")
        mask = tokens.video_mask.bool()
        state = None
        for i, layer in enumerate(self.layers):
            b = blocks[:, :, i]
            step = layer(b if state is None else state + b, mask)
            state = step if state is None else state + step
        out = blocks[:, :, -1] + state
        return LayerTokens({"block": out[:, :, None]}, tokens.video_mask, tokens.text, tokens.text_mask)


@register("losa", label="LoSA (r=16)", category="METL", config=LoSAConfig)
def build(backbone: Backbone, cfg: LoSAConfig) -> TransferModel:
    if cfg.k != 1:
        raise ValueError(f"LoSA hands the head one layer (its refined output): k must be 1, got {cfg.k}")
    neck = LoSASideNetwork(backbone.video_width, backbone.depth, backbone.tokens_per_frame,
                           cfg.losa_max_frames, cfg.losa_rank)
    return TransferModel(backbone, cfg, backbone_grad=False, neck=neck,
                         video_taps=backbone.taps(range(backbone.depth)))
