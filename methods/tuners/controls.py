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
from torch import nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.model import LayerTokens, TransferModel
from r2bench.methods.registry import register
from r2bench.methods.tuners.frozen import FrozenConfig


class ShuffleQueries(nn.Module):
    """A neck handing every sample the query tokens of the next sample in its batch."""

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        return LayerTokens(tokens.video, tokens.video_mask, {k: v.roll(1, dims=0) for k, v in tokens.text.items()},
                           tokens.text_mask.roll(1, dims=0))


class MeanFrame(nn.Module):
    """A neck replacing every real frame's tokens by the video's mean over its real frames."""

    def forward(self, tokens: LayerTokens) -> LayerTokens:
        mask = tokens.video_mask
        video = {}
        for point, v in tokens.video.items():
            m = mask.to(v.dtype).reshape(*mask.shape, *([1] * (v.dim() - 2)))
            mean = (v * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)
            video[point] = mean.expand_as(v) * m
        return LayerTokens(video, mask, tokens.text, tokens.text_mask)


@register("control_shuffled_queries", label="Control: shuffled queries", category="no-tuning", config=FrozenConfig)
def build_shuffled_queries(backbone: Backbone, cfg: FrozenConfig) -> TransferModel:
    return TransferModel(backbone, cfg, backbone_grad=False, neck=ShuffleQueries())


@register("control_mean_frame", label="Control: mean frame", category="no-tuning", config=FrozenConfig)
def build_mean_frame(backbone: Backbone, cfg: FrozenConfig) -> TransferModel:
    return TransferModel(backbone, cfg, backbone_grad=False, neck=MeanFrame())
