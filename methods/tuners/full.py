"""Full-Tuning (Table 9 row "Full-Tuning"): every CLIP parameter of both towers learns, under
the shared head on the last layer (K = 1).

Configuration. The R² paper gives no optimiser detail for this row, so CLIP gets its own
parameter group with ``backbone_lr_scale`` × the recipe's learning rate (default 0.01: the
recipe's 5e-4 becomes 5e-6 for CLIP). Why 0.01: X-Pool, the code base VoP's full fine-tuning
baseline was built on, trains CLIP at 1e-6 beside 1e-5 for new modules
(layer6ai-labs/xpool@dda17cc, config/all_config.py); its ratio 0.1 would put CLIP at 5e-5 with
our head's learning rate, 50× X-Pool's CLIP rate, while 0.01 stays within 5× of it. Set 1.0
for one learning rate everywhere.

Count at ViT-B/32: CLIP 151,277,313 + head 2,836,236 = 154,113,549 = 146.974 × 2^20 → paper
147.0 ✓. It includes the 657,921 parameters the head never reads (``ln_post``, ``visual.proj``,
``ln_final``, ``text_projection``, ``logit_scale``): they stay learnable so the count matches
the paper's, get no gradient, and AdamW leaves them unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.model import ParamGroup, TransferModel
from r2bench.methods.registry import register


@dataclass
class FullConfig(HeadConfig):
    """HeadConfig with K=1, plus the backbone's learning-rate scale."""

    k: int = 1
    backbone_lr_scale: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        if not self.backbone_lr_scale > 0:
            raise ValueError(f"backbone_lr_scale must be > 0, got {self.backbone_lr_scale}")


class FullTuningModel(TransferModel):
    """TransferModel whose CLIP parameters train at ``backbone_lr_scale`` × the learning rate."""

    def __init__(self, backbone: Backbone, cfg: FullConfig):
        super().__init__(backbone, cfg, backbone_grad=True)
        self.backbone_lr_scale = cfg.backbone_lr_scale

    def param_groups(self) -> list[ParamGroup]:
        clip = {id(p) for p in self.backbone.parameters()}
        learnable = [p for p in self.parameters() if p.requires_grad]
        return [ParamGroup("backbone", [p for p in learnable if id(p) in clip], lr_scale=self.backbone_lr_scale),
                ParamGroup("head", [p for p in learnable if id(p) not in clip])]


@register("full", label="Full-Tuning", category="full", config=FullConfig)
def build(backbone: Backbone, cfg: FullConfig) -> TransferModel:
    backbone.requires_grad_(True)
    return FullTuningModel(backbone, cfg)
