"""How a method takes part inside the backbone's residual blocks.

The backbone runs every block of a tower as five steps, and a :class:`BlockHooks` module may
change the tokens at each of them::

    x = hooks.block_input(i, x, ctx)        # before attention: insert/replace prompt tokens (VPT, VoP),
                                            # an adapter before attention (ST-Adapter ×2)
    a = attention(ln_1(x))                  # causal mask (text) built here, after any insertion;
                                            # ctx.key_padding_mask hides tokens if a hook set it
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
    given, before any insertion; ``attn_mask`` is the causal mask for the current length.
    ``key_padding_mask`` (N, L), True on tokens attention must ignore, is None unless a hook sets
    it: one that joins the frames of a video into one sequence (VoP) hides padded frames with it.
    ``block`` is the residual block being run (a hook may use its own modules, e.g. ``ln_2``)."""

    tower: str
    depth: int
    frames_per_video: int | None = None
    frame_mask: Tensor | None = None
    text_mask: Tensor | None = None
    attn_mask: Tensor | None = None
    key_padding_mask: Tensor | None = None
    block: nn.Module | None = None
    state: dict = field(default_factory=dict)   # scratch space a hook may use within one pass


@dataclass(frozen=True)
class Taps:
    """Which block outputs a tower hands on: 0-based block ``layers`` (lowest first) and, per
    layer, the ``points`` among :data:`POINTS`. Layer ``-1`` is the tokens entering block 0
    (after the embeddings; ``block`` point only). The R² head reads ``block`` of the last K
    layers; a side network may read every layer (LST, LoSA), or the attention and MLP
    branches (E3VA).

    ``point_layers`` narrows a point to a subset of ``layers`` (points it does not name are
    tapped at every layer), e.g. the branches of every block but the residual stream of the
    last only: ``Taps(range(12), ("attn", "mlp", "block"), {"block": (11,)})``. The tokens of
    a point stack its own layers, lowest first."""

    layers: tuple[int, ...]
    points: tuple[str, ...] = ("block",)
    point_layers: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        object.__setattr__(self, "points", tuple(self.points))
        if not self.layers or any(i < -1 for i in self.layers) or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"tap layers must be distinct, ascending and ≥ -1, got {self.layers}")
        bad = [p for p in self.points if p not in POINTS]
        if bad or not self.points:
            raise ValueError(f"tap points must be among {POINTS}, got {self.points}")
        narrowed = dict(self.point_layers.items() if isinstance(self.point_layers, dict) else self.point_layers)
        narrowed = {p: tuple(int(i) for i in v) for p, v in narrowed.items()}
        for point, layers in narrowed.items():
            if point not in self.points:
                raise ValueError(f"point_layers names '{point}', which is not among the tapped points {self.points}")
            if not layers or list(layers) != sorted(set(layers)) or not set(layers) <= set(self.layers):
                raise ValueError(f"point_layers['{point}'] must be distinct, ascending layers among {self.layers}, "
                                 f"got {layers}")
        object.__setattr__(self, "point_layers", tuple(sorted(narrowed.items())))
        if any(-1 in self.layers_of(p) for p in self.points if p != "block") or (
                -1 in self.layers and ("block" not in self.points or -1 not in self.layers_of("block"))):
            raise ValueError("layer -1 (the embeddings) has only the 'block' point")

    def layers_of(self, point: str) -> tuple[int, ...]:
        """The layers at which ``point`` is tapped, lowest first."""
        return dict(self.point_layers).get(point, self.layers)

    @classmethod
    def last(cls, k: int, depth: int, points: tuple[str, ...] = ("block",)) -> "Taps":
        """The last ``k`` of ``depth`` blocks."""
        if not 1 <= k <= depth:
            raise ValueError(f"cannot tap the last {k} layers of a {depth}-layer backbone")
        return cls(tuple(range(depth - k, depth)), points)

    def describe(self) -> dict:
        out = {"layers": list(self.layers), "points": list(self.points)}
        if self.point_layers:
            out["point_layers"] = {p: list(v) for p, v in self.point_layers}
        return out


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
