"""Every suite's run list: its rows, their overrides, the paper rows its table shows; and the
run_all plan an ablation suite makes."""
import argparse
import dataclasses

import pytest
import torch

from r2bench.bench.run import RunSpec
from r2bench.bench.suites import ALL, SUITES, Suite, get_suite
from r2bench.methods.registry import get_method
from r2bench.bench.suites import ablations
from r2bench.reports.tables.common import Column, TableSpec, build_table

R2 = "r2_tuning"


def runs(name):
    return [(s.method, s.overrides, s.row) for s in get_suite(name).runs]


def test_registry_holds_every_suite_of_the_paper():
    assert set(SUITES) == {"table9", "table9x", "controls", "table5", "table6", "table10", "table11", "table12", "fig7",
                           "table1", "table2", "table3", "table4"}
    assert ALL not in SUITES
    with pytest.raises(KeyError, match="unknown suite 'table99'"):
        get_suite("table99")


def test_table5_toggles_the_two_calibration_losses():
    assert runs("table5") == [
        (R2, {"video_calibration_weight": 0.0, "layer_calibration_weight": 0.0}, "w/o L_video, w/o L_layer"),
        (R2, {"layer_calibration_weight": 0.0}, "L_video only"),
        (R2, {"video_calibration_weight": 0.0}, "L_layer only"),
        (R2, {}, "L_video + L_layer"),
    ]


def test_table6_table10_table11_table12_rows_and_overrides():
    assert runs("table6") == [(R2, {}, "R²-Tuning"), ("frozen", {}, "w/o Tuning")]
    assert runs("table10") == [(R2, {"attention_order": "self_cross"}, "self→cross"),
                               (R2, {"attention_order": "cross_self"}, "cross→self")]
    assert runs("table11") == [(R2, {"shared_block": False}, "separate blocks"),
                               (R2, {"shared_block": True}, "shared block")]
    assert runs("table12") == [(R2, {"temporal_layers": n}, f"{n} layer{'s' * (n > 1)}") for n in (1, 2, 3, 4)]


def test_fig7_runs_k1_once_and_every_strategy_for_k_2_to_4():
    plan = runs("fig7")
    assert len(plan) == 13 and plan[0] == (R2, {"k": 1}, "K=1 (all strategies)")
    entry = get_method(R2)
    seen = set()
    for method, overrides, row in plan[1:]:
        cfg = dataclasses.asdict(entry.make_config(overrides))
        strategy, k = row.split(" K=")
        assert ablations.strategy_of(cfg) == strategy and cfg["k"] == int(k)
        seen.add((strategy, int(k)))
    assert seen == {(s, k) for s in ablations.STRATEGIES for k in (2, 3, 4)}
    # K = 1 is one architecture whatever the strategy: its config reads a single layer once
    k1 = entry.make_config(plan[0][1])
    assert k1.k == 1 and k1.steps == 1


def test_table9_lists_the_papers_methods_in_order():
    assert [s.method for s in get_suite("table9").runs] == ["frozen", "full", "lora", "vpt", "vop", "st_adapter",
                                                           "e3va", "losa", "lst", "r2_tuning"]
    assert get_suite("table9").rows() == [r.name for r in get_suite("table9").layout().rows]
    assert get_suite("table9").rows()[-1] == "R²-Tuning"      # the method's label, as in every figure
    assert get_suite("table9x").rows()[:10] == get_suite("table9").rows()
    assert [s.paper for s in get_suite("table9x").runs[10:]] == [None, None]   # not in the paper


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_rows_are_rows_of_its_table_and_overrides_are_config_fields(name):
    suite = get_suite(name)
    layout = suite.layout()
    declared = [r.name for r in layout.rows]
    assert set(suite.rows()) <= set(declared), f"{name}: rows {set(suite.rows()) - set(declared)} not in the table"
    assert layout.reference in suite.rows()
    for spec in suite.runs:
        try:
            get_method(spec.method).make_config(spec.overrides)   # unknown fields raise
        except KeyError:
            assert name == "table9x"  # a method not registered is skipped (and named) by the plan


@pytest.mark.parametrize("name, row, column, paper", [
    ("table5", "L_video only", "MR mAP", 46.74),
    ("table5", "w/o L_video, w/o L_layer", "HD HIT@1", 62.67),
    ("table10", "self→cross", "MR mAP", 45.21),
    ("table11", "separate blocks", "HD HIT@1", 65.42),
    ("table12", "4 layers", "MR mAP", 47.81),
    ("table12", "6 layers", "MR R1@0.7", 51.16),
    ("table9", "Full-Tuning", "Memory (GiB)", 58.5),
])
def test_tables_show_the_papers_rows(name, row, column, paper):
    table = build_table([], dataclasses.replace(get_suite(name).layout(), show_missing=True))
    res = next(r for r in table.rows if r.name == row)
    block = next(b for b, blk in enumerate(table.blocks) if any(c.label == column for c in blk.columns))
    assert res.cells[(block, column)].paper == paper and res.status == "not run"


def test_ego4d_columns_are_labelled_not_run_without_ego4d_runs():
    table = build_table([], get_suite("table10").layout())
    groups = [(b.group, b.dataset) for b in table.blocks]
    assert groups == [("QVHL", None), ("Ego4D", None)]
    assert any("Ego4D columns: not run (no runs on ego4d_nlq" in line for line in table.setting)
    res = table.rows[0]
    assert res.cells[(1, "MR mIoU")].text == "not run" and res.cells[(1, "MR mIoU")].paper == 4.75


def test_fig7_and_table6_layouts():
    fig7 = get_suite("fig7").layout()
    assert fig7.paper_table is None and fig7.reference == "Reversed K=4"
    assert [r.name for r in fig7.rows] == [s.row for s in get_suite("fig7").runs]
    assert get_suite("table6").layout().reference == "w/o Tuning"


def test_a_suite_refuses_one_row_name_for_two_runs():
    with pytest.raises(ValueError, match=r"row names \['x'\] used by more than one run"):
        Suite("bad", "", (RunSpec(R2, {"k": 1}, row="x"), RunSpec(R2, {"k": 2}, row="x")),
              TableSpec("t", (Column("MR mAP", "MR-full-mAP"),), ""), reference="x")


def test_run_all_plans_every_row_and_seed_of_an_ablation_suite(tmp_path):
    from r2bench import cli
    from r2bench.bench import orchestrate
    from r2bench.datasets.registry import DatasetSpec, Preset
    for split in ("train", "val"):
        (tmp_path / f"{split}.jsonl").write_text("")
    dataset = DatasetSpec(name="synthetic", title="Synthetic", format="qvhighlights", metric="qvhighlights",
                          tasks={"mr", "hd"}, fps=0.5, clip_seconds=2.0,
                          annotation_files={s: f"{s}.jsonl" for s in ("train", "val")},
                          preset=Preset(train=dict(epochs=1), head=dict(dropout=0.1))).bind(tmp_path, tmp_path)
    args = argparse.Namespace(methods=None, seeds=[0, 1], epochs=None, paper_scale=False, quiet=True, fresh=False,
                              run_id=None)
    plan = orchestrate.plan_runs(get_suite("fig7"), args, dataset, "R2Bench-Tiny", None, torch.device("cpu"), tmp_path)
    assert len(plan) == 26 and len({run_id for _, _, run_id in plan}) == 26
    assert {spec.row for spec, ctx, _ in plan if ctx.seed == 1} == {s.row for s in get_suite("fig7").runs}


def test_run_all_suite_all_and_report_flags():
    from r2bench import cli
    from r2bench.bench import orchestrate
    assert cli.parse_run_args(["--suite", "all"]).suite == ALL
    assert cli.parse_run_args(["--report"]).suite is None and cli.parse_run_args(["--report"]).report
    assert cli.parse_run_args([]).suite == "table9"


def test_run_all_report_alone_runs_nothing_and_writes_the_report(tmp_path):
    from r2bench import cli
    from r2bench.bench import orchestrate
    from tests.reports_fixtures import SuiteDir, vectors
    s = SuiteDir(tmp_path / "out" / "table5", "table5")
    s.add("L_video only", values=vectors(12), dataset="toy")   # no frames for "toy": no model figures
    assert cli.run_main(["--report", "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Suite table5" in text and not (tmp_path / "out" / "table9").exists()
    assert cli.run_main(["--report", "--out", str(tmp_path / "nowhere")]) == 2


def test_run_all_suite_all_runs_every_suite_then_writes_the_report(tmp_path, monkeypatch):
    from r2bench import cli
    from r2bench.bench import orchestrate
    ran = []
    monkeypatch.setattr(orchestrate, "plan_suite", lambda suite, args, device: orchestrate.SuitePlan(suite, args.out, []))
    monkeypatch.setattr(orchestrate, "execute_plan", lambda plan, args: ran.append(plan.suite.name) or {})
    monkeypatch.setattr(orchestrate, "render_plan", lambda plan, args, outcome: 0)
    (tmp_path / "out").mkdir()
    assert cli.run_main(["--suite", "all", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    from r2bench.bench.suites import ALL_SUITES
    assert ran == list(ALL_SUITES) and ran[0] == "table9" and "table9x" not in ran
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "report.md").is_file()
