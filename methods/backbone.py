"""The frozen CLIP backbone: any open_clip model, tapped at the last K residual blocks.

Both towers are run block by block (not through ``forward_intermediates``) so that a
transfer method can take part in every block through :class:`BlockHooks`: insert and strip
prompt tokens (VPT, VoP), run an adapter between a block's attention and MLP with the
frames of one video together (ST-Adapter), or read every block's output for a side network
(E3VA, LoSA, LST). Methods that only wrap weights (LoRA through peft) change the blocks in
place and need no hook.
"""
from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
from torch import Tensor, nn

from methods.checkpoints import check_checkpoint

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

RANDOM_INIT = "random-init"
_WARNED_RANDOM: set[str] = set()   # warn once per model name and process


class BackboneError(RuntimeError):
    """A backbone that cannot be built here (unknown name, weights that are not a local file)."""


@dataclass
class TowerContext:
    """What a hook may need to know about the batch running through a tower."""

    tower: str                       # "video" or "text"
    frames_per_video: int | None     # video tower: consecutive rows of one video
    attn_mask: Tensor | None = None  # text tower: causal mask for the current length


class BlockHooks:
    """How a method takes part in the backbone's blocks. The defaults change nothing."""

    def run_block(self, index: int, block: nn.Module, x: Tensor, ctx: TowerContext) -> Tensor:
        """Run residual block ``index`` (0-based) of ``ctx.tower`` on tokens ``x`` (N, L, D)."""
        return block(x, attn_mask=ctx.attn_mask)

    def tap(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        """The tokens of block ``index`` handed to the head (strip inserted tokens here)."""
        return x


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime: float) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_digest(path: str | os.PathLike) -> str:
    """A short content digest of a checkpoint file (memoised per path, size and mtime)."""
    st = os.stat(path)
    return _file_digest(str(path), st.st_size, st.st_mtime)


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def trim_text_ids(ids: Tensor) -> Tensor:
    """Drop the padding columns after the longest query's end-of-text token."""
    return ids[:, : int(ids.argmax(dim=-1).max()) + 1]


def _causal_mask(length: int, device: torch.device) -> Tensor:
    return torch.full((length, length), float("-inf"), device=device).triu_(1)


def check_backbone(name: str, weights: str | os.PathLike | None) -> None:
    """Refuse at once what would need a download: hub models, hub tags, missing files."""
    if name.startswith(("hf-hub:", "local-dir:")) or name not in open_clip.list_models():
        raise BackboneError(
            f"unknown open_clip model '{name}': use a built-in architecture name "
            f"(e.g. ViT-B-32, or R2Bench-Tiny from {MODEL_CONFIG_DIR}); hub models cannot be downloaded here")
    if weights is not None and not Path(weights).is_file():
        hint = (" — it looks like a hub tag; this suite never downloads: pass the path of a local checkpoint file"
                if not any(sep in str(weights) for sep in "/\\.") else "")
        raise BackboneError(f"CLIP weights '{weights}' for {name}: no such file{hint}")
    if weights is not None:
        check_checkpoint(name, weights)   # activation and shapes must fit the config


class Backbone(nn.Module):
    """A frozen open_clip model exposing per-layer tokens of both towers.

    ``weights``: a local checkpoint file (``.pt``/``.bin``/``.safetensors``) or None for a
    randomly initialised model (then :attr:`weights_label` is ``"random-init"`` and every
    report says so). Hub names (``"openai"``, ``"laion2b_…"``, ``hf-hub:…``) are refused
    at once: this suite never downloads.
    """

    def __init__(self, name: str = "ViT-B-32", weights: str | os.PathLike | None = None, *,
                 device: str | torch.device = "cpu"):
        super().__init__()
        check_backbone(name, weights)
        self.name = name
        self.weights_path = str(weights) if weights is not None else None
        self.weights_label = RANDOM_INIT if weights is None else f"{Path(weights).name}#{weights_digest(weights)}"
        with _quiet_root_logger():  # open_clip narrates every step on the root logger
            self.clip = open_clip.create_model(name, pretrained=self.weights_path, device=device,
                                               **(check_checkpoint(name, weights) if weights is not None else {}))
            self.tokenizer = open_clip.get_tokenizer(name)
        if weights is None and name not in _WARNED_RANDOM:
            _WARNED_RANDOM.add(name)
            log.warning("backbone %s is RANDOMLY INITIALISED (no weights given): metrics are not comparable", name)
        self.clip.requires_grad_(False).eval()
        visual = self.clip.visual
        self.image_size = int(visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size)
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # ---- shapes -------------------------------------------------------------------------
    @property
    def video_blocks(self) -> nn.ModuleList:
        return self.clip.visual.transformer.resblocks

    @property
    def text_blocks(self) -> nn.ModuleList:
        return self.clip.transformer.resblocks

    @property
    def video_width(self) -> int:
        return self.clip.visual.transformer.width

    @property
    def text_width(self) -> int:
        return self.clip.transformer.width

    @property
    def depth(self) -> int:
        return len(self.video_blocks)

    @property
    def tokens_per_frame(self) -> int:
        return self.clip.visual.positional_embedding.shape[0]

    def train(self, mode: bool = True):
        """The backbone stays in eval mode (CLIP has no dropout, but keep it explicit)."""
        return super().train(False)

    # ---- inputs -------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """open_clip's tokenizer: (B, context_length) token ids."""
        return self.tokenizer(list(texts))

    def preprocess(self, frames: np.ndarray | Tensor) -> Tensor:
        """uint8 frames (T, S, S, 3), already resized and centre-cropped → normalised (T, 3, S, S)."""
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(x.shape)}")
        if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            raise ValueError(f"frames are {x.shape[1]}×{x.shape[2]}, {self.name} expects "
                             f"{self.image_size}×{self.image_size} (read them with size={self.image_size})")
        x = x.to(self.mean.device).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean) / self.std

    def _layer_indices(self, layers: int | Sequence[int]) -> list[int]:
        n = self.depth
        idx = list(range(n - layers, n)) if isinstance(layers, int) else [i % n for i in layers]
        if not idx or any(i < 0 for i in idx):
            raise ValueError(f"cannot tap layers {layers} of a {n}-layer backbone")
        return idx

    # ---- towers -------------------------------------------------------------------------
    def _run(self, blocks: nn.ModuleList, x: Tensor, taps: list[int], hooks: BlockHooks,
             ctx: TowerContext) -> list[Tensor]:
        out = []
        for i, block in enumerate(blocks[: max(taps) + 1]):
            if ctx.tower == "text":
                ctx.attn_mask = _causal_mask(x.shape[1], x.device).to(x.dtype)
            x = hooks.run_block(i, block, x, ctx)
            if i in taps:
                out.append(hooks.tap(i, x, ctx))
        return out

    def encode_video(self, images: Tensor, layers: int | Sequence[int] = 1, *,
                     hooks: BlockHooks | None = None, frames_per_video: int | None = None) -> Tensor:
        """Normalised images (N, 3, S, S) → tokens (N, L, 1 + P, Dv) of the tapped blocks,
        lowest layer first; CLS + patches, raw residual stream (before ``ln_post``)."""
        taps = self._layer_indices(layers)
        x = self.clip.visual._embeds(images)
        ctx = TowerContext("video", frames_per_video)
        return torch.stack(self._run(self.video_blocks, x, taps, hooks or BlockHooks(), ctx), dim=1)

    def encode_text(self, ids: Tensor, layers: int | Sequence[int] = 1, *,
                    hooks: BlockHooks | None = None) -> tuple[Tensor, Tensor]:
        """Token ids (B, L) → (tokens (B, K, L, Dt), mask (B, L) True on real tokens).

        Ids may be cut after the batch's last end-of-text token (see :func:`trim_text_ids`):
        with CLIP's causal mask the kept tokens are exactly what the full-length pass computes."""
        taps = self._layer_indices(layers)
        length = ids.shape[1]
        eot = ids.argmax(dim=-1)  # end-of-text has the highest id in CLIP's vocabulary
        mask = torch.arange(length, device=ids.device)[None] <= eot[:, None]
        x = self.clip.token_embedding(ids) + self.clip.positional_embedding[:length]
        ctx = TowerContext("text", None)
        tokens = torch.stack(self._run(self.text_blocks, x, taps, hooks or BlockHooks(), ctx), dim=1)
        return tokens, mask

    def describe(self) -> str:
        return f"{self.name} [{self.weights_label}]"
