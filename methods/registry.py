"""The method registry: a method is one file in ``methods/tuners/`` and one registry line.

The file holds a config dataclass (deriving from :class:`~methods.head.HeadConfig`, so the
shared head's switches stay available; fields are overridable by name, strictly) and a
builder decorated with :func:`register`. The builder receives the frozen
:class:`~methods.backbone.Backbone` and returns a :class:`~methods.model.TransferModel` (see
there for what a method sets: ``backbone_grad``, ``hooks``, ``neck``, taps, parameter
groups). ``category`` is the family the paper's Table 9 puts it in:

* ``frozen`` / ``METL``: no gradient through the backbone (memory-efficient);
* ``full`` / ``PETL``: gradients flow through the backbone (parameter-efficient at best).

The contract test (tests/test_method_contract.py) runs over everything registered.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from r2bench.methods.backbone import Backbone
from r2bench.methods.model import TransferModel

CATEGORIES = ("frozen", "full", "PETL", "METL")
GRADIENT_CATEGORIES = ("full", "PETL")   # gradients flow through the backbone


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
    """Decorator adding a builder ``build(backbone, cfg) -> TransferModel`` to the registry;
    ``label`` is the row name the paper uses."""
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}")

    def wrap(build):
        if name in REGISTRY:
            raise ValueError(f"method '{name}' registered twice")
        REGISTRY[name] = MethodEntry(name, label, category, config, build)
        return build
    return wrap


def get_method(name: str) -> MethodEntry:
    import r2bench.methods.tuners  # noqa: F401  (imports every method file, filling the registry)
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}'; available: {sorted(REGISTRY)}")
    return REGISTRY[name]


def registered() -> list[str]:
    """Names of every registered method, in registration order."""
    import r2bench.methods.tuners  # noqa: F401
    return list(REGISTRY)


def build_model(name: str, backbone: Backbone, overrides: dict | None = None) -> TransferModel:
    """The method ``name`` on ``backbone`` with config ``overrides``."""
    entry = get_method(name)
    model = entry.build(backbone, entry.make_config(overrides))
    if model.backbone_grad != (entry.category in GRADIENT_CATEGORIES):
        raise ValueError(f"method '{name}' is registered as {entry.category} but its model has "
                         f"backbone_grad={model.backbone_grad}")
    return model
