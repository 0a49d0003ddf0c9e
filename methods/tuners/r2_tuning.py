"""R²-Tuning (Liu et al., ECCV 2024): the shared head run recurrently over the last K=4
layers of both frozen CLIP towers. Every ablation switch of the paper is a config field."""
from __future__ import annotations

from dataclasses import dataclass

from r2bench.methods.backbone import Backbone
from r2bench.methods.model import TransferModel
from r2bench.methods.registry import register
from r2bench.methods.head import HeadConfig


@dataclass
class R2TuningConfig(HeadConfig):
    """HeadConfig at the paper's R²-Tuning setting (K=4, reversed, shared block, cross→self)."""

    k: int = 4


@register("r2_tuning", label="R²-Tuning", category="METL", config=R2TuningConfig)
def build(backbone: Backbone, cfg: R2TuningConfig) -> TransferModel:
    return TransferModel(backbone, cfg, backbone_grad=False)
