"""Transfer methods: the backbone, the shared head, and one file per method in ``methods/tuners/``,
registered in :data:`methods.registry.REGISTRY`.

What a method file (built-in or a plugin) needs is importable from here::

    from r2bench.methods import HeadConfig, LayerTokens, TransferModel, register

The names are imported on first use (PEP 562), so ``import r2bench.methods`` stays light (no
torch, no open_clip) until one of them is asked for.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    # the registry
    "register": "r2bench.methods.registry",
    "get_method": "r2bench.methods.registry",
    "registered": "r2bench.methods.registry",
    "build_model": "r2bench.methods.registry",
    "load_plugin": "r2bench.methods.registry",
    "PluginError": "r2bench.methods.registry",
    # what a builder receives and returns, and what a neck or hooks work with
    "Backbone": "r2bench.methods.backbone",
    "HeadConfig": "r2bench.methods.head",
    "TransferModel": "r2bench.methods.model",
    "LayerTokens": "r2bench.methods.model",
    "ParamGroup": "r2bench.methods.model",
    "BlockHooks": "r2bench.methods.hooks",
    "TowerContext": "r2bench.methods.hooks",
    "Taps": "r2bench.methods.hooks",
    # the method contract
    "check_method": "r2bench.methods.contract",
    "ContractError": "r2bench.methods.contract",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value            # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
