"""VPT-deep (Jia et al., ECCV 2022; KMnP/vpt), Table 9 row "VPT": P learnable tokens enter
every visual block right after CLS; the previous block's prompt outputs are dropped and
replaced (``forward_deep_prompt`` in ``src/models/vit_prompt/vit.py``); the tap strips them, so
the shared head (K = 1) sees CLS + patches as without prompts.

Configuration: P = 10 prompts per layer (``vpt_prompts``), visual tower only (VPT has no text
prompts), no prompt dropout or projection (VPT's defaults). Init uniform ±√(6 / (3·p² + d)),
p the patch size (VPT's ``vit.py``; 0.0395 at ViT-B/32). Prompts get no positional embedding,
as in VPT; they enter after open_clip's ``ln_pre`` (VPT's ViT has no ``ln_pre``).

Weight decay: VPT's optimiser decays prompts like every other weight (``make_optimizer`` in
``src/solver/optimizer.py``, KMnP/vpt@7f3942e), so prompts use the recipe's weight decay by
default; ``vpt_prompt_weight_decay`` gives them their own (e.g. 0.0).

Count at ViT-B/32: 12 × 10 × 768 = 92,160 + head 2,836,236 = 2,928,396 = 2.793 × 2^20 → paper
2.8 ✓ (any P from 6 to 16 prints 2.8).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.hooks import BlockHooks, TowerContext
from r2bench.methods.model import ParamGroup, TransferModel
from r2bench.methods.registry import register


@dataclass
class VPTConfig(HeadConfig):
    """HeadConfig with K=1, plus the prompts per layer and their weight decay (None: the recipe's)."""

    k: int = 1
    vpt_prompts: int = 10
    vpt_prompt_weight_decay: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.vpt_prompts < 1:
            raise ValueError(f"vpt_prompts must be ≥ 1, got {self.vpt_prompts}")


class DeepPrompts(BlockHooks):
    """``prompts`` (depth, P, D): inserted after CLS before block 0, replaced before every later
    block, stripped wherever the tokens are tapped."""

    towers = ("video",)

    def __init__(self, depth: int, count: int, width: int, patch_size: int):
        super().__init__()
        self.count = count
        bound = math.sqrt(6.0 / (3 * patch_size * patch_size + width))
        self.prompts = nn.Parameter(torch.empty(depth, count, width).uniform_(-bound, bound))

    def block_input(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        prompts = self.prompts[index].to(x.dtype).expand(x.shape[0], -1, -1)
        rest = x[:, 1:] if index == 0 else x[:, 1 + self.count:]
        return torch.cat([x[:, :1], prompts, rest], dim=1)

    def tap(self, index: int, point: str, x: Tensor, ctx: TowerContext) -> Tensor:
        if index < 0:
            return x
        return torch.cat([x[:, :1], x[:, 1 + self.count:]], dim=1)


class PromptModel(TransferModel):
    """TransferModel whose hook parameters (prompts) may have their own weight decay."""

    def __init__(self, *args, prompt_weight_decay: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.prompt_weight_decay = prompt_weight_decay

    def param_groups(self) -> list[ParamGroup]:
        prompts = [p for p in self.hooks.parameters() if p.requires_grad]
        ids = {id(p) for p in prompts}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [ParamGroup("prompts", prompts, weight_decay=self.prompt_weight_decay), ParamGroup("head", rest)]


def patch_size(backbone: Backbone) -> int:
    size = backbone.clip.visual.patch_size
    return int(size[0] if isinstance(size, tuple) else size)


@register("vpt", label="VPT", category="PETL", config=VPTConfig)
def build(backbone: Backbone, cfg: VPTConfig) -> TransferModel:
    hooks = DeepPrompts(backbone.depth, cfg.vpt_prompts, backbone.video_width, patch_size(backbone))
    return PromptModel(backbone, cfg, backbone_grad=True, hooks=hooks, prompt_weight_decay=cfg.vpt_prompt_weight_decay)
