"""TransferModel: backbone (with a method's changes) → per-layer tokens → neck → shared head.

One pipeline for every method::

    frames ──Backbone (+ hooks, with or without autograd)──┐
    cached per-layer features (no gradient, no hooks) ─────┴─> LayerTokens ──neck──> LayerTokens
        ──GroundingHead (last K layers of both towers)──> HeadOutput ──loss / predict

What a method sets (its builder in ``methods/tuners/<name>.py`` returns a TransferModel):

* ``backbone_grad`` — gradients flow through the backbone (full tuning, PETL). When False
  (frozen, METL) the backbone runs under ``no_grad``.
* ``hooks`` — a :class:`~methods.hooks.BlockHooks` module acting inside the backbone's blocks.
* ``neck`` — a module between the backbone's tapped tokens and the head (side networks: E3VA,
  LoSA, LST). It receives the tokens of ``video_taps`` / ``text_taps`` and returns the head's
  K layers (``LayerTokens`` with the ``block`` point).
* ``video_taps`` / ``text_taps`` — which blocks (and which of their outputs) the backbone hands
  on; by default the last K blocks, as the head consumes them.
* ``param_groups()`` — override to give parts of the model their own learning-rate scale or
  weight decay (e.g. full tuning's backbone, prompts without weight decay).

A model is ``cacheable`` when the backbone needs neither gradient nor hooks: its tapped
features can then be computed once per video and read from disk. Memory differences between
methods come from these facts, never from special cases in the harness.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import GroundingHead, HeadConfig, HeadOutput, decode, head_losses
from r2bench.methods.hooks import BlockHooks, Taps


@dataclass
class LayerTokens:
    """Per-layer tokens of both towers: ``video[point]`` (B, T, L, N, Dv), ``text[point]``
    (B, L, Lt, Dt), lowest layer first; masks are True on real frames / tokens."""

    video: dict[str, Tensor]
    video_mask: Tensor
    text: dict[str, Tensor]
    text_mask: Tensor


@dataclass
class ParamGroup:
    """Learnable parameters trained alike: ``lr_scale`` × the recipe's learning rate;
    ``weight_decay`` None means the recipe's value."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    lr_scale: float = 1.0
    weight_decay: float | None = None


class TransferModel(nn.Module):
    """The backbone with a method's changes, an optional neck, and the shared head."""

    def __init__(self, backbone: Backbone, head_cfg: HeadConfig, *, backbone_grad: bool,
                 hooks: BlockHooks | None = None, neck: nn.Module | None = None,
                 video_taps: Taps | None = None, text_taps: Taps | None = None):
        super().__init__()
        self.backbone = backbone
        self.hooks = hooks
        self.neck = neck
        self.head = GroundingHead(backbone.video_width, backbone.text_width, head_cfg)
        self.backbone_grad = backbone_grad
        head_taps = backbone.taps(head_cfg.k)
        self.video_taps = video_taps or head_taps
        self.text_taps = text_taps or head_taps
        if neck is None and (self.video_taps != head_taps or self.text_taps != head_taps):
            raise ValueError(f"without a neck the head reads the last {head_cfg.k} blocks; "
                             f"got video {self.video_taps}, text {self.text_taps}")

    # ---- what the harness asks ----------------------------------------------------------
    @property
    def cacheable(self) -> bool:
        """Tapped video features can be computed once and cached (no gradient, no hooks)."""
        return not self.backbone_grad and self.hooks is None

    def param_groups(self) -> list[ParamGroup]:
        """Every learnable parameter in exactly one group (override to split them)."""
        return [ParamGroup("trainable", [p for p in self.parameters() if p.requires_grad])]

    def learnable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint holds: learnable parameters, and the persistent buffers of the
        modules a method adds (hooks, neck, head)."""
        state = {name: p for name, p in self.named_parameters() if p.requires_grad}
        for prefix, module in (("hooks", self.hooks), ("neck", self.neck), ("head", self.head)):
            if module is not None:
                state.update({f"{prefix}.{name}": b for name, b in module.named_buffers()
                              if name.rsplit(".", 1)[-1] not in _non_persistent(module, name)})
        return state

    def load_learnable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a :meth:`learnable_state_dict`; missing or unexpected names are an error."""
        own = self.learnable_state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"checkpoint does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for name, tensor in state.items():
                if own[name].shape != tensor.shape:
                    raise ValueError(f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, "
                                     f"the model expects {tuple(own[name].shape)}")
                own[name].copy_(tensor)

    # ---- the pipeline -------------------------------------------------------------------
    def _backbone_context(self):
        return nullcontext() if self.backbone_grad else torch.no_grad()

    def video_layer_tokens(self, frames: Tensor, frame_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Normalised frames (B, T, 3, S, S) → ``{point: (B, T, L, N, Dv)}`` of ``video_taps``."""
        b, t = frames.shape[:2]
        with self._backbone_context():
            out = self.backbone.video_tokens(frames.flatten(0, 1), self.video_taps, hooks=self.hooks,
                                             frames_per_video=t, frame_mask=frame_mask)
        return {point: v.unflatten(0, (b, t)) for point, v in out.items()}

    def text_layer_tokens(self, ids: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        with self._backbone_context():
            return self.backbone.text_tokens(ids, self.text_taps, hooks=self.hooks)

    def layer_tokens(self, batch: dict) -> LayerTokens:
        """The tapped tokens of a batch: video from ``video_taps`` (cached features) or from
        ``frames`` through the backbone; text always through the backbone."""
        mask = batch["video_mask"]
        video = batch["video_taps"] if "video_taps" in batch else self.video_layer_tokens(batch["frames"], mask)
        text, text_mask = self.text_layer_tokens(batch["text_ids"])
        reference = next(iter(text.values()))
        if not torch.is_autocast_enabled(reference.device.type):   # cached features are fp16 on disk
            video = {point: v.to(reference.dtype) for point, v in video.items()}
        return LayerTokens(video, mask, text, text_mask)

    def forward(self, batch: dict) -> HeadOutput:
        tokens = self.layer_tokens(batch)
        if self.neck is not None:
            tokens = self.neck(tokens)
        return self.head(tokens.video["block"], tokens.video_mask, tokens.text["block"], tokens.text_mask)

    def loss(self, out: HeadOutput, batch: dict, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return head_losses(out, batch["windows"], batch["fps"], batch["saliency"], self.head.cfg, generator)

    def predict(self, out: HeadOutput, batch: dict) -> list[dict]:
        """Moment-DETR submission lines for the batch (without ``pred_relevant_windows`` when the
        head has no regression: highlight detection only)."""
        decoded = decode(out, batch["fps"], batch["duration"], self.head.cfg)
        lines = []
        for qid, query, vid, d in zip(batch["qid"], batch["query"], batch["vid"], decoded):
            line = dict(qid=qid, query=query, vid=vid)
            if d["windows"] is not None:
                line["pred_relevant_windows"] = d["windows"]
            line["pred_saliency_scores"] = d["saliency"]
            lines.append(line)
        return lines


def _non_persistent(module: nn.Module, name: str) -> set[str]:
    owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
    return set(owner._non_persistent_buffers_set)
