"""The grounding head shared by every method: R² Block over K layers, pyramid, heads,
losses and decoding (paper Sec. 3–4; ../shared/spec/R2_TUNING.md).

Every method in the suite feeds its (adapted) per-layer tokens of both towers into this
head. R²-Tuning runs it recurrently over the last 4 layers; the baselines run it once on
the last layer (K = 1), which is what makes the comparison "identical heads and pipelines".

Where the paper and the authors' public code differ, ``HeadConfig(protocol=...)`` picks
every value at once: ``"official"`` (default) reproduces the public code, which produced the
paper's numbers, and ``"paper"`` follows the printed equations; each difference is also its
own field (``PROTOCOLS``; docs/protocols.md). ``python -m r2bench.methods.check_official CASE_DIR``
checks the ``official`` protocol against the golden fixtures made with the public code.
"""
from r2bench.methods.head.block import R2Block, TemporalLayer, UniformDropout, mapper, sinusoid_positions
from r2bench.methods.head.config import (ATTENTION_ORDERS, FROM_PROTOCOL, LAYER_MODES, NMS_KINDS, PROTOCOL_FIELDS, PROTOCOLS,
                                 HeadConfig)
from r2bench.methods.head.decode import (cls_saliency, decode, decode_sample, greedy_nms, hard_nms, linear_soft_nms,
                                 merged_saliency, output_saliency, window_iou)
from r2bench.methods.head.grounding import GroundingHead, HeadOutput
from r2bench.methods.head.losses import (assign_targets, head_losses, info_nce, regression_range, sampled_nce,
                                 saliency_contrastive, widen_windows)

__all__ = ["ATTENTION_ORDERS", "FROM_PROTOCOL", "LAYER_MODES", "NMS_KINDS", "PROTOCOLS", "PROTOCOL_FIELDS",
           "GroundingHead", "HeadConfig", "HeadOutput", "R2Block", "TemporalLayer", "UniformDropout",
           "assign_targets", "cls_saliency", "decode", "decode_sample", "greedy_nms", "hard_nms", "head_losses", "info_nce",
           "linear_soft_nms", "mapper", "merged_saliency", "regression_range", "sampled_nce", "saliency_contrastive",
           "sinusoid_positions", "output_saliency", "widen_windows", "window_iou"]
