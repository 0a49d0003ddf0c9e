"""The grounding head shared by every method: R² Block over K layers, pyramid, heads,
losses and decoding (paper Sec. 3–4; ../shared/spec/R2_TUNING.md).

Every method in the suite feeds its (adapted) per-layer tokens of both towers into this
head. R²-Tuning runs it recurrently over the last 4 layers; the baselines run it once on
the last layer (K = 1), which is what makes the comparison "identical heads and pipelines".

Where the paper and the authors' public code differ, the paper's value is the default and
the other is one field away (see ``HeadConfig``):
  focal α            paper 0.9          public code: none   (``focal_alpha=None``)
  L1 weight          paper 0.1          public code: 0.2    (``reg_weight``)
  padded text tokens masked in pooling  public code: not    (``mask_padded_text``)
  saliency at test   cosine             public code: × cls  (``saliency_times_cls``)
"""
from methods.head.block import R2Block, TemporalLayer, UniformDropout, mapper, sinusoid_positions
from methods.head.config import ATTENTION_ORDERS, LAYER_MODES, NMS_KINDS, HeadConfig
from methods.head.decode import decode, hard_nms, linear_soft_nms, window_iou
from methods.head.grounding import GroundingHead, HeadOutput
from methods.head.losses import assign_targets, head_losses, info_nce, regression_range, saliency_contrastive

__all__ = ["ATTENTION_ORDERS", "LAYER_MODES", "NMS_KINDS", "GroundingHead", "HeadConfig", "HeadOutput", "R2Block",
           "TemporalLayer", "UniformDropout", "assign_targets", "decode", "hard_nms", "head_losses", "info_nce",
           "linear_soft_nms", "mapper", "regression_range", "saliency_contrastive", "sinusoid_positions", "window_iou"]
