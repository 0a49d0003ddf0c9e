"""HeadConfig: every switch of the shared head (architecture, losses, decoding)."""
from __future__ import annotations

from dataclasses import dataclass

LAYER_MODES = ("recurrent", "single", "mean")
ATTENTION_ORDERS = ("cross_self", "self_cross")
NMS_KINDS = ("hard", "linear", "none")


@dataclass
class HeadConfig:
    """Architecture, loss and decoding settings of the shared head (paper defaults)."""

    k: int = 4                       # K: how many of the backbone's last layers the head consumes
    layer_mode: str = "recurrent"    # "recurrent" | "single" (layer 13−K only) | "mean" (of the last K)
    reverse: bool = True             # refine 12 → 9 (True) or 9 → 12
    shared_block: bool = True        # one R² Block for all steps (recurrent) or one per step
    attention_order: str = "cross_self"
    temporal_layers: int = 1
    hidden: int = 256
    heads: int = 8
    ffn: int = 1024
    dropout: float = 0.5             # in the video/text MLPs (dataset preset)
    drop_path: float = 0.1
    use_tef: bool = True             # temporal encoding features (grounding datasets)
    strides: tuple[int, ...] = (1, 2, 4, 8)
    mask_padded_text: bool = True
    # losses
    focal_alpha: float | None = 0.9
    focal_gamma: float = 2.0
    cls_weight: float = 1.0
    reg_weight: float = 0.1
    saliency_weight: float = 0.1
    video_calibration_weight: float = 0.1
    layer_calibration_weight: float = 0.1
    temperature: float = 0.07
    # decoding
    max_windows: int = 50
    nms: str = "hard"
    nms_threshold: float = 0.7
    saliency_times_cls: bool = False

    def __post_init__(self):
        if self.layer_mode not in LAYER_MODES:
            raise ValueError(f"layer_mode must be one of {LAYER_MODES}, got {self.layer_mode!r}")
        if self.attention_order not in ATTENTION_ORDERS:
            raise ValueError(f"attention_order must be one of {ATTENTION_ORDERS}, got {self.attention_order!r}")
        if self.nms not in NMS_KINDS:
            raise ValueError(f"nms must be one of {NMS_KINDS}, got {self.nms!r}")
        if self.k < 1 or self.temporal_layers < 1:
            raise ValueError("k and temporal_layers must be ≥ 1")
        self.strides = tuple(self.strides)

    @property
    def steps(self) -> int:
        """Refinement steps: K when recurrent, else one."""
        return self.k if self.layer_mode == "recurrent" else 1


