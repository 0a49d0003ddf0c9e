"""The built-in benchmark's controls: w/o Tuning beside two heads that cannot do the task.

* ``control_shuffled_queries``: each sample reads the query of another sample of its batch, in
  training and evaluation — what MR mAP gives a model that never sees its own query;
* ``control_mean_frame``: one mean frame for the whole video — what it gives without time.

Both must come out below w/o Tuning beyond noise. The shuffled-query control measures how much
of the metric the query decides: on a benchmark where queries matter it scores far below
w/o Tuning (docs/benchmark.md states the target and what the benchmark measures).
"""
from __future__ import annotations

from r2bench.bench.run import RunSpec
from r2bench.bench.suites.ablations import FIVE
from r2bench.bench.suites.base import Suite
from r2bench.reports.figures.specs import LearningCurves
from r2bench.reports.tables.common import TableSpec

REFERENCE = "w/o Tuning"

CONTROLS = Suite(
    name="controls",
    description="Controls of the built-in benchmark: w/o Tuning, a head that never sees its own query, one "
                "that sees one mean frame",
    runs=(RunSpec("frozen", row=REFERENCE), RunSpec("control_shuffled_queries", row="Shuffled queries"),
          RunSpec("control_mean_frame", row="Mean frame")),
    table=TableSpec(title="Controls — what the metric gives a model without its query, or without time",
                    columns=FIVE, reference_why=("frozen CLIP with the shared head; each control destroys one "
                                                 "input and must score below it beyond noise."),
                    notes=("Shuffled queries: each sample reads another sample's query (training and evaluation); "
                           "its MR mAP over w/o Tuning's is the share of the metric that does not depend on the "
                           "query. Mean frame: one mean frame for the whole video.",)),
    reference=REFERENCE,
    figures=(LearningCurves(),),
)
