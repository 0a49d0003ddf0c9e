"""Suites are data: a name, the runs (method + overrides) and the renderer of their table.

Table 9 lists every row of the paper in the paper's order; a row whose method is not in the
registry yet is skipped (and named) rather than failed, so adding a method file is enough
to add its row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.run import RunSpec
from reports.tables import table9


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: tuple[RunSpec, ...]
    render: Callable  # render(results_csv, out_dir) -> list[Path]


SUITES: dict[str, Suite] = {
    "table9": Suite(
        name="table9",
        description="Table 9: transfer-learning methods with identical heads and pipelines",
        runs=tuple(RunSpec(m) for m in ("frozen", "full", "lora", "vpt", "vop", "st_adapter",
                                        "e3va", "losa", "lst", "r2_tuning")),
        render=table9.render,
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite '{name}'; available: {sorted(SUITES)}")
    return SUITES[name]
