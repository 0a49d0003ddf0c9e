"""Table 9: the transfer-learning methods with identical heads and pipelines.

Every row of the paper in the paper's order; a row whose method is not in the registry yet is
skipped (and named) rather than failed, so adding a method file is enough to add its row."""
from __future__ import annotations

from r2bench.bench.run import RunSpec
from r2bench.bench.suites.base import Suite
from r2bench.reports.paper import PAPER_ROW_NAMES

TABLE9_METHODS = ("frozen", "full", "lora", "vpt", "vop", "st_adapter", "e3va", "losa", "lst", "r2_tuning")

TABLE9 = Suite(
    name="table9",
    description="Table 9: transfer-learning methods with identical heads and pipelines",
    runs=tuple(RunSpec(m, row=PAPER_ROW_NAMES[m]) for m in TABLE9_METHODS),
)
