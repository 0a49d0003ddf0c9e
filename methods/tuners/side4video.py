"""Side4Video (Yao, Wu, Li, "Side4Video: Spatial-Temporal Side Network for Memory-Efficient
Image-to-Video Transfer Learning", arXiv 2311.15769, 2023; code HJYao00/Side4Video at 5d72352): a
narrow spatial-temporal side network beside the frozen backbone, fed by every backbone layer
(METL: no gradient enters CLIP). Not in R²-Tuning's Table 9; written
first as a plugin (``examples/side4video.py``, checked with ``r2bench check-method``), then moved here.

Configuration, with sources (``Recognition/`` and ``Retrieval/`` are the two folders of the
release; ``R:model`` = ``Recognition/clip/model.py``, ``V:clip`` = ``Retrieval/modules/module_clip.py``):

* side width 320 for ViT-B/32 (``side_dim: 320`` in ``Recognition/configs/*/…vitb-32…side4video.yaml``;
  ``--side_dim 320`` in ``Retrieval/script_train/*.sh``); attention heads = width // 64 = 5
  (``AttnCBlock``: ``nn.MultiheadAttention(dim, dim//64)``);
* one side block per backbone block, all 12 (``V:clip`` ``SideTransformer``: ``side_layers_mode = 'all'``;
  ``R:model`` ``Transformer``: ``side_start_layer = 0``, no dropped layer);
* per backbone block ``i`` with output ``x_i`` (CLS + patches): ``z = Linear_i(LN_i(x_i))``
  (768 → 320); the side state is merged with z's patch tokens, ``s ← ½ s + ½ z[1:]``, and z's
  CLS token ``z[0]`` is the block's class token (``Transformer.forward``). The side network
  keeps no class token of its own (the paper's "remove [CLS] token in side network");
* side block (``AttnCBlock``, Retrieval form, ``kernel_size=1`` → temporal kernel (3, 1, 1)):
  temporal module ``s ← s + pw2(dwconv_t(pw1(BN1(s))))`` — point-wise 320 → 320, depth-wise
  temporal convolution of kernel 3, point-wise 320 → 320 (``temporal_ratio = 1``); [CLS]-token
  shift self-attention: the class token's first half of channels comes from the next frame,
  the second half from the previous one (``shift_token``), is prepended to the patch tokens,
  learned spatial position embeddings (one per token, CLS included: ``patch_num + 1`` rows in
  ``V:clip``) are added, and ``s ← s + MHSA(LN(·))[patches]`` per frame; then
  ``s ← s + MLP(BN2(s))``, MLP 320 → 1280 → 320 with ``nn.GELU``;
* output (``V:clip`` ``VisualTransformer.forward``, the text–video retrieval model):
  ``BN_post(s)``, spatially averaged, projected 320 → 768 by ``side_proj`` (zero-initialised, no
  bias) and added to the frozen backbone's last-layer class token;
* initialisation: ``AttnCBlock``'s (MLP fc1 N(0, (2·320)^-½), fc2 and attention out-projection
  N(0, 320^-½·24^-½), point-wise convolutions N(0, 0.02), depth-wise convolution and attention
  in-projection N(0, 320^-½), norms 1/0); ``Linear_i`` weights N(0, (2·320)^-½) (``R:model``
  ``CLIP.initialize_parameters``); position embeddings N(0, 0.01); ``side_proj`` zero.

Adapted to this harness, as the other METL rows (LST, E3VA, LoSA) are — read through taps, so
the model is cacheable:

* **the stem**: Side4Video starts the side network from the pixels, a Conv3d(3, 320, (3, 32, 32))
  + BatchNorm3d (``side_conv1``, ``side_pre_bn3d``). A neck sees tapped tokens, not pixels, so
  the stem reads the backbone's embeddings instead (tap layer −1: CLIP's patch embedding, a
  linear map of each 32×32×3 patch, plus positions, after ``ln_pre``): a Conv3d(768, 320,
  (3, 1, 1)) over the patch tokens + BatchNorm — the same temporal kernel over the same patches,
  seen through CLIP's own patch projection (737,600 parameters instead of 2,949,440);
* **the output**: the shared head reads every token of a frame (query-modulated spatial
  pooling), so the projected side state is added per token: the frozen last layer's patch tokens
  get ``side_proj(BN_post(s))``, its class token the spatial average (Side4Video's fusion,
  unchanged for the class token). ``side_proj`` starts at zero, so at init the head sees exactly
  the frozen last layer (as LoSA; "w/o Tuning");
* **padding**: videos of one batch have different lengths. Every BatchNorm takes its batch
  statistics over real frames only (:class:`MaskedBatchNorm`; torch's has no mask), and padded
  frames are zeroed before each temporal convolution and before the class-token shift, so they
  never reach real frames;
* the text tower is frozen CLIP, last layer (Side4Video's retrieval model fine-tunes its text
  encoder; a METL row keeps CLIP frozen, as for E3VA, LoSA and LST). Dropout and drop-path are
  0 in the release (``drop_out: 0.0``, ``drop_path=0.``): none here.

Count at ViT-B/32 (width 768, 12 blocks, 50 tokens a frame), side width 320:
stem 737,600 + its BatchNorm 640; per layer ``LN_i`` 1,536 + ``Linear_i`` 246,080 + side block
1,440,320 (BN 640, pw1 102,720, dw-conv 1,280, pw2 102,720, LN 640, attention 410,880, BN 640,
MLP 820,800) = 1,687,936, × 12 = 20,255,232; position embeddings 16,000; BN_post 640; ``side_proj``
245,760: **21,255,872** extra; with the shared head (2,836,236) **24,092,108** = **22.976 M**
(2^20). Peak memory of one training step at the paper's setting (224², 32 × 75 frames, FP16):
**24.72 GiB**, fake-tensor estimate (``r2bench check-method``); the side network keeps
320-wide activations of every patch token of every frame through 12 full transformer blocks
(MLP 4×), which at 2,400 frames outweighs the frozen backbone.
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
class Side4VideoConfig(HeadConfig):
    """HeadConfig with K=1 plus Side4Video's side width and temporal kernels."""

    k: int = 1
    side4video_width: int = 320
    side4video_temporal_kernel: int = 3     # AttnCBlock's depth-wise temporal convolution (3, 1, 1)
    side4video_stem_kernel: int = 3         # side_conv1's temporal extent (3, p, p)

    def __post_init__(self):
        super().__post_init__()
        if self.side4video_width < 64 or self.side4video_width % 64:
            raise ValueError(f"side4video_width must be a multiple of 64 (heads of 64 channels), "
                             f"got {self.side4video_width}")
        for name in ("side4video_temporal_kernel", "side4video_stem_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd and ≥ 1, got {getattr(self, name)}")


class _MaskedBatchNormFunction(torch.autograd.Function):
    """Batch normalisation of (B, T, N, C) with statistics over the real frames only (``keep``
    (B, T, 1, 1) is 1 on them). It keeps what a fused BatchNorm keeps for backward — the input,
    the mean and 1/σ — and recomputes x̂ there; the statistics' gradient reaches real frames only."""

    @staticmethod
    def forward(ctx, x, keep, weight, bias, eps):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))      # statistics in fp32 at least
        count = keep.sum() * x.shape[2]
        mean = (xf * keep).sum((0, 1, 2)) / count
        var = ((xf - mean).square_().mul_(keep)).sum((0, 1, 2)) / count
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, keep, mean, invstd, weight)
        ctx.count = count
        y = ((xf - mean).mul_(invstd * weight).add_(bias)).to(x.dtype)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        x, keep, mean, invstd, weight = ctx.saved_tensors
        xhat = (x.to(mean.dtype) - mean).mul_(invstd)
        g = grad_y.to(mean.dtype)
        sum_g, sum_g_xhat = g.sum((0, 1, 2)), (g * xhat).sum((0, 1, 2))
        # y_p = γ x̂_p + β at every position p, with μ, σ from the real ones R (n of them):
        # ∂L/∂x_q = γ/σ · (g_q − [q ∈ R] (Σ_p g_p + x̂_q Σ_p g_p x̂_p) / n)
        grad_x = (g - keep * (sum_g + xhat * sum_g_xhat) / ctx.count).mul_(weight * invstd)
        return grad_x.to(x.dtype), None, sum_g_xhat, sum_g, None


class MaskedBatchNorm(nn.BatchNorm1d):
    """BatchNorm over channels-last tokens (B, T, N, C) whose batch statistics (training) come
    from real frames only; the parameters, buffers and running averages of ``nn.BatchNorm1d``
    (torch's BatchNorm has no mask: padded frames would enter the statistics)."""

    def forward(self, x: Tensor, frame_mask: Tensor) -> Tensor:  # type: ignore[override]
        if not self.training:
            return F.batch_norm(x.reshape(-1, x.shape[-1]), self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps).view_as(x)
        keep = frame_mask.to(torch.promote_types(x.dtype, torch.float32))[:, :, None, None]
        y, mean, var = _MaskedBatchNormFunction.apply(x, keep, self.weight, self.bias, self.eps)
        with torch.no_grad():
            count = keep.sum() * x.shape[2]
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            unbiased = var * count / (count - 1).clamp(min=1)                              # as torch keeps it
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
            self.num_batches_tracked.add_(1)
        return y


def temporal_conv(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """A (k, 1, 1) Conv3d over the frames of channels-last tokens (B, T, N, C) → (B, T, N, C')."""
    return conv(x.permute(0, 3, 1, 2).unsqueeze(-1)).squeeze(-1).permute(0, 2, 3, 1)


def shift_token(token: Tensor) -> Tensor:
    """Side4Video's class-token shift over frames (B, T, 1, C): the first half of the channels
    from the next frame, the second half from the previous one, zeros past either end."""
    fold = token.shape[-1] // 2
    ahead = F.pad(token[:, 1:, :, :fold], (0, 0, 0, 0, 0, 1))
    behind = F.pad(token[:, :-1, :, fold:], (0, 0, 0, 0, 1, 0))
    return torch.cat([ahead, behind], dim=-1)


class SideBlock(nn.Module):
    """One side block (``AttnCBlock``): temporal module, [CLS]-token shift MHSA, MLP."""

    def __init__(self, width: int, temporal_kernel: int):
        super().__init__()
        self.norm1 = MaskedBatchNorm(width)
        self.pw_conv1 = nn.Linear(width, width)        # Conv3d (1, 1, 1): the same weights
        self.dw_conv = nn.Conv3d(width, width, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                                 groups=width)
        self.pw_conv2 = nn.Linear(width, width)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, width // 64, batch_first=True)
        self.norm2 = MaskedBatchNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        # AttnCBlock's initialisation; its (2 · 12)^-½ is written with ViT-B's 12 layers whatever the depth
        attn_std, fc_std, proj_std = width ** -0.5, (2 * width) ** -0.5, width ** -0.5 * (2 * 12) ** -0.5
        nn.init.normal_(self.mlp[0].weight, std=fc_std)
        nn.init.normal_(self.mlp[2].weight, std=proj_std)
        nn.init.normal_(self.pw_conv1.weight, std=0.02)
        nn.init.normal_(self.pw_conv2.weight, std=0.02)
        nn.init.normal_(self.dw_conv.weight, std=attn_std)
        nn.init.normal_(self.attn.in_proj_weight, std=attn_std)
        nn.init.normal_(self.attn.out_proj.weight, std=proj_std)

    def forward(self, x: Tensor, token: Tensor, pos: Tensor, frame_mask: Tensor) -> Tensor:
        """``x`` the side state (B, T, P, C), ``token`` this layer's class token (B, T, 1, C)."""
        keep = frame_mask[:, :, None, None].to(x.dtype)
        h = self.pw_conv1(self.norm1(x, frame_mask)) * keep            # padded frames reach nothing
        x = x + self.pw_conv2(temporal_conv(self.dw_conv, h))
        xt = torch.cat([shift_token(token * keep), x], dim=2) + pos.to(x.dtype)
        b, t = xt.shape[:2]
        q = self.ln_1(xt).flatten(0, 1)                                 # one frame per sequence
        a = self.attn(q, q, q, need_weights=False)[0].unflatten(0, (b, t))
        x = x + a[:, :, 1:]
        return x + self.mlp(self.norm2(x, frame_mask))


class Side4VideoNetwork(nn.Module):
    """Stem from the embeddings, one side block per backbone block, BN_post and ``side_proj``
    back to the backbone's width, added to the frozen last layer."""

    def __init__(self, width: int, depth: int, tokens: int, side: int, temporal_kernel: int, stem_kernel: int):
        super().__init__()
        self.stem = nn.Conv3d(width, side, (stem_kernel, 1, 1), padding=(stem_kernel // 2, 0, 0))
        self.stem_norm = MaskedBatchNorm(side)
        self.lns = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.linears = nn.ModuleList(nn.Linear(width, side) for _ in range(depth))
        for linear in self.linears:
            nn.init.normal_(linear.weight, std=(2 * side) ** -0.5)
        self.blocks = nn.ModuleList(SideBlock(side, temporal_kernel) for _ in range(depth))
        self.pos = nn.Parameter(torch.empty(tokens, side))
        nn.init.normal_(self.pos, std=0.01)
        self.post_norm = MaskedBatchNorm(side)
        self.proj = nn.Parameter(torch.zeros(side, width))

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        layers = tokens.video["block"]                         # B, T, 1 + depth, N, D: embeddings, then every block
        if layers.shape[2] != len(self.blocks) + 1:
            raise ValueError(f"Side4Video expects the embeddings and {len(self.blocks)} blocks, got {layers.shape[2]} layers")
        mask = tokens.video_mask.bool()
        keep = mask[:, :, None, None].to(layers.dtype)
        side = self.stem_norm(temporal_conv(self.stem, layers[:, :, 0, 1:] * keep), mask)   # B, T, P, C
        for i, block in enumerate(self.blocks):
            z = self.linears[i](self.lns[i](layers[:, :, i + 1]))
            side = 0.5 * side + 0.5 * z[:, :, 1:]
            side = block(side, z[:, :, :1], self.pos, mask)
        delta = self.post_norm(side, mask) @ self.proj.to(side.dtype)   # B, T, P, D
        delta = torch.cat([delta.mean(2, keepdim=True), delta], dim=2)  # class token: the spatial average
        out = layers[:, :, -1] + delta
        return LayerTokens({"block": out[:, :, None]}, tokens.video_mask, tokens.text, tokens.text_mask)


@register("side4video", label="Side4Video", category="METL", config=Side4VideoConfig)
def build(backbone: Backbone, cfg: Side4VideoConfig) -> TransferModel:
    if cfg.k != 1:
        raise ValueError(f"Side4Video hands the head one layer (the fused output): k must be 1, got {cfg.k}")
    neck = Side4VideoNetwork(backbone.video_width, backbone.depth, backbone.tokens_per_frame,
                             cfg.side4video_width, cfg.side4video_temporal_kernel, cfg.side4video_stem_kernel)
    return TransferModel(backbone, cfg, backbone_grad=False, neck=neck,
                         video_taps=backbone.taps(range(-1, backbone.depth)))
