"""R²-Bench: image-to-video transfer learning for video temporal grounding.

Everything is importable under this one namespace: ``r2bench.methods`` (backbone, shared
head, transfer methods and their registry), ``r2bench.datasets`` (dataset specs, readers,
the built-in benchmark), ``r2bench.bench`` (training, runs, metrics, suites), ``r2bench.reports``
(tables, figures, the report) and ``r2bench.core`` (helpers every layer uses).

In a source checkout the four packages live in the repository's top-level folders
(``methods/``, ``bench/``, ``datasets/``, ``reports/``); this package's path then includes the
repository root, so ``r2bench.methods`` is ``<checkout>/methods``. An installed wheel holds them
under ``r2bench/`` itself, and only the ``r2bench`` name is installed.
"""
from __future__ import annotations

import os as _os

__version__ = "0.2.0"

_here = _os.path.dirname(_os.path.abspath(__file__))
_checkout = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "methods")) and _os.path.isfile(_os.path.join(_checkout, "methods", "registry.py")):
    __path__.append(_checkout)   # noqa: F821  (a source checkout: the packages sit beside this folder)
