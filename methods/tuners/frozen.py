""""w/o Tuning": frozen CLIP, the shared head on the last layer only (K=1, no recurrence).
Every baseline of Table 9 feeds its adapted last-layer tokens into this same head."""
from __future__ import annotations

from dataclasses import dataclass

from r2bench.methods.backbone import Backbone
from r2bench.methods.model import TransferModel
from r2bench.methods.registry import register
from r2bench.methods.head import HeadConfig


@dataclass
class FrozenConfig(HeadConfig):
    """HeadConfig with K=1: query-modulated pooling + temporal layer on the last layer."""

    k: int = 1


@register("frozen", label="w/o Tuning", category="no-tuning", config=FrozenConfig)
def build(backbone: Backbone, cfg: FrozenConfig) -> TransferModel:
    return TransferModel(backbone, cfg, backbone_grad=False)
