"""Suites, each declared once in this package: its rows, reference, table and figures.

* ``table9``, ``table9x`` (``transfer.py``): the transfer methods of the paper's Table 9, and
  the same with memory-efficient methods the paper lacks;
* ``table5``, ``table6``, ``table10``, ``table11``, ``table12``, ``fig7`` (``ablations.py``):
  the paper's ablations of R²-Tuning;
* ``controls`` (``controls.py``): w/o Tuning beside two heads that cannot do the task;
* ``table1`` … ``table4`` (``datasets.py``): R²-Tuning on each benchmark (real data when given,
  else a synthetic stand-in of the same task).

``SUITES`` is the registry the command line reads; ``ALL`` names every suite in the order
``r2bench run --suite all`` runs them (``ALL_SUITES``). Adding a suite is one declaration here.
"""
from __future__ import annotations

from r2bench.bench.suites.ablations import ABLATIONS
from r2bench.bench.suites.base import Suite
from r2bench.bench.suites.controls import CONTROLS
from r2bench.bench.suites.datasets import DATASET_SUITES, DatasetSuite
from r2bench.bench.suites.transfer import TABLE9, TABLE9X

SUITES: dict[str, Suite] = {s.name: s for s in (TABLE9, TABLE9X, *ABLATIONS, CONTROLS, *DATASET_SUITES)}
ALL = "all"
# what --suite all runs: every suite but table9x, whose first ten rows are table9's (run it by name)
ALL_SUITES = tuple(name for name in SUITES if name != TABLE9X.name)


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite '{name}'; available: {sorted(SUITES)}")
    return SUITES[name]


__all__ = ["ALL", "ALL_SUITES", "SUITES", "DatasetSuite", "Suite", "get_suite"]
