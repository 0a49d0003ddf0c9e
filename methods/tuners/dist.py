"""DiST (Qing, Zhang, Huang, Zhang, Gao, Zhao, Sang, "Disentangling Spatial and Temporal Learning
for Efficient Image-to-Video Transfer Learning", ICCV 2023, arXiv 2309.07911; code
alibaba-mmai-research/DiST at 4b3a09b): the frozen CLIP is the spatial encoder, a lightweight
temporal encoder runs beside it, and an integration branch fuses the two at every layer (METL: no
gradient enters CLIP). Not in R²-Tuning's Table 9; written
first as a plugin (``examples/dist.py``, checked with ``r2bench check-method``), then moved here.

Configuration, with sources (``dist.py`` = ``models/module_zoo/branches/dist.py``; the ViT-B
configs ``configs/projects/dist/{k400,ssv2}/vit-b16-*.yaml``, identical in these keys):

* integration branch width 384 (``INTEGRATION_DIM``), temporal encoder width 96 (``TEMPORAL_DIM``);
* every backbone block feeds the integration branch (``SELECTED_LAYERS: [0 … 11]``), each through
  its own ``Linear(768, 384)`` (``input_linears``; block outputs, ``ResidualAttentionBlockMid``);
* temporal encoder: a stem of temporal extent 5 (``T_PATCH_SIZE: 5``), then per layer
  ``TemporalNet``: ``x ← act(x + conv_s(act(conv_t(LN(x)))))``, ``conv_t`` a (3, 1, 1) convolution
  (``TEMPORAL_KERNEL_SIZE: 3``, ``TEMPORAL_CONV_MLP_RATIO: 1``: 96 → 96), ``conv_s`` (1, 3, 3) over
  the patch grid;
* exchange per layer (``DiSTNetwork.forward``): ``mid = input_linear(x_i) + res``; the temporal
  state gets ``Linear(384, 96)(mid[patches])`` (``Integration2TemporalNetwork``); the integration
  state gets ``Conv(96 → 384)(x_temporal)`` with a learned class token per frame
  (``Temporal2IntegrationNetwork``); ``res = IntegrationNetwork(mid')`` =
  ``FFN(LN(mid'))`` (384 → 384 → 384, ``INTEGRATION_MLP_RATIO: 1``) + a temporal FFN
  ``c_proj(act(c_fc2(c_fc1(LN(mid')))))``, 384 → 96 (``INTEGRATION_TEMPORAL_MLP_RATIO: 0.25``) →
  (3, 1, 1) convolution → 384; after the last layer ``res + mid'``;
* output: ``LN_post(· + Linear(768, 384)(CLIP's last-layer class token)) @ proj``
  (``proj_spatial_cls_token``, ``ln_post``, ``proj`` of 384 × output width, no bias);
* activations are CLIP's (``QuickGELU`` imported from DiST's CLIP; here the backbone's own
  activation class, as LST does); initialisation: every Linear and convolution weight
  truncated-normal std 0.02 with zero bias (``DiSTNetwork._init_weights``), class tokens
  truncated-normal std 0.02, ``proj`` N(0, 1)·384^-½, LayerNorms 1/0.

Adapted to this harness, as the other METL rows (LST, E3VA, LoSA) are — read through taps, so
the model is cacheable:

* **one frame rate**: DiST feeds the temporal encoder α = 2 times as many frames as CLIP
  (``SPARSE_SAMPLE_ALPHA: 2``, "8+16f"); the harness samples a video once, at the dataset's rate,
  so α = 1: the two encoders see the same frames, ``Temporal2IntegrationNetwork``'s (α, 1, 1)
  convolution is (1, 1, 1) and ``Integration2TemporalNetwork``'s upsampling the identity;
* **the stem**: DiST's temporal stem reads pixels, a Conv3d(3, 96, (5, p, p)) with CLIP's patch
  size so that its grid is CLIP's. A neck sees tapped tokens, not pixels, so the stem reads the
  backbone's embeddings (tap layer −1: CLIP's patch embedding of each patch, plus positions,
  after ``ln_pre``): a Conv3d(768, 96, (5, 1, 1)) over the patch tokens — the same temporal
  extent over the same patches, seen through CLIP's own patch projection (368,736 parameters;
  a pixel stem at ViT-B/32 would have 1,474,656);
* **the output**: DiST pools the integration branch into one video token (4 layers of
  ``SpatialTemporalAdaPoolingNetwork``, cross-attention with learned queries) for a classifier.
  Temporal grounding needs every frame's tokens, and the shared head does its own
  query-modulated spatial pooling and temporal modelling, so the pooling networks are left out
  and every token of the integration branch is handed on: ``out = LN_post(mid_L + res_L +
  Linear(768, 384)(x_L)) @ proj`` with ``proj`` 384 × 768 (CLIP's width, what the head reads),
  the spatial term applied per token (DiST adds the class token's);
* **video length**: the per-frame class tokens of ``Temporal2IntegrationNetwork`` are one per
  input frame (``num_frames // α`` of them), so their number is a fixed maximum here,
  ``dist_max_frames`` = 75 (QVHighlights' 150 s at 0.5 fps, as LoSA's temporal mixer); a batch of
  T frames uses the first T. Longer videos are refused;
* **padding**: padded frames are zeroed before every temporal convolution (stem, ``conv_t``, the
  temporal FFN), so they never reach real frames;
* the text tower is frozen CLIP, last layer (``FREEZE_TEXT: true``).

* **dead weights**: DiST's last ``Integration2TemporalNetwork`` updates a temporal state that
  nothing reads afterwards (its weights never get a gradient in the release); it is left out
  (11 of them, not 12).

Count at ViT-B/32 (width 768, 12 blocks, 49 patches, T_max = 75):
stem 368,736; per layer ``input_linear`` 295,296 + ``TemporalNet`` 110,976 (LN 192, conv_t
27,744, conv_s 83,040) + ``Temporal2Integration`` 37,248 + its class tokens 75 · 384 = 28,800 +
``IntegrationNetwork`` 399,168 (LNs 768 + 768, FFN 295,680, temporal FFN 36,960 + 27,744 +
37,248) = 871,488, × 12 = 10,457,856; ``Integration2Temporal`` 36,960 × 11 = 406,560; output
``Linear(768, 384)`` 295,296 + ``LN_post`` 768 + ``proj`` 294,912: **11,824,128** extra; with the
shared head (2,836,236) **14,660,364** = **13.981 M** (2^20). Peak memory of one training step
at the paper's setting (224², 32 × 75 frames, FP16): **13.99 GiB**, fake-tensor estimate
(``r2bench check-method``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.model import LayerTokens, TransferModel
from r2bench.methods.registry import register


@dataclass
class DiSTConfig(HeadConfig):
    """HeadConfig with K=1 plus DiST's widths, kernels, MLP ratios and the longest video."""

    k: int = 1
    dist_integration_dim: int = 384
    dist_temporal_dim: int = 96
    dist_temporal_kernel: int = 3                 # TEMPORAL_KERNEL_SIZE
    dist_stem_kernel: int = 5                     # T_PATCH_SIZE
    dist_temporal_mlp_ratio: float = 1.0          # TEMPORAL_CONV_MLP_RATIO
    dist_integration_mlp_ratio: float = 1.0       # INTEGRATION_MLP_RATIO
    dist_integration_temporal_ratio: float = 0.25  # INTEGRATION_TEMPORAL_MLP_RATIO
    dist_max_frames: int = 75

    def __post_init__(self):
        super().__post_init__()
        for name in ("dist_temporal_kernel", "dist_stem_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd and ≥ 1, got {getattr(self, name)}")
        if min(self.dist_integration_dim, self.dist_temporal_dim, self.dist_max_frames) < 1:
            raise ValueError("dist_integration_dim, dist_temporal_dim and dist_max_frames must be ≥ 1")


def _init(module: nn.Module) -> None:
    """DiST's ``_init_weights``: truncated-normal (std 0.02) weights and zero biases for every
    Linear and convolution. timm's ``trunc_normal_`` cuts at ±2 (absolute), 100 σ away, so the
    draw is a normal one (``nn.init.trunc_normal_`` also fails under fake tensors)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def over_frames(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """A (k, 1, 1) convolution over the frames of channels-last tokens (B, T, N, C) → (B, T, N, C')."""
    return conv(x.permute(0, 3, 1, 2).unsqueeze(-1)).squeeze(-1).permute(0, 2, 3, 1)


class TemporalNet(nn.Module):
    """One layer of the temporal encoder on its grid (B, C, T, H, W):
    ``act(x + conv_s(act(conv_t(LN(x)))))``."""

    def __init__(self, dim: int, kernel: int, ratio: float, act: type):
        super().__init__()
        hidden = int(dim * ratio)
        self.ln = nn.LayerNorm(dim)
        self.conv_t = nn.Conv3d(dim, hidden, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        self.act_t = act()
        self.conv_s = nn.Conv3d(hidden, dim, (1, 3, 3), padding=(0, 1, 1))
        self.act = act()

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``keep`` (B, 1, T, 1, 1): 1 on real frames."""
        h = self.ln(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3) * keep   # padded frames reach nothing
        return self.act(x + self.conv_s(self.act_t(self.conv_t(h))))


class IntegrationNetwork(nn.Module):
    """``FFN(LN(x)) + c_proj(act(c_fc2(c_fc1(LN_t(x)))))`` on the integration tokens (B, T, L, C);
    ``c_fc2`` runs over frames, the 1×1×1 convolutions are Linear layers (the same weights)."""

    def __init__(self, dim: int, mlp_ratio: float, temporal_ratio: float, kernel: int, act: type):
        super().__init__()
        hidden, narrow = int(dim * mlp_ratio), int(dim * temporal_ratio)
        self.ln = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), act(), nn.Linear(hidden, dim))
        self.ln_temporal = nn.LayerNorm(dim)
        self.c_fc1 = nn.Linear(dim, narrow)
        self.c_fc2 = nn.Conv3d(narrow, narrow, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        self.act = act()
        self.c_proj = nn.Linear(narrow, dim)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``keep`` (B, T, 1, 1): 1 on real frames."""
        t = self.c_fc1(self.ln_temporal(x)) * keep                      # padded frames reach nothing
        t = self.c_proj(self.act(over_frames(self.c_fc2, t)))
        return self.ffn(self.ln(x)) + t


class DiSTNetwork(nn.Module):
    """Temporal encoder and integration branch over every block of the frozen CLIP."""

    def __init__(self, width: int, depth: int, tokens: int, cfg: DiSTConfig, act: type):
        super().__init__()
        patches = tokens - 1
        self.grid = math.isqrt(patches)
        if self.grid ** 2 != patches:
            raise ValueError(f"DiST's temporal encoder needs a square patch grid, got {patches} patches")
        c, ct = cfg.dist_integration_dim, cfg.dist_temporal_dim
        self.max_frames = cfg.dist_max_frames
        self.stem = nn.Conv3d(width, ct, (cfg.dist_stem_kernel, 1, 1), padding=(cfg.dist_stem_kernel // 2, 0, 0))
        self.input_linears = nn.ModuleList(nn.Linear(width, c) for _ in range(depth))
        self.temporal_nets = nn.ModuleList(TemporalNet(ct, cfg.dist_temporal_kernel, cfg.dist_temporal_mlp_ratio, act)
                                           for _ in range(depth))
        # Integration2TemporalNetwork: DiST's last one feeds a temporal state nothing reads, left out
        self.to_temporal = nn.ModuleList(nn.Linear(c, ct) for _ in range(depth - 1))
        self.to_integration = nn.ModuleList(nn.Linear(ct, c) for _ in range(depth))   # Temporal2IntegrationNetwork
        self.cls_tokens = nn.Parameter(torch.empty(depth, cfg.dist_max_frames, c))    # … its class token per frame
        self.integration_nets = nn.ModuleList(
            IntegrationNetwork(c, cfg.dist_integration_mlp_ratio, cfg.dist_integration_temporal_ratio,
                               cfg.dist_temporal_kernel, act) for _ in range(depth))
        self.proj_spatial = nn.Linear(width, c)
        self.ln_post = nn.LayerNorm(c)
        self.proj = nn.Parameter(c ** -0.5 * torch.randn(c, width))
        _init(self)
        nn.init.normal_(self.cls_tokens, std=0.02)

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        layers = tokens.video["block"]                         # B, T, 1 + depth, N, D: embeddings, then every block
        depth = len(self.input_linears)
        if layers.shape[2] != depth + 1:
            raise ValueError(f"DiST expects the embeddings and {depth} blocks, got {layers.shape[2]} layers")
        b, t = layers.shape[:2]
        if t > self.max_frames:
            raise ValueError(f"DiST's per-frame class tokens cover at most {self.max_frames} frames, got {t} "
                             f"(raise dist_max_frames; it changes the parameter count)")
        keep = tokens.video_mask.to(layers.dtype)[:, :, None, None]                  # B, T, 1, 1
        keep_grid = keep.permute(0, 2, 1, 3)[..., None]                              # B, 1, T, 1, 1
        grid = (self.grid, self.grid)
        x_t = over_frames(self.stem, layers[:, :, 0, 1:] * keep)                     # B, T, P, Ct
        x_t = x_t.permute(0, 3, 1, 2).unflatten(3, grid)                             # B, Ct, T, H, W
        res = None
        for i in range(depth):
            x_t = self.temporal_nets[i](x_t, keep_grid)
            mid = self.input_linears[i](layers[:, :, i + 1])
            mid = mid if res is None else mid + res                                  # B, T, N, C
            if i < depth - 1:
                new_x_t = x_t + self.to_temporal[i](mid[:, :, 1:]).permute(0, 3, 1, 2).unflatten(3, grid)
            fused = self.to_integration[i](x_t.flatten(3).permute(0, 2, 3, 1))       # B, T, P, C
            cls = self.cls_tokens[i, :t].to(fused.dtype).expand(b, t, -1)[:, :, None]
            mid = mid + torch.cat([cls, fused], dim=2)
            res = self.integration_nets[i](mid, keep)
            if i < depth - 1:
                x_t = new_x_t
        out = self.ln_post(mid + res + self.proj_spatial(layers[:, :, -1])) @ self.proj.to(mid.dtype)
        return LayerTokens({"block": out[:, :, None]}, tokens.video_mask, tokens.text, tokens.text_mask)


@register("dist", label="DiST", category="METL", config=DiSTConfig)
def build(backbone: Backbone, cfg: DiSTConfig) -> TransferModel:
    if cfg.k != 1:
        raise ValueError(f"DiST hands the head one layer (the integration branch's output): k must be 1, got {cfg.k}")
    act = type(backbone.video_blocks[0].mlp.gelu)
    neck = DiSTNetwork(backbone.video_width, backbone.depth, backbone.tokens_per_frame, cfg, act)
    return TransferModel(backbone, cfg, backbone_grad=False, neck=neck,
                         video_taps=backbone.taps(range(-1, backbone.depth)))
