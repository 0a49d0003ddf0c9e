"""TransferModel: the backbone (with a method's changes) → per-layer tokens of both towers → shared head."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from methods.backbone import Backbone, BlockHooks
from methods.head import GroundingHead, HeadConfig, HeadOutput, decode, head_losses


class TransferModel(nn.Module):
    """Backbone (+ the method's changes) → last-K layer tokens of both towers → shared head."""

    def __init__(self, backbone: Backbone, head_cfg: HeadConfig, *, backbone_grad: bool,
                 hooks: BlockHooks | None = None, layers: list[int] | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = GroundingHead(backbone.video_width, backbone.text_width, head_cfg)
        self.backbone_grad = backbone_grad
        self.hooks = hooks
        n = backbone.depth
        # "single" ablation reads layer 13−K of a 12-layer CLIP: the lowest of the last K.
        self.layers = layers or list(range(n - head_cfg.k, n))

    @property
    def cacheable(self) -> bool:
        """Per-layer features can be computed once and cached (no gradient, unmodified backbone)."""
        return not self.backbone_grad and self.hooks is None

    def _grad_context(self):
        return nullcontext() if self.backbone_grad else torch.no_grad()

    def encode_video(self, frames: Tensor) -> Tensor:
        """Normalised frames (B, T, 3, S, S) → tokens (B, T, K, N, Dv)."""
        b, t = frames.shape[:2]
        with self._grad_context():
            tokens = self.backbone.encode_video(frames.flatten(0, 1), self.layers, hooks=self.hooks,
                                                frames_per_video=t)
        return tokens.unflatten(0, (b, t))

    def encode_text(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        with self._grad_context():
            return self.backbone.encode_text(ids, self.layers, hooks=self.hooks)

    def forward(self, batch: dict) -> HeadOutput:
        video = batch["video_features"] if "video_features" in batch else self.encode_video(batch["frames"])
        text, text_mask = self.encode_text(batch["text_ids"])
        return self.head(video.to(text.dtype) if not torch.is_autocast_enabled() else video,
                         batch["video_mask"], text, text_mask)

    def loss(self, out: HeadOutput, batch: dict, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return head_losses(out, batch["windows"], batch["fps"], batch["saliency"], self.head.cfg, generator)

    def predict(self, out: HeadOutput, batch: dict) -> list[dict]:
        """Moment-DETR submission lines for the batch."""
        decoded = decode(out, batch["fps"], batch["duration"], self.head.cfg)
        return [dict(qid=qid, query=query, vid=vid, pred_relevant_windows=d["windows"],
                     pred_saliency_scores=d["saliency"])
                for qid, query, vid, d in zip(batch["qid"], batch["query"], batch["vid"], decoded)]
