"""The method registry: a method is one file and one registry line.

The file holds a config dataclass (deriving from :class:`~methods.head.HeadConfig`, so the
shared head's switches stay available; fields are overridable by name, strictly) and a
builder decorated with :func:`register`. The builder receives the frozen
:class:`~methods.backbone.Backbone` and returns a :class:`~methods.model.TransferModel` (see
there for what a method sets: ``backbone_grad``, ``hooks``, ``neck``, taps, parameter
groups). ``category`` is the family the paper's Table 9 puts it in:

* ``no-tuning`` / ``METL``: no gradient through the backbone (memory-efficient; ``no-tuning``: no module of its own besides the shared head);
* ``full`` / ``PETL``: gradients flow through the backbone (parameter-efficient at best).

Where methods come from, all through the same :func:`register`:

* the built-in ones, ``methods/tuners/`` (imported when the registry is first read);
* **plugins**: :func:`load_plugin` imports a Python file outside the package (``r2bench
  check-method my_method.py NAME`` does this), and installed distributions may name modules
  in the entry-point group ``r2bench.methods`` (``[project.entry-points."r2bench.methods"]
  my_method = "my_package.my_method"``), imported once, when the registry is first read. A
  broken entry point is a warning, not a crash; a plugin file that cannot be imported is an
  error. A name registered twice is an error naming both sources.

The method contract (:mod:`methods.contract`, run by tests/test_method_contract.py over
everything registered) says what a registered method must satisfy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from r2bench.methods.backbone import Backbone
from r2bench.methods.model import TransferModel

CATEGORIES = ("no-tuning", "full", "PETL", "METL")
GRADIENT_CATEGORIES = ("full", "PETL")   # gradients flow through the backbone
ENTRY_POINT_GROUP = "r2bench.methods"


@dataclass(frozen=True)
class MethodEntry:
    name: str
    label: str                  # the paper's row name
    category: str               # no-tuning | full | PETL | METL
    config_cls: type
    build: Callable[..., TransferModel]
    source: str = ""            # the module (and file) that registered it

    def make_config(self, overrides: dict | None = None):
        """The method's config with ``overrides`` applied; unknown keys are an error naming them."""
        overrides = dict(overrides or {})
        known = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"method '{self.name}' has no config field(s) {unknown}; known: {sorted(known)}")
        return self.config_cls(**overrides)


class PluginError(RuntimeError):
    """A plugin file that cannot be loaded (missing, failing on import, or registering a name
    that exists); the message names the file and the cause."""


REGISTRY: dict[str, MethodEntry] = {}
_loaded = False          # built-in methods and entry-point plugins imported (once, on first read)


def _source_of(build: Callable) -> str:
    module = getattr(build, "__module__", None) or "?"
    path = getattr(sys.modules.get(module), "__file__", None)
    return f"{module} ({path})" if path else module


def register(name: str, *, label: str, category: str, config: type):
    """Decorator adding a builder ``build(backbone, cfg) -> TransferModel`` to the registry;
    ``label`` is the row name the paper uses."""
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}")

    def wrap(build):
        source = _source_of(build)
        if name in REGISTRY:
            raise ValueError(f"method '{name}' is registered twice: first by {REGISTRY[name].source}, "
                             f"again by {source}")
        REGISTRY[name] = MethodEntry(name, label, category, config, build, source)
        return build
    return wrap


# ---- plugins ------------------------------------------------------------------------------------
def _forget(names: list[str]) -> None:
    for name in names:
        REGISTRY.pop(name, None)


PLUGIN_FILES: dict[str, str] = {}     # plugin files loaded in this process -> digest of their bytes


def load_plugin(path: str | Path) -> list[str]:
    """Import the Python file ``path`` as a plugin; its methods register themselves with
    :func:`register` (``from r2bench.methods import register``). Returns the names it added,
    in registration order. A file that is missing or fails on import — registering a name that
    exists included — is a :class:`PluginError` naming it, and registers nothing."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"{path}: no such file")
    _ensure_loaded()                      # so that a clash with a built-in name is seen
    resolved = path.resolve()
    digest = hashlib.blake2b(str(resolved).encode(), digest_size=4).hexdigest()
    module_name = f"r2bench_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    n = 1
    while f"{module_name}_{n}" in sys.modules:   # the same file loaded again gets a fresh module
        n += 1
    module_name = f"{module_name}_{n}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    before = set(REGISTRY)
    sys.modules[module_name] = module     # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    except BaseException as e:
        _forget([n for n in REGISTRY if n not in before])
        sys.modules.pop(module_name, None)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise PluginError(f"{path}: {type(e).__name__}: {e}") from e
    PLUGIN_FILES[str(resolved)] = hashlib.blake2b(resolved.read_bytes(), digest_size=8).hexdigest()
    return [n for n in REGISTRY if n not in before]


def _load_entry_points() -> None:
    """Import every module named in the ``r2bench.methods`` entry-point group; one that fails
    (import error, a name that exists) is a warning and registers nothing."""
    try:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as e:   # a broken installation's metadata must not take the registry down
        warnings.warn(f"r2bench: cannot read the '{ENTRY_POINT_GROUP}' entry points: {e!r}", RuntimeWarning,
                      stacklevel=3)
        return
    for point in points:
        before = set(REGISTRY)
        try:
            point.load()
        except Exception as e:
            _forget([n for n in REGISTRY if n not in before])
            warnings.warn(f"r2bench: the method plugin '{point.name}' ({point.value}, entry point group "
                          f"'{ENTRY_POINT_GROUP}') failed to load and is skipped: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=3)


def _ensure_loaded() -> None:
    """Import the built-in methods, then the installed plugins, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True           # first: a plugin that reads the registry while it loads must not recurse
    try:
        import r2bench.methods.tuners  # noqa: F401  (imports every method file, filling the registry)
    except BaseException:
        _loaded = False
        raise
    _load_entry_points()


# ---- reading the registry -------------------------------------------------------------------------
def get_method(name: str) -> MethodEntry:
    _ensure_loaded()
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}'; available: {sorted(REGISTRY)}")
    return REGISTRY[name]


def registered() -> list[str]:
    """Names of every registered method, in registration order."""
    _ensure_loaded()
    return list(REGISTRY)


def build_model(name: str, backbone: Backbone, overrides: dict | None = None) -> TransferModel:
    """The method ``name`` on ``backbone`` with config ``overrides``."""
    entry = get_method(name)
    model = entry.build(backbone, entry.make_config(overrides))
    if model.backbone_grad != (entry.category in GRADIENT_CATEGORIES):
        raise ValueError(f"method '{name}' is registered as {entry.category} but its model has "
                         f"backbone_grad={model.backbone_grad}")
    return model
