"""A suite is declared once, as data: its name, what it reproduces, its rows (each a registered
method, its config overrides, the row's label and the paper row it matches), its reference
row, its table (a :class:`~r2bench.reports.tables.common.TableSpec`) and its figures
(``r2bench.reports.figures.specs``). The runs, the rendered tables, the paper columns, the
figures and the report all follow from this one declaration.

Methods that a suite does not list may join it as extra rows (``r2bench run --suite table9
--plugin my_method.py --methods mine``) when the suite is ``extensible``: they get their own
row, after the declared ones, with empty paper cells.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from r2bench.bench.run import RunSpec
from r2bench.reports.tables.common import Layout, Row, TableSpec


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: tuple[RunSpec, ...]
    table: TableSpec
    reference: str                                 # the row every other row is compared with
    figures: tuple = ()                            # r2bench.reports.figures.specs.FigureSpec objects
    extensible: bool = False                       # methods not listed may join as extra rows

    def __post_init__(self):
        rows = [spec.row_name() for spec in self.runs]
        dup = sorted({r for r in rows if rows.count(r) > 1})
        if dup:
            raise ValueError(f"suite {self.name}: row names {dup} used by more than one run "
                             f"(one row = one configuration)")
        if self.reference not in rows:
            raise ValueError(f"suite {self.name}: reference row {self.reference!r} is not one of its rows {rows}")

    def rows(self) -> list[str]:
        return [spec.row_name() for spec in self.runs]

    def layout(self) -> Layout:
        """The table engine's layout: the suite's rows (with their paper matches) and its table spec."""
        return self.table.layout(self.name, tuple(Row(spec.row_name(), spec.paper) for spec in self.runs),
                                 self.reference)

    def with_methods(self, methods: list[str]) -> "Suite":
        """This suite with a row for each of ``methods`` that it does not list (an extensible
        suite only): the method's default config, its own label, no paper row."""
        listed = {spec.method for spec in self.runs}
        extra = [m for m in dict.fromkeys(methods) if m not in listed]
        if not extra:
            return self
        if not self.extensible:
            raise ValueError(f"--methods {' '.join(extra)}: not a row of suite {self.name} "
                             f"(rows: {', '.join(s.method for s in self.runs)})")
        return replace(self, runs=self.runs + tuple(RunSpec(m) for m in extra))
