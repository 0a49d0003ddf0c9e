"""Suites are data: a name, the runs (method + overrides + row name) and the renderer of their
tables and figures (``reports.render.render`` reads the suite's ledger).

* ``table9`` (``transfer.py``): the transfer methods of the paper's Table 9;
* ``table5``, ``table6``, ``table10``, ``table11``, ``table12``, ``fig7`` (``ablations.py``):
  the paper's ablations of R²-Tuning;
* ``table1`` … ``table4`` (``datasets.py``): R²-Tuning on each benchmark (real data when given,
  else a synthetic stand-in of the same task).

``SUITES`` is the registry ``run_all.py`` reads; ``ALL`` names every suite in the order
``run_all.py --suite all`` runs them.
"""
from __future__ import annotations

from r2bench.bench.suites.ablations import ABLATIONS
from r2bench.bench.suites.base import Suite
from r2bench.bench.suites.datasets import DATASET_SUITES, DatasetSuite
from r2bench.bench.suites.transfer import TABLE9

SUITES: dict[str, Suite] = {s.name: s for s in (TABLE9, *ABLATIONS, *DATASET_SUITES)}
ALL = "all"


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite '{name}'; available: {sorted(SUITES)}")
    return SUITES[name]


__all__ = ["ALL", "SUITES", "DatasetSuite", "Suite", "get_suite"]
