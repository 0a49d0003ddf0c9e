"""The frozen CLIP backbone: any open_clip model, run block by block, tapped at chosen blocks.

Both towers run each residual block as the same five steps open_clip's block does, with a
method's :class:`~methods.hooks.BlockHooks` called between them (before/after attention,
before/after the MLP, after the block): prompt tokens (VPT, VoP), adapters inside the block
(ST-Adapter), branch outputs read by a side network (E3VA). A hook may insert tokens: the text
tower's causal mask is built for the current length at every block. :class:`~methods.hooks.Taps`
says which blocks (and which of their outputs) are handed on. Methods that only wrap weights
(LoRA through peft, full tuning) change the blocks in place and need no hook.
"""
from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
from open_clip.transformer import ResidualAttentionBlock
from torch import Tensor, nn

from r2bench.methods.checkpoints import check_checkpoint, load_weights, verify_safetensors
from r2bench.methods.hooks import BlockHooks, Taps, TowerContext, overridden

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

RANDOM_INIT = "random-init"
_INNER_HOOKS = ("block_input", "attn_output", "mlp_input", "mlp_output", "block_output")


class BackboneError(RuntimeError):
    """A backbone that cannot be built here (unknown name, weights that are not a local file)."""


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime: float) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=8)
def _verified(path: str, size: int, mtime_ns: int) -> None:
    verify_safetensors(path)     # memoised per path, size and mtime: a file is read once


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


@contextmanager
def one_attention_path():
    """Run ``nn.MultiheadAttention`` by its ordinary path, whatever the module's mode.

    In eval mode without gradient, ``nn.MultiheadAttention`` switches to a fused "fast path"
    (``torch._native_multi_head_attention``) whose floats differ from the path training takes
    in the last bits (~3e-6 on the tiny CLIP's tokens). A frozen backbone then gave other
    tokens in ``eval()`` than in ``train()``: the suite fills its feature cache with the model
    in train mode, ``datasets.prepare`` and the Predictor encode in eval mode, and once rounded
    to fp16 for the cache about 6 values in 10,000 moved by one fp16 step, enough to
    reorder near-tied windows. The flag is PyTorch's own switch; it is restored afterwards."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def trim_text_ids(ids: Tensor) -> Tensor:
    """Drop the padding columns after the longest query's end-of-text token."""
    return ids[:, : int(ids.argmax(dim=-1).max()) + 1]


def _causal_mask(length: int, device: torch.device) -> Tensor:
    return torch.full((length, length), float("-inf"), device=device).triu_(1)


def _attend(block: ResidualAttentionBlock, q: Tensor, ctx: TowerContext) -> Tensor:
    """The block's self-attention with the context's masks (``key_padding_mask``: a hook that
    joins rows into one sequence — the frames of a video — hides padded tokens with it)."""
    if ctx.key_padding_mask is None:
        return block.attention(q_x=q, attn_mask=ctx.attn_mask)
    attn_mask = ctx.attn_mask.to(q.dtype) if ctx.attn_mask is not None else None
    padding = ctx.key_padding_mask
    if attn_mask is not None:   # one mask type for both (nn.MultiheadAttention deprecates mixing them)
        padding = torch.zeros(padding.shape, dtype=q.dtype, device=q.device).masked_fill(padding, float("-inf"))
    return block.attn(q, q, q, need_weights=False, attn_mask=attn_mask, key_padding_mask=padding)[0]


def hub_parts(name: str) -> list[str]:
    """What building open_clip config ``name`` would fetch from a model hub: a Hugging Face text
    tower (``text_cfg.hf_model_name``), tokenizer (``hf_tokenizer_name``) or pretrained timm
    vision tower (``vision_cfg.timm_model_pretrained``)."""
    cfg = open_clip.get_model_config(name) or {}
    text, vision = cfg.get("text_cfg") or {}, cfg.get("vision_cfg") or {}
    parts = []
    if text.get("hf_model_name"):
        parts.append(f"text tower ({text['hf_model_name']})")
    if text.get("hf_tokenizer_name"):
        parts.append(f"tokenizer ({text['hf_tokenizer_name']})")
    if vision.get("timm_model_pretrained"):
        parts.append(f"pretrained vision tower ({vision.get('timm_model_name')})")
    return parts


def check_backbone(name: str, weights: str | os.PathLike | None) -> None:
    """Refuse at once what would need a download: hub models, hub tags, missing files."""
    if name.startswith(("hf-hub:", "local-dir:")) or name not in open_clip.list_models():
        raise BackboneError(
            f"unknown open_clip model '{name}': use a built-in architecture name "
            f"(e.g. ViT-B-32, or R2Bench-Tiny from {MODEL_CONFIG_DIR}); hub models cannot be downloaded here")
    hub = hub_parts(name)
    if hub:
        raise BackboneError(
            f"open_clip model '{name}' takes its {' and '.join(hub)} from the Hugging Face hub, and this suite "
            f"never downloads: use an architecture with open_clip's own text tower and tokenizer (e.g. ViT-B-32)")
    if weights is not None and not Path(weights).is_file():
        hint = (" — it looks like a hub tag; this suite never downloads: pass the path of a local checkpoint file"
                if not any(sep in str(weights) for sep in "/\\.") else "")
        raise BackboneError(f"CLIP weights '{weights}' for {name}: no such file{hint}")
    if weights is not None:
        if Path(weights).suffix == ".safetensors":
            try:
                _verified(str(weights), *_stat(weights))
            except ValueError as e:
                raise BackboneError(f"CLIP weights for {name}: {e}") from None
        check_checkpoint(name, weights)   # activation and shapes must fit the config


class Backbone(nn.Module):
    """A frozen open_clip model exposing per-layer tokens of both towers.

    ``weights``: a local checkpoint file (``.pt``/``.bin``/``.safetensors``) or None for a
    randomly initialised model (then :attr:`weights_label` is ``"random-init"``; the harness
    warns about it wherever a run trains or reports with it). All parameters are frozen;
    ``train()``/``eval()`` reach every module (a method's dropout must see them). Hub names
    (``"openai"``, ``"laion2b_…"``, ``hf-hub:…``) are refused at once: this suite never
    downloads.
    """

    def __init__(self, name: str = "ViT-B-32", weights: str | os.PathLike | None = None, *,
                 device: str | torch.device = "cpu"):
        super().__init__()
        check_backbone(name, weights)
        self.name = name
        self.weights_path = str(weights) if weights is not None else None
        self.weights_label = RANDOM_INIT if weights is None else f"{Path(weights).name}#{weights_digest(weights)}"
        with _quiet_root_logger():  # open_clip narrates every step on the root logger
            self.clip = open_clip.create_model(name, device=device)
            self.tokenizer = open_clip.get_tokenizer(name)
        if weights is not None:      # checked above; read once, loaded strictly (one line if it does not fit)
            load_weights(self.clip, name, weights)
        self.clip.requires_grad_(False)
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

    # ---- inputs -------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """open_clip's tokenizer: (B, context_length) token ids."""
        return self.tokenizer(list(texts))

    @property
    def context_length(self) -> int | None:
        """Tokens the text tower reads (longer queries are cut to it)."""
        return getattr(self.tokenizer, "context_length", None)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` needs, start and end tokens included, before any cut."""
        return len(self.tokenizer.encode(text)) + 2

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

    def taps(self, layers: int | Sequence[int], points: Sequence[str] = ("block",)) -> Taps:
        """``Taps`` of the last ``layers`` blocks (an int) or of the given 0-based block indices
        (-1: the embeddings entering block 0)."""
        if isinstance(layers, int):
            return Taps.last(layers, self.depth, tuple(points))
        return Taps(tuple(sorted(layers)), tuple(points))

    # ---- towers -------------------------------------------------------------------------
    def _run(self, blocks: nn.ModuleList, x: Tensor, taps: Taps, hooks: BlockHooks | None,
             ctx: TowerContext) -> dict[str, Tensor]:
        if max(taps.layers) >= len(blocks):
            raise ValueError(f"cannot tap block {max(taps.layers)} of a {len(blocks)}-block {ctx.tower} tower")
        hooks = hooks if hooks is not None and hooks.acts_on(ctx.tower) else None
        inner = [name for name in _INNER_HOOKS if overridden(hooks, name)]
        branches = {"attn", "mlp"} & set(taps.points)
        # each point's layers are copied, as they come, into one (L, N, ...) buffer: no list of
        # layers and stacked copy alive together (with many taps that doubled the peak)
        slots = {point: {layer: j for j, layer in enumerate(taps.layers_of(point))} for point in taps.points}
        out: dict[str, Tensor] = {}

        def keep(point: str, i: int, v: Tensor) -> None:
            if hooks is not None:
                v = hooks.tap(i, point, v, ctx)
            if point not in out:
                out[point] = v.new_empty((len(slots[point]), *v.shape))
            out[point][slots[point][i]] = v

        if -1 in slots.get("block", ()):
            keep("block", -1, x)
        with one_attention_path():   # the same floats in train() and eval()
            for i, block in enumerate(blocks[: max(taps.layers) + 1]):
                if not isinstance(block, ResidualAttentionBlock):
                    if inner or branches:
                        raise TypeError(f"{type(block).__name__} blocks cannot run in-block hooks or tap "
                                        f"attention/MLP outputs (only open_clip's ResidualAttentionBlock)")
                    if ctx.tower == "text":
                        ctx.attn_mask = _causal_mask(x.shape[1], x.device).to(x.dtype)
                    x = block(x, attn_mask=ctx.attn_mask)
                    values = {"block": x}
                else:
                    values = self._block(i, block, x, hooks, ctx, keep=branches if i in taps.layers else ())
                    x = values["block"]
                for point in taps.points:
                    if i in slots[point]:
                        keep(point, i, values[point])
        # (N, L, ...) with each layer's tokens contiguous in memory: a consumer that reads one layer
        # at a time (a side network, the head) gets a view, not a copy that autograd would keep
        return {point: out[point].movedim(0, 1) for point in taps.points}

    @staticmethod
    def _block(i: int, block: ResidualAttentionBlock, x: Tensor, hooks: BlockHooks | None,
               ctx: TowerContext, keep=()) -> dict[str, Tensor]:
        """open_clip's block forward, step by step, with the hook points between the steps;
        returns the stream after the block and the branches named in ``keep`` (holding the
        others would keep them alive)."""
        ctx.block = block
        if hooks is not None:
            x = hooks.block_input(i, x, ctx)
        if ctx.tower == "text":
            ctx.attn_mask = _causal_mask(x.shape[1], x.device).to(x.dtype)
        a = block.ls_1(_attend(block, block.ln_1(x), ctx))
        if hooks is not None:
            a = hooks.attn_output(i, a, ctx)
        x = x + a
        kept = {"attn": a} if "attn" in keep else {}
        del a                         # as in open_clip's forward: the branch dies after the add
        if hooks is not None:
            x = hooks.mlp_input(i, x, ctx)
        m = block.ls_2(block.mlp(block.ln_2(x)))
        if hooks is not None:
            m = hooks.mlp_output(i, m, ctx)
        x = x + m
        if "mlp" in keep:
            kept["mlp"] = m
        del m
        if hooks is not None:
            x = hooks.block_output(i, x, ctx)
        return {"block": x, **kept}

    def video_tokens(self, images: Tensor, taps: Taps, *, hooks: BlockHooks | None = None,
                     frames_per_video: int | None = None, frame_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Normalised images (N, 3, S, S) → ``{point: (N, L, 1 + P, Dv)}`` for the tapped blocks,
        lowest first: CLS + patches of the raw residual stream (before ``ln_post``).

        ``frames_per_video`` T and ``frame_mask`` (N // T, T) tell hooks which rows are one
        video and which are padding (all rows are real when no mask is given)."""
        x = self.clip.visual._embeds(images)
        if frame_mask is not None:
            frame_mask = frame_mask.reshape(-1, frames_per_video or frame_mask.shape[-1]).bool()
            frames_per_video = frame_mask.shape[1]
        ctx = TowerContext("video", self.depth, frames_per_video=frames_per_video, frame_mask=frame_mask)
        return self._run(self.video_blocks, x, taps, hooks, ctx)

    def text_tokens(self, ids: Tensor, taps: Taps, *, hooks: BlockHooks | None = None
                    ) -> tuple[dict[str, Tensor], Tensor]:
        """Token ids (B, L) → (``{point: (B, K, L, Dt)}``, mask (B, L) True on real tokens).

        Ids may be cut after the batch's last end-of-text token (see :func:`trim_text_ids`):
        with CLIP's causal mask the kept tokens are exactly what the full-length pass computes."""
        length = ids.shape[1]
        eot = ids.argmax(dim=-1)  # end-of-text has the highest id in CLIP's vocabulary
        mask = torch.arange(length, device=ids.device)[None] <= eot[:, None]
        x = self.clip.token_embedding(ids) + self.clip.positional_embedding[:length]
        ctx = TowerContext("text", len(self.text_blocks), text_mask=mask)
        return self._run(self.text_blocks, x, taps, hooks, ctx), mask

    def describe(self) -> str:
        return f"{self.name} [{self.weights_label}]"
