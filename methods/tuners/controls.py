"""Controls for the benchmark's power: heads that are blind by construction.

They must come out significantly worse than "w/o Tuning" (the positive controls of
docs/benchmark.md): if a suite cannot tell them apart from a working method, it cannot tell
anything. Both are w/o Tuning (frozen CLIP, K=1) with one input destroyed, in training and in
evaluation alike:

* ``control_shuffled_queries``: each sample gets the query of the next sample in its batch
  (a roll by one: no sample keeps its own query when the batch has two or more).
* ``control_mean_frame``: every frame's tokens are replaced by the video's mean over its
  real frames, so nothing changes over time except the head's temporal encodings.
"""
from __future__ import annotations

import torch

from methods.backbone import Backbone
from methods.head import HeadOutput
from methods.model import TransferModel
from methods.registry import register
from methods.tuners.frozen import FrozenConfig


class ShuffledQueries(TransferModel):
    """w/o Tuning reading the query of another sample of the batch."""

    def forward(self, batch: dict) -> HeadOutput:
        return super().forward({**batch, "text_ids": batch["text_ids"].roll(1, dims=0)})


class MeanFrame(TransferModel):
    """w/o Tuning seeing one mean frame repeated over the whole video."""

    def forward(self, batch: dict) -> HeadOutput:
        key = "video_features" if "video_features" in batch else "frames"
        video, mask = batch[key], batch["video_mask"]
        if key == "frames":
            video = self.encode_video(video)
            key = "video_features"
        m = mask.to(video.dtype).reshape(*mask.shape, *([1] * (video.dim() - 2)))
        mean = (video * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)
        return super().forward({**batch, key: mean.expand_as(video) * m})


@register("control_shuffled_queries", label="Control: shuffled queries", category="frozen", config=FrozenConfig)
def build_shuffled_queries(backbone: Backbone, cfg: FrozenConfig) -> TransferModel:
    return ShuffledQueries(backbone, cfg, backbone_grad=False)


@register("control_mean_frame", label="Control: mean frame", category="frozen", config=FrozenConfig)
def build_mean_frame(backbone: Backbone, cfg: FrozenConfig) -> TransferModel:
    return MeanFrame(backbone, cfg, backbone_grad=False)
