"""Type checks for config dataclasses: every field against its annotation, before anything runs.

``--set head.dropout=abc`` must fail at once, naming the key, not a minute later inside
training. :func:`check_fields` checks each field of a dataclass instance against its type
hint (``int``, ``float``, ``bool``, ``str``, ``None``, unions, ``tuple[T, ...]``, ``Literal``) and
converts what is safe to convert (an ``int`` where a ``float`` is expected; a list where a
tuple is). Written here because the standard library has no runtime checker for dataclass
fields and pydantic would be a dependency for one function.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import lru_cache
from typing import Any, Literal, Union


class FieldTypeError(ValueError):
    """A config field whose value does not fit its type; ``field`` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        return f"a list (each {_describe(args[0])})" if len(args) == 2 and args[1] is Ellipsis else "a list"
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


_NO = object()


def _convert(value, hint):
    """``value`` as ``hint`` demands, or ``_NO``."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            out = _convert(value, arg)
            if out is not _NO:
                return out
        return _NO
    if origin is Literal:
        return value if value in typing.get_args(hint) else _NO
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _NO
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(v, args[0]) for v in value]
        elif args:
            if len(args) != len(value):
                return _NO
            items = [_convert(v, a) for v, a in zip(value, args)]
        else:
            items = list(value)
        return _NO if any(v is _NO for v in items) else tuple(items)
    if hint is type(None):
        return None if value is None else _NO
    if hint is bool:
        return value if isinstance(value, bool) else _NO
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return _NO
        return float(value) if isinstance(value, int) else value
    if hint is str:
        return value if isinstance(value, str) else _NO
    if isinstance(hint, type):
        return value if isinstance(value, hint) else _NO
    return value      # a type this checker does not know: left to the class


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def check_fields(obj, skip: tuple[str, ...] = ()) -> None:
    """Check (and safely convert, in place) every field of the dataclass instance ``obj``;
    raises :class:`FieldTypeError` naming the first field whose value does not fit."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in skip or f.name not in hints:
            continue
        value = getattr(obj, f.name)
        out = _convert(value, hints[f.name])
        if out is _NO:
            raise FieldTypeError(f.name, f"expected {_describe(hints[f.name])}, got {value!r}")
        if out is not value:
            object.__setattr__(obj, f.name, out)


def check_range(name: str, value, low=None, high=None, *, low_open: bool = False, high_open: bool = False) -> None:
    """``low ≤ value ≤ high`` (``<`` where open); a :class:`FieldTypeError` naming ``name`` otherwise."""
    if value is None:
        return
    bad = (low is not None and (value <= low if low_open else value < low)) or \
          (high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '≥'} {low}"
        hi = "" if high is None else f"{'<' if high_open else '≤'} {high}"
        raise FieldTypeError(name, f"expected a value {' and '.join(x for x in (lo, hi) if x)}, got {value!r}")
