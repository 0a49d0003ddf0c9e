"""The paper's ablations as suites: R²-Tuning under one changed switch per row.

Row names are those of the layouts in ``reports/tables/ablations.py`` (and
``reports/tables/table6.py``), where each row is matched to the paper's. Every suite runs on
whichever dataset it is given (``--dataset``); run it once per dataset into the same ``--out``
and the table fills the paper's column group of that dataset (QVHighlights columns:
synthetic or qvhighlights; Ego4D columns: ego4d_nlq), labelling the groups not run.
"""
from __future__ import annotations

from r2bench.bench.run import RunSpec
from r2bench.bench.suites.base import Suite

R2 = "r2_tuning"

TABLE5 = Suite(
    name="table5",
    description="Table 5: the video-level and layer-wise calibration losses on and off (four rows)",
    runs=(
        RunSpec(R2, {"video_calibration_weight": 0.0, "layer_calibration_weight": 0.0}, row="w/o L_video, w/o L_layer"),
        RunSpec(R2, {"layer_calibration_weight": 0.0}, row="L_video only"),
        RunSpec(R2, {"video_calibration_weight": 0.0}, row="L_layer only"),
        RunSpec(R2, {}, row="L_video + L_layer"),
    ),
)

TABLE6 = Suite(
    name="table6",
    description="Table 6: MR mAP by query length (buckets of query words; R²-Tuning and w/o Tuning)",
    runs=(RunSpec(R2, {}, row="R²-Tuning"), RunSpec("frozen", {}, row="w/o Tuning")),
)

TABLE10 = Suite(
    name="table10",
    description="Table 10: order of the attention layers in temporal refinement, cross→self vs self→cross",
    runs=(RunSpec(R2, {"attention_order": "self_cross"}, row="self→cross"),
          RunSpec(R2, {"attention_order": "cross_self"}, row="cross→self")),
)

TABLE11 = Suite(
    name="table11",
    description="Table 11: one R² Block shared by all refinement steps vs one block per step",
    runs=(RunSpec(R2, {"shared_block": False}, row="separate blocks"),
          RunSpec(R2, {"shared_block": True}, row="shared block")),
)

TABLE12 = Suite(
    name="table12",
    description="Table 12: 1–4 temporal transformer layers in the R² Block",
    runs=tuple(RunSpec(R2, {"temporal_layers": n}, row=f"{n} layer{'s' if n > 1 else ''}") for n in (1, 2, 3, 4)),
)

# Figure 7: K = 1..4 under each strategy. K = 1 is one architecture under all four strategies
# (the paper says so), so it is one run; the other rows are strategy × K = 2..4.
FIG7_STRATEGIES = {"Single": {"layer_mode": "single"}, "Mean": {"layer_mode": "mean"},
                   "Forward": {"layer_mode": "recurrent", "reverse": False},
                   "Reversed": {"layer_mode": "recurrent", "reverse": True}}
FIG7 = Suite(
    name="fig7",
    description="Figure 7: K = 1…4 under single layer, mean of the last K, recurrent forward and reversed",
    runs=(RunSpec(R2, {"k": 1}, row="K=1 (all strategies)"),
          *(RunSpec(R2, {**overrides, "k": k}, row=f"{strategy} K={k}")
            for strategy, overrides in FIG7_STRATEGIES.items() for k in (2, 3, 4))),
)

ABLATIONS = (TABLE5, TABLE6, TABLE10, TABLE11, TABLE12, FIG7)
