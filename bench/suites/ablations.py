"""The paper's ablations as suites: R²-Tuning under one changed switch per row.

Each row declares its method, its config overrides, its label and the paper row it matches.
Every suite runs on whichever dataset it is given (``--dataset``); run it once per dataset into
the same ``--out`` and the table fills the paper's column group of that dataset (QVHighlights
columns: synthetic or qvhighlights; Ego4D columns: ego4d_nlq), labelling the groups not run.

Reference row of every ablation: the paper's R²-Tuning configuration (both calibration
losses, cross→self, one shared block, one temporal layer, K = 4 reversed recurrent). A mark
then says that changing this one switch moved the result by more than query noise.
"""
from __future__ import annotations

from r2bench.bench.run import RunSpec
from r2bench.bench.suites.base import Suite
from r2bench.reports.figures.specs import (AttentionMaps, KLines, LayerSimilarity, LearningCurves, Qualitative,
                                             Tradeoff)
from r2bench.reports.tables.common import Column, Row, TableSpec
from r2bench.reports.tables.table6 import QueryLengthTable

R2 = "r2_tuning"
QVHL_DATASETS = ("synthetic", "qvhighlights")   # our datasets that fill the paper's QVHighlights columns
EGO4D_DATASETS = ("ego4d_nlq",)
REFERENCE_WHY = ("the paper's R²-Tuning configuration; a mark says that changing this one switch moves the "
                 "result by more than query noise.")
PAPER_QVHL = "Paper: QVHighlights val, CLIP ViT-B/32 (R²-Tuning, Table {n})."
PAPER_BOTH = "Paper: QVHighlights val and Ego4D-NLQ val, CLIP ViT-B/32 (R²-Tuning, Table {n})."
SYNTHETIC_NOTE = ("On the built-in synthetic benchmark the QVHL columns hold synthetic-val numbers: "
                  "same metrics, another domain — compare the ordering of rows, not the values.")

FIVE = (
    Column("MR R1@0.5", "MR-full-R1@0.5", "MR-R1@0.5"),
    Column("MR R1@0.7", "MR-full-R1@0.7", "MR-R1@0.7"),
    Column("MR mAP", "MR-full-mAP", "MR-mAP"),
    Column("HD mAP", "HL-min-VeryGood-mAP", "HD-mAP"),
    Column("HD HIT@1", "HL-min-VeryGood-Hit1", "HD-HIT@1"),
)
QVHL_EGO4D = (
    Column("MR R1@0.7", "MR-full-R1@0.7", "QVHL-MR-R1@0.7", group="QVHL"),
    Column("MR mAP", "MR-full-mAP", "QVHL-MR-mAP", group="QVHL"),
    Column("HD mAP", "HL-min-VeryGood-mAP", "QVHL-HD-mAP", group="QVHL"),
    Column("HD HIT@1", "HL-min-VeryGood-Hit1", "QVHL-HD-HIT@1", group="QVHL"),
    Column("MR R1@0.7", "MR-full-R1@0.7", "Ego4D-MR-R1@0.7", group="Ego4D"),
    Column("MR mIoU", "MR-full-mIoU", "Ego4D-MR-mIoU", group="Ego4D"),
)
QVHL_EGO4D_ROLES = {"QVHL": QVHL_DATASETS, "Ego4D": EGO4D_DATASETS}


def _qvhl_ego4d(title: str, n: int, notes: tuple[str, ...] = (), columns=QVHL_EGO4D, **kw) -> TableSpec:
    return TableSpec(title=title, columns=columns, reference_why=REFERENCE_WHY, paper_setting=PAPER_BOTH.format(n=n),
                     roles=QVHL_EGO4D_ROLES, notes=(SYNTHETIC_NOTE, *notes), **kw)


# --------------------------------------------------------------------------- Table 5
TABLE5 = Suite(
    name="table5",
    description="Table 5: the video-level and layer-wise calibration losses on and off (four rows)",
    runs=(
        RunSpec(R2, {"video_calibration_weight": 0.0, "layer_calibration_weight": 0.0}, row="w/o L_video, w/o L_layer",
                paper={"L_video": "no", "L_layer": "no"}),
        RunSpec(R2, {"layer_calibration_weight": 0.0}, row="L_video only", paper={"L_video": "yes", "L_layer": "no"}),
        RunSpec(R2, {"video_calibration_weight": 0.0}, row="L_layer only", paper={"L_video": "no", "L_layer": "yes"}),
        RunSpec(R2, {}, row="L_video + L_layer", paper={"L_video": "yes", "L_layer": "yes"}),
    ),
    table=TableSpec(title="Table 5 — granularity calibration (video-level and layer-wise losses): ours vs paper",
                    columns=FIVE, reference_why=REFERENCE_WHY, paper_table="table5_calibration",
                    paper_setting=PAPER_QVHL.format(n=5), notes=(SYNTHETIC_NOTE,)),
    reference="L_video + L_layer",
    figures=(Tradeoff(), LearningCurves(), LayerSimilarity(), AttentionMaps("L_video + L_layer"),
             Qualitative("L_video + L_layer")),
)

# --------------------------------------------------------------------------- Table 6
TABLE6 = Suite(
    name="table6",
    description="Table 6: MR mAP by query length (buckets of query words; R²-Tuning and w/o Tuning)",
    runs=(RunSpec(R2, {}, row="R²-Tuning", paper={"method": "R2-Tuning"}), RunSpec("frozen", {}, row="w/o Tuning")),
    table=QueryLengthTable(title="Table 6 — MR mAP by query length (words): ours vs paper",
                           columns=(Column("MR mAP", "MR-full-mAP"),), paper_table="table6_query_length",
                           reference_why=("frozen CLIP with the same head: does R²-Tuning's gain hold for short and "
                                          "long queries alike? A mark says the bucket's difference is more than "
                                          "query noise."),
                           paper_setting="Paper: QVHighlights val, CLIP ViT-B/32 (R²-Tuning, Table 6)."),
    reference="w/o Tuning",
    figures=(Tradeoff(), LearningCurves(), AttentionMaps("R²-Tuning"), Qualitative("R²-Tuning")),
)

# --------------------------------------------------------------------------- Tables 10–12
TABLE10 = Suite(
    name="table10",
    description="Table 10: order of the attention layers in temporal refinement, cross→self vs self→cross",
    runs=(RunSpec(R2, {"attention_order": "self_cross"}, row="self→cross", paper={"order": "self->cross"}),
          RunSpec(R2, {"attention_order": "cross_self"}, row="cross→self", paper={"order": "cross->self"})),
    table=_qvhl_ego4d("Table 10 — order of the attention layers in temporal refinement: ours vs paper", 10,
                      paper_table="table10_attention_order"),
    reference="cross→self",
    figures=(Tradeoff(), LearningCurves()),
)

TABLE11 = Suite(
    name="table11",
    description="Table 11: one R² Block shared by all refinement steps vs one block per step",
    runs=(RunSpec(R2, {"shared_block": False}, row="separate blocks", paper={"shared": "no"}),
          RunSpec(R2, {"shared_block": True}, row="shared block", paper={"shared": "yes"})),
    table=_qvhl_ego4d("Table 11 — one shared R² Block (recurrent) vs one block per step: ours vs paper", 11,
                      ("#Params: learnable parameters at the paper's setting (ViT-B/32), in 2^20.",),
                      columns=(Column("#Params (M)", "params_M", kind="size", group="QVHL"),) + QVHL_EGO4D,
                      paper_table="table11_shared_block"),
    reference="shared block",
    figures=(Tradeoff(), LearningCurves()),
)


def _layers(n: int) -> str:
    return f"{n} layer{'s' if n > 1 else ''}"


TABLE12 = Suite(
    name="table12",
    description="Table 12: 1–4 temporal transformer layers in the R² Block",
    runs=tuple(RunSpec(R2, {"temporal_layers": n}, row=_layers(n), paper={"layers": str(n)}) for n in (1, 2, 3, 4)),
    table=_qvhl_ego4d("Table 12 — number of temporal transformer layers in the R² Block: ours vs paper", 12,
                      ("The suite runs 1–4 layers; the paper's rows for 5 and 6 are shown for reference.",),
                      paper_table="table12_temporal_layers",
                      paper_rows=tuple(Row(_layers(n), {"layers": str(n)}) for n in (5, 6))),
    reference="1 layer",
    figures=(Tradeoff(), LearningCurves()),
)

# --------------------------------------------------------------------------- Figure 7
# K = 1..4 under four strategies. At K = 1 the four are one architecture (the paper says so), so
# K = 1 is one run, one row, that starts every line.
STRATEGIES = {"Single": {"layer_mode": "single"}, "Mean": {"layer_mode": "mean"},
              "Forward": {"layer_mode": "recurrent", "reverse": False}, "Reversed": {}}
KS = (1, 2, 3, 4)
K1_ROW = "K=1 (all strategies)"


def fig7_row(strategy: str, k: int) -> str:
    return K1_ROW if k == 1 else f"{strategy} K={k}"


def strategy_of(config: dict) -> str | None:
    """The Figure 7 strategy of a resolved head config (None for K = 1, where all coincide)."""
    if int(config.get("k", 0)) == 1:
        return None
    mode = config.get("layer_mode", "recurrent")
    if mode == "single":
        return "Single"
    if mode == "mean":
        return "Mean"
    return "Reversed" if config.get("reverse", True) else "Forward"


FIG7 = Suite(
    name="fig7",
    description="Figure 7: K = 1…4 under single layer, mean of the last K, recurrent forward and reversed",
    runs=(RunSpec(R2, {"k": 1}, row=K1_ROW),
          *(RunSpec(R2, {**overrides, "k": k}, row=fig7_row(strategy, k))
            for strategy, overrides in STRATEGIES.items() for k in KS[1:])),
    table=TableSpec(title="Figure 7 — feature refinement strategies by K (numbers behind the figure)",
                    columns=(Column("MR R1@0.5", "MR-full-R1@0.5"), Column("MR R1@0.7", "MR-full-R1@0.7"),
                             Column("MR mAP", "MR-full-mAP")),
                    reference_why=REFERENCE_WHY,
                    paper_setting="Paper: Figure 7 gives no numbers (QVHighlights val, MR mAP by K): compare the "
                                  "shape of the lines.",
                    notes=("Single: the K-th last layer only; Mean: the mean of the last K layers; Forward / "
                           "Reversed: recurrent refinement from the K-th last layer to the last, or from the last "
                           "backwards.",)),
    reference=fig7_row("Reversed", 4),
    figures=(Tradeoff(), LearningCurves(), KLines(tuple(STRATEGIES), KS, fig7_row)),
)

ABLATIONS = (TABLE5, TABLE6, TABLE10, TABLE11, TABLE12, FIG7)
