"""The ablation tables (paper Tables 5, 10, 11, 12 and Figure 7's numbers) as layouts for the
table engine. Row names here are the ``RunSpec.row`` names of the suites in
``bench/suites/ablations.py`` (a test checks that both agree).

Reference row of every ablation: the paper's R²-Tuning configuration (both calibration
losses, cross→self, one shared block, one temporal layer, K = 4 reversed recurrent). A mark
then says that changing this one switch moved the result by more than query noise.
"""
from __future__ import annotations

from r2bench.reports.tables.common import Column, Layout, Row

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

TABLE5 = Layout(
    suite="table5",
    title="Table 5 — granularity calibration (video-level and layer-wise losses): ours vs paper",
    rows=(
        Row("w/o L_video, w/o L_layer", {"L_video": "no", "L_layer": "no"}),
        Row("L_video only", {"L_video": "yes", "L_layer": "no"}),
        Row("L_layer only", {"L_video": "no", "L_layer": "yes"}),
        Row("L_video + L_layer", {"L_video": "yes", "L_layer": "yes"}),
    ),
    columns=FIVE,
    reference="L_video + L_layer",
    reference_why=REFERENCE_WHY,
    paper_table="table5_calibration",
    paper_setting=PAPER_QVHL.format(n=5),
    notes=(SYNTHETIC_NOTE,),
)

TABLE10 = Layout(
    suite="table10",
    title="Table 10 — order of the attention layers in temporal refinement: ours vs paper",
    rows=(Row("self→cross", {"order": "self->cross"}), Row("cross→self", {"order": "cross->self"})),
    columns=QVHL_EGO4D,
    reference="cross→self",
    reference_why=REFERENCE_WHY,
    paper_table="table10_attention_order",
    paper_setting=PAPER_BOTH.format(n=10),
    roles=QVHL_EGO4D_ROLES,
    notes=(SYNTHETIC_NOTE,),
)

TABLE11 = Layout(
    suite="table11",
    title="Table 11 — one shared R² Block (recurrent) vs one block per step: ours vs paper",
    rows=(Row("separate blocks", {"shared": "no"}), Row("shared block", {"shared": "yes"})),
    columns=(Column("#Params (M)", "params_M", kind="size", group="QVHL"),) + QVHL_EGO4D,
    reference="shared block",
    reference_why=REFERENCE_WHY,
    paper_table="table11_shared_block",
    paper_setting=PAPER_BOTH.format(n=11),
    roles=QVHL_EGO4D_ROLES,
    notes=(SYNTHETIC_NOTE, "#Params: learnable parameters at the paper's setting (ViT-B/32), in 2^20."),
)

TEMPORAL_LAYERS = (1, 2, 3, 4)
TABLE12 = Layout(
    suite="table12",
    title="Table 12 — number of temporal transformer layers in the R² Block: ours vs paper",
    rows=tuple(Row(f"{n} layer{'s' if n > 1 else ''}", {"layers": str(n)}) for n in (1, 2, 3, 4, 5, 6)),
    columns=QVHL_EGO4D,
    reference="1 layer",
    reference_why=REFERENCE_WHY,
    paper_table="table12_temporal_layers",
    paper_setting=PAPER_BOTH.format(n=12),
    roles=QVHL_EGO4D_ROLES,
    notes=(SYNTHETIC_NOTE, "The suite runs 1–4 layers; the paper's rows for 5 and 6 are shown for reference."),
)

# Figure 7: K = 1..4 under four strategies. At K = 1 all four are the same architecture (the
# paper says so), so K = 1 is one row that starts every line.
STRATEGIES = ("Single", "Mean", "Forward", "Reversed")
STRATEGY_OVERRIDES = {"Single": {"layer_mode": "single"}, "Mean": {"layer_mode": "mean"},
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


FIG7 = Layout(
    suite="fig7",
    title="Figure 7 — feature refinement strategies by K (numbers behind the figure)",
    rows=(Row(K1_ROW),) + tuple(Row(fig7_row(s, k)) for s in STRATEGIES for k in KS[1:]),
    columns=(Column("MR R1@0.5", "MR-full-R1@0.5"), Column("MR R1@0.7", "MR-full-R1@0.7"),
             Column("MR mAP", "MR-full-mAP")),
    reference=fig7_row("Reversed", 4),
    reference_why=REFERENCE_WHY,
    paper_setting="Paper: Figure 7 gives no numbers (QVHighlights val, MR mAP by K): compare the shape of the lines.",
    notes=("Single: the K-th last layer only; Mean: the mean of the last K layers; Forward / Reversed: "
           "recurrent refinement from the K-th last layer to the last, or from the last backwards.",),
)

LAYOUTS = {layout.suite: layout for layout in (TABLE5, TABLE10, TABLE11, TABLE12, FIG7)}
