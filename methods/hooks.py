"""How a method takes part inside the backbone's residual blocks.

The backbone runs every block of a tower as five steps, and a :class:`BlockHooks` module may
change the tokens at each of them::

    x = hooks.block_input(i, x, ctx)        # before attention: insert/replace prompt tokens (VPT, VoP),
                                            # an adapter before attention (ST-Adapter ×2)
    a = attention(ln_1(x))                  # causal mask (text) built here, after any insertion
    a = hooks.attn_output(i, a, ctx)        # the attention branch (E3VA reads it)
    x = x + a
    x = hooks.mlp_input(i, x, ctx)          # between attention and MLP (ST-Adapter)
    m = mlp(ln_2(x))
    m = hooks.mlp_output(i, m, ctx)         # the MLP branch
    x = x + m
    x = hooks.block_output(i, x, ctx)
    tapped = hooks.tap(i, x, ctx)           # what is handed on for tapped layers (strip prompts here)

Hooks are ``nn.Module``s, so whatever they hold is registered, counted, optimised, saved and
follows ``train()``/``eval()``. A hook acts on the towers named in :attr:`BlockHooks.towers`
only; the defaults change nothing. Methods that only wrap weights (LoRA through peft, full
tuning) need no hooks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

TOWERS = ("video", "text")
POINTS = ("block", "attn", "mlp")   # tap points: residual stream after the block, attention / MLP branch


@dataclass
class TowerContext:
    """What a hook may need to know about the batch running through a tower.

    ``frames_per_video`` and ``frame_mask`` (B, T) describe the video tower's rows: row
    ``b * T + t`` is frame ``t`` of video ``b``; padded frames are False in the mask.
    ``text_mask`` (B, L) marks the text tower's real tokens (start … end of text) of the ids as
    given, before any insertion; ``attn_mask`` is the causal mask for the current length."""

    tower: str
    depth: int
    frames_per_video: int | None = None
    frame_mask: Tensor | None = None
    text_mask: Tensor | None = None
    attn_mask: Tensor | None = None
    state: dict = field(default_factory=dict)   # scratch space a hook may use within one pass


@dataclass(frozen=True)
class Taps:
    """Which block outputs a tower hands on: 0-based block ``layers`` (lowest first) and, per
    layer, the ``points`` among :data:`POINTS`. Layer ``-1`` is the tokens entering block 0
    (after the embeddings; ``block`` point only). The R² head reads ``block`` of the last K
    layers; a side network may read every layer (LST, LoSA), or the attention and MLP
    branches (E3VA)."""

    layers: tuple[int, ...]
    points: tuple[str, ...] = ("block",)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        object.__setattr__(self, "points", tuple(self.points))
        if not self.layers or any(i < -1 for i in self.layers) or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"tap layers must be distinct, ascending and ≥ -1, got {self.layers}")
        bad = [p for p in self.points if p not in POINTS]
        if bad or not self.points:
            raise ValueError(f"tap points must be among {POINTS}, got {self.points}")
        if -1 in self.layers and self.points != ("block",):
            raise ValueError("layer -1 (the embeddings) has only the 'block' point")

    @classmethod
    def last(cls, k: int, depth: int, points: tuple[str, ...] = ("block",)) -> "Taps":
        """The last ``k`` of ``depth`` blocks."""
        if not 1 <= k <= depth:
            raise ValueError(f"cannot tap the last {k} layers of a {depth}-layer backbone")
        return cls(tuple(range(depth - k, depth)), points)

    def describe(self) -> dict:
        return {"layers": list(self.layers), "points": list(self.points)}


class BlockHooks(nn.Module):
    """Base class of a method's in-block hooks; every hook point is the identity."""

    towers: tuple[str, ...] = TOWERS

    def acts_on(self, tower: str) -> bool:
        return tower in self.towers

    def block_input(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        """Residual stream entering block ``index`` (N, L, D); may change L (prompt tokens)."""
        return x

    def attn_output(self, index: int, a: Tensor, ctx: TowerContext) -> Tensor:
        """The attention branch of block ``index``, before it is added to the stream."""
        return a

    def mlp_input(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        """Residual stream between the attention and the MLP of block ``index``."""
        return x

    def mlp_output(self, index: int, m: Tensor, ctx: TowerContext) -> Tensor:
        """The MLP branch of block ``index``, before it is added to the stream."""
        return m

    def block_output(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        """Residual stream leaving block ``index``."""
        return x

    def tap(self, index: int, point: str, x: Tensor, ctx: TowerContext) -> Tensor:
        """The tokens of ``point`` of block ``index`` handed on (strip inserted tokens here)."""
        return x


def overridden(hooks: BlockHooks | None, name: str) -> bool:
    """True when ``hooks`` replaces the identity hook ``name``."""
    return hooks is not None and getattr(type(hooks), name) is not getattr(BlockHooks, name)
