"""HeadConfig: every switch of the shared head (architecture, losses, decoding), and the two
named protocols that fill in the switches where the paper and the authors' public code differ.

``official`` (the default) reproduces the public code (github yeliudev/R2-Tuning @ 03fbcf6 with
nncore 0.4.4), which produced the paper's numbers; ``paper`` follows the equations as printed.
Every difference is its own field whose default, :data:`FROM_PROTOCOL`, means "take it from the
protocol"; ``__post_init__`` resolves it from :data:`PROTOCOLS`. So
``HeadConfig(protocol="official", focal_alpha=0.9)`` flips exactly one switch, and the resolved
config (``dataclasses.asdict``) records every value a run used. docs/protocols.md lists each
field with both values and where it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from r2bench.core.config import FieldTypeError, check_fields, check_range

LAYER_MODES = ("recurrent", "single", "mean")
ATTENTION_ORDERS = ("cross_self", "self_cross")
NMS_KINDS = ("hard", "linear", "none")
SALIENCY_LOSSES = ("sampled_nce", "within_video")
CALIBRATION_CLIPS = ("sampled", "mean")
CLS_LOSSES = ("focal", "bce")
SALIENCY_DIRECTIONS = ("row", "col")
POSITIVE_CLIPS = ("nonzero", "above_half", "above_median")


class _FromProtocol:
    """Sentinel default: the value comes from the config's protocol."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "FROM_PROTOCOL"

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


FROM_PROTOCOL = _FromProtocol()

# Every field on which the public code and the paper differ. "(train)" fields change training
# only: evaluation always runs each sample at its real length with padding masked (batch-
# independent), which is what the public code's one-video-at-a-time evaluation computes.
PROTOCOLS: dict[str, dict] = {
    "official": dict(
        focal_alpha=None,                # nncore FocalLoss alpha=-1 (no α weighting)
        relu_h=True,                     # ConvPyramid's stride-1 level is ReLU(inplace=True) on h
        saliency_loss="sampled_nce",     # models/loss.py SampledNCELoss: row + col, ties counted
        calibration_clip="sampled",      # BundleLoss.loss_cal: CLS at the sampled positive clip
        saliency_times_cls=True,         # R2Tuning.forward merge_cls_sal=True
        nms_keep_suppressed=True,        # Grounding.evaluate 'normal': score → 0, IoU ≥ thr (float32)
        soft_nms_thresholded=False,      # Grounding.evaluate 'linear': every later row × (1 − IoU)
        round_windows=True,              # Grounding.evaluate: round to the dataset's unit
        pad_length_train=True,           # (train) TEF 1/T_padded, positions by the padded length
        pool_padded_text_train=True,     # (train) spatial pooling max over padded text tokens too
        pyramid_padding_train=True,      # (train) padding reaches the pyramid; max-pooled level masks
        xavier_kaiming_init=True,        # nncore MultiHeadAttention xavier / FFN kaiming, zero biases
        min_train_seconds=5.0,           # Grounding(min_video_len=5): shorter videos not trained on
        widen_short_windows=True,        # Grounding.bind_boundary: windows < 1 clip widened to 1 clip
    ),
    "paper": dict(
        focal_alpha=0.9,                 # Eq. 12
        relu_h=False,                    # Eq. 14: cosine of h; pyramid levels built from h
        saliency_loss="within_video",    # Eq. 15: clips of strictly lower saliency, same video
        calibration_clip="mean",         # Eq. 9: CLS features averaged over positive clips
        saliency_times_cls=False,        # Sec. 3.4: saliency is the cosine
        nms_keep_suppressed=False,       # NMS θ=0.7 removes duplicates
        soft_nms_thresholded=True,       # soft-NMS (Bodla et al.) decays only IoU > threshold
        round_windows=False,
        pad_length_train=False,
        pool_padded_text_train=False,
        pyramid_padding_train=False,
        xavier_kaiming_init=False,       # paper silent: torch defaults
        min_train_seconds=0.0,
        widen_short_windows=False,
    ),
}
PROTOCOL_FIELDS = tuple(PROTOCOLS["official"])


@dataclass
class HeadConfig:
    """Architecture, loss and decoding settings of the shared head.

    ``protocol`` fills every field left at :data:`FROM_PROTOCOL` (see :data:`PROTOCOLS`).
    To switch protocol, build a new config: ``dataclasses.replace`` keeps resolved values."""

    protocol: str = "official"
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
    # losses. L1: 0.1 on the per-point sum of both boundary distances ÷ positives, which equals
    # the public code's 0.2 on their mean (nncore L1Loss, avg_factor = 2 × positives).
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
    window_unit: float | None = None  # rounding unit in seconds (dataset preset); None: no rounding
    # task switches (dataset preset; the public highlight-detection configs, docs/protocols.md)
    regression: bool = True          # False: no regression head; cls trained on per-clip saliency; no windows
    cls_loss: str = "focal"          # "focal" | "bce" (nncore DynamicBCELoss)
    saliency_directions: tuple[str, ...] = ("row", "col")   # SampledNCELoss terms
    merge_cls_saliency: bool = True  # with saliency_times_cls: cls saliency × cosine (False: cls alone)
    positive_clips: str = "nonzero"  # the saliency loss's positive clips: target > 0 | > 0.5 | > median
    # protocol fields (PROTOCOLS)
    focal_alpha: float | None = FROM_PROTOCOL
    relu_h: bool = FROM_PROTOCOL
    saliency_loss: str = FROM_PROTOCOL
    calibration_clip: str = FROM_PROTOCOL
    saliency_times_cls: bool = FROM_PROTOCOL
    nms_keep_suppressed: bool = FROM_PROTOCOL
    soft_nms_thresholded: bool = FROM_PROTOCOL
    round_windows: bool = FROM_PROTOCOL
    pad_length_train: bool = FROM_PROTOCOL
    pool_padded_text_train: bool = FROM_PROTOCOL
    pyramid_padding_train: bool = FROM_PROTOCOL
    xavier_kaiming_init: bool = FROM_PROTOCOL
    min_train_seconds: float = FROM_PROTOCOL
    widen_short_windows: bool = FROM_PROTOCOL

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {self.protocol!r}")
        for name, value in PROTOCOLS[self.protocol].items():
            if getattr(self, name) is FROM_PROTOCOL:
                setattr(self, name, value)
        # every field (a method's own included) against its type, then the ranges that matter
        try:
            check_fields(self)
            for name in ("k", "temporal_layers", "hidden", "heads", "ffn", "max_windows"):
                check_range(name, getattr(self, name), 1)
            for name in ("dropout", "drop_path"):
                check_range(name, getattr(self, name), 0.0, 1.0, high_open=True)
            for name in ("focal_gamma", "cls_weight", "reg_weight", "saliency_weight", "video_calibration_weight",
                         "layer_calibration_weight", "min_train_seconds"):
                check_range(name, getattr(self, name), 0.0)
            check_range("temperature", self.temperature, 0.0, low_open=True)
            check_range("focal_alpha", self.focal_alpha, 0.0, 1.0)
            for stride in self.strides:
                check_range("strides", stride, 1)
        except FieldTypeError as e:
            raise ValueError(str(e)) from None
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        for name, allowed in (("layer_mode", LAYER_MODES), ("attention_order", ATTENTION_ORDERS),
                              ("nms", NMS_KINDS), ("saliency_loss", SALIENCY_LOSSES),
                              ("calibration_clip", CALIBRATION_CLIPS), ("cls_loss", CLS_LOSSES),
                              ("positive_clips", POSITIVE_CLIPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.k < 1 or self.temporal_layers < 1:
            raise ValueError("k and temporal_layers must be ≥ 1")
        if not 0 < self.nms_threshold <= 1:
            raise ValueError(f"nms_threshold must be in (0, 1], got {self.nms_threshold!r}")
        if self.window_unit is not None and not self.window_unit > 0:
            raise ValueError(f"window_unit must be > 0 seconds or None, got {self.window_unit!r}")
        self.strides = tuple(self.strides)
        self.saliency_directions = tuple(self.saliency_directions)
        if not self.saliency_directions or not set(self.saliency_directions) <= set(SALIENCY_DIRECTIONS) \
                or len(set(self.saliency_directions)) != len(self.saliency_directions):
            raise ValueError(f"saliency_directions must be a non-empty subset of {SALIENCY_DIRECTIONS}, "
                             f"got {self.saliency_directions!r}")
        if not self.regression and self.strides != (1,):
            raise ValueError("regression=False trains classification on per-clip saliency targets, which exist at "
                             f"stride 1 only: set strides=(1,) (got {self.strides})")

    @property
    def steps(self) -> int:
        """Refinement steps: K when recurrent, else one."""
        return self.k if self.layer_mode == "recurrent" else 1

    def protocol_overrides(self) -> dict:
        """The protocol fields whose value differs from what ``protocol`` prescribes."""
        table = PROTOCOLS[self.protocol]
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name in table and getattr(self, f.name) != table[f.name]}
