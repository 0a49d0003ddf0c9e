"""A suite is data: its name, what it reproduces, its runs (method + overrides + row name), and
the renderer that turns its ledger into tables and figures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from r2bench.bench.run import RunSpec
from r2bench.reports.render import render as render_suite


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: tuple[RunSpec, ...]
    render: Callable[..., list[Path]] = render_suite   # render(suite_out_dir) -> files written (tables first)

    def __post_init__(self):
        rows = [spec.row_name() for spec in self.runs]
        dup = sorted({r for r in rows if rows.count(r) > 1})
        if dup:
            raise ValueError(f"suite {self.name}: row names {dup} used by more than one run "
                             f"(one row = one configuration)")

    def rows(self) -> list[str]:
        return [spec.row_name() for spec in self.runs]
