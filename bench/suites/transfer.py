"""Table 9: the transfer-learning methods with identical heads and pipelines; Table 9x: the same
with memory-efficient methods that the paper's table lacks.

Every row of the paper in the paper's order, each matched to its paper row by name; a row whose
method is not registered is skipped (and named) rather than failed. Both suites are
extensible: ``--plugin FILE --methods NAME`` adds a method of one's own as an extra row, after
the paper's, with empty paper cells.

Columns: learnable parameters and peak memory (exact, ``(est.)`` when estimated), memory as a
multiple of R²-Tuning's beside the paper's multiple (Full-Tuning: 58.5 / 10.6 = 5.5×), then the
five metrics with intervals and significance against **w/o Tuning**: every row of Table 9 is a
way of transferring CLIP into the same head, and the question each row answers is whether it
beats not tuning CLIP at all — the cheapest option, with the identical head and pipeline.
(R²-Tuning against each baseline is a different question, answered by the two rows' intervals.)
"""
from __future__ import annotations

from dataclasses import replace

from r2bench.bench.run import RunSpec
from r2bench.bench.suites.base import Suite
from r2bench.reports.figures.specs import AttentionMaps, LearningCurves, Qualitative, Tradeoff
from r2bench.reports.tables.common import Column, RowResult, TableSpec

# (registry name, row label, the paper's row name) in the paper's order
TABLE9_ROWS = (
    ("frozen", "w/o Tuning", "w/o Tuning"),
    ("full", "Full-Tuning", "Full-Tuning"),
    ("lora", "LoRA", "LoRA"),
    ("vpt", "VPT", "VPT"),
    ("vop", "VoP", "VoP"),
    ("st_adapter", "ST-Adapter", "ST-Adapter"),
    ("e3va", "E3VA", "E3VA"),
    ("losa", "LoSA", "LoSA"),
    ("lst", "LST", "LST"),
    ("r2_tuning", "R²-Tuning", "R2-Tuning"),
)
# memory-efficient image-to-video transfer methods the paper's Table 9 lacks (no paper row)
TABLE9X_ROWS = (("side4video", "Side4Video"), ("dist", "DiST"))
TABLE9_METHODS = tuple(m for m, _, _ in TABLE9_ROWS)
REFERENCE = "w/o Tuning"
R2_ROW = "R²-Tuning"


def kind(res: RowResult) -> str:
    """The paper's family for the row, else the category our registry gives it."""
    if res.paper is not None:
        return str(res.paper["kind"])
    return ", ".join(sorted({str(r.get("category")) for r in res.records if r.get("category")}))


TABLE9_TABLE = TableSpec(
    title="Table 9 — transfer methods: ours vs paper",
    columns=(
        Column("#Params (M)", "params_M", "params_M", "size"),
        Column("Memory (GiB)", "memory_gib", "memory_GB", "size"),
        Column("Memory ×R²", "memory_gib", "memory_GB", "ratio"),
        Column("MR R1@0.5", "MR-full-R1@0.5", "MR-R1@0.5"),
        Column("MR R1@0.7", "MR-full-R1@0.7", "MR-R1@0.7"),
        Column("MR mAP", "MR-full-mAP", "MR-mAP"),
        Column("HD mAP", "HL-min-VeryGood-mAP", "HD-mAP"),
        Column("HD HIT@1", "HL-min-VeryGood-Hit1", "HD-HIT@1"),
    ),
    reference_why=("frozen CLIP with the same head: every transfer method should beat not tuning at all; "
                   "a mark says the difference is more than query noise."),
    paper_table="table9_transfer_methods",
    paper_setting=("Paper: QVHighlights val, CLIP ViT-B/32 backbone (R²-Tuning, Table 9); "
                   "paper memory as printed (GB), at 224×224, batch 32, FP16."),
    info=(("Kind", kind),),
    ratio_to=R2_ROW,
    show_missing=False,
)
TABLE9_FIGURES = (Tradeoff(with_paper=True), LearningCurves(), AttentionMaps(R2_ROW), Qualitative(R2_ROW))
_PAPER_RUNS = tuple(RunSpec(m, row=label, paper={"method": paper}) for m, label, paper in TABLE9_ROWS)

TABLE9 = Suite(
    name="table9",
    description="Table 9: transfer-learning methods with identical heads and pipelines",
    runs=_PAPER_RUNS,
    table=TABLE9_TABLE,
    reference=REFERENCE,
    figures=TABLE9_FIGURES,
    extensible=True,
)

TABLE9X = Suite(
    name="table9x",
    description="Table 9, extended: the paper's rows and memory-efficient methods it lacks (Side4Video, DiST)",
    runs=_PAPER_RUNS + tuple(RunSpec(m, row=label) for m, label in TABLE9X_ROWS),
    table=replace(TABLE9_TABLE, title="Table 9x — transfer methods, extended: ours vs paper (rows without "
                                      "paper numbers are not in the paper)"),
    reference=REFERENCE,
    figures=(Tradeoff(with_paper=True), LearningCurves()),
    extensible=True,
)
