"""The method protocol and registry.

A method is one file: a config dataclass and a builder decorated with :func:`register`.
The builder receives the frozen :class:`~methods.backbone.Backbone` and returns a
:class:`TransferModel`: the backbone (adapted however the method likes), the shared
:class:`~methods.head.GroundingHead`, and two facts the harness acts on:

* ``backbone_grad`` — gradients flow through the backbone (full tuning, PETL). When False
  (frozen, METL) the backbone runs under ``no_grad`` and, if the method also leaves the
  blocks alone (``hooks is None``), the harness feeds cached per-layer features instead
  of frames. Memory differences come from this flag, not from special cases.
* ``hooks`` — a :class:`~methods.backbone.BlockHooks` through which the method takes part
  in every backbone block (prompts, adapters, side-network taps).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from methods.backbone import Backbone
from methods.model import TransferModel

CATEGORIES = ("frozen", "full", "PETL", "METL")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    label: str                  # the paper's row name
    category: str               # frozen | full | PETL | METL
    config_cls: type
    build: Callable[..., TransferModel]

    def make_config(self, overrides: dict | None = None):
        """The method's config with ``overrides`` applied; unknown keys are an error naming them."""
        overrides = dict(overrides or {})
        known = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"method '{self.name}' has no config field(s) {unknown}; known: {sorted(known)}")
        return self.config_cls(**overrides)


REGISTRY: dict[str, MethodEntry] = {}


def register(name: str, *, label: str, category: str, config: type):
    """Decorator adding a builder ``build(backbone, cfg) -> TransferModel`` to the registry."""
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}")

    def wrap(build):
        if name in REGISTRY:
            raise ValueError(f"method '{name}' registered twice")
        REGISTRY[name] = MethodEntry(name, label, category, config, build)
        return build
    return wrap


def get_method(name: str) -> MethodEntry:
    import methods.tuners  # noqa: F401  (imports every method file, filling the registry)
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}'; available: {sorted(REGISTRY)}")
    return REGISTRY[name]


def build_model(name: str, backbone: Backbone, overrides: dict | None = None) -> TransferModel:
    entry = get_method(name)
    return entry.build(backbone, entry.make_config(overrides))
