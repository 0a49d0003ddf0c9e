"""The table engine and the Table 9 renderer, from small hand-made ledgers with per-query values."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from r2bench.core.errors import InputError
from r2bench.reports import records as rec
from r2bench.reports.paper import paper_table
from r2bench.reports.tables import common
from r2bench.reports.tables.common import TableError, build_table
from r2bench.bench.suites import get_suite
from tests.reports_fixtures import SuiteDir, table9_build, table9_render, vectors

N = 30  # queries per run: small enough for fast resampling, large enough for a detectable shift


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    """2,000 resamples instead of 10,000: the same tests, a fifth of the time."""
    monkeypatch.setattr(common, "N_RESAMPLES", 2000)


def md_row(text, name):
    """Cells of the Markdown row whose first cell is ``name``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r}")


@pytest.fixture
def suite(tmp_path):
    s = SuiteDir(tmp_path / "table9", "table9")
    s.add("w/o Tuning", "frozen", values=vectors(N), category="no-tuning", memory_gib=4.0, params_M=2.7)
    s.add("R²-Tuning", "r2_tuning", values=vectors(N, shift=8.0), memory_gib=10.0, params_M=2.77,
          memory_source="cuda")
    s.add("Full-Tuning", "full", values=vectors(N), category="full", memory_gib=55.0, params_M=147.0)
    s.add("LoRA", "lora", status="failed", error="CUDA out of memory | at step 3", category="PETL")
    return s


def test_paper_table_rows_match_registry_mapping():
    paper = paper_table("table9_transfer_methods")
    from r2bench.bench.suites import get_suite
    assert list(paper["method"]) == [spec.paper["method"] for spec in get_suite("table9").runs]
    assert paper.set_index("method").loc["R2-Tuning", "MR-R1@0.5"] == 68.71
    with pytest.raises(FileNotFoundError, match="table9_transfer_methods"):
        paper_table("no_such_table")


def test_table9_files_ours_beside_paper_in_paper_order(suite, tmp_path):
    paths = table9_render(suite.root, tmp_path / "out")
    assert [p.name for p in paths] == ["table9.md", "table9.tex", "table9.csv"]
    md = paths[0].read_text()
    r2 = md_row(md, "R²-Tuning")
    # Row, Kind, params ours|paper, memory ours|paper, memory ×R² ours|paper, R1@0.5 ours|paper
    assert r2[:8] == ["R²-Tuning", "METL", "2.77", "2.7", "10.0", "10.6", "1.0×", "1.0×"]
    assert r2[9] == "68.71"
    assert md.index("| w/o Tuning") < md.index("| Full-Tuning") < md.index("| LoRA") < md.index("| R²-Tuning")
    assert "| VPT" not in md                              # not run, not listed by default
    assert "QVHighlights val" in md and "dataset synthetic (version v1)" in md and "tiny.safetensors#00aa" in md


def test_memory_ratio_to_r2_beside_the_papers_and_estimate_marker(suite, tmp_path):
    md = table9_render(suite.root, tmp_path)[0].read_text()
    full = md_row(md, "Full-Tuning")
    assert full[4:8] == ["55.0 (est.)", "58.5", "5.5×", "5.5×"]   # 55/10 ours; 58.5/10.6 paper
    assert md_row(md, "w/o Tuning")[4:8] == ["4.00 (est.)", "4.3", "0.4×", "0.4×"]
    assert "(est.)" not in md_row(md, "R²-Tuning")[4]             # measured on CUDA


def test_failed_row_keeps_its_reason_and_paper_values(suite, tmp_path):
    md = table9_render(suite.root, tmp_path)[0].read_text()
    lora = md_row(md, "LoRA")
    assert lora[8] == "–" and lora[9] == "63.70"
    assert "failed: CUDA out of memory \\| at step 3" in lora[-1]


def test_one_seed_cells_show_a_bootstrap_interval_and_marks_only_real_differences(suite, tmp_path):
    frame = pd.read_csv(table9_render(suite.root, tmp_path)[2]).set_index("Row")
    r2, frozen, full = frame.loc["R²-Tuning"], frame.loc["w/o Tuning"], frame.loc["Full-Tuning"]
    base = np.mean(vectors(N)["MR-full-mAP"])
    assert r2["MR mAP ours"] == pytest.approx(base + 8.0)
    assert r2["MR mAP ours low"] < r2["MR mAP ours"] < r2["MR mAP ours high"]
    assert r2["MR mAP ours text"] == f"{base + 8:.2f} [{r2['MR mAP ours low']:.2f}, {r2['MR mAP ours high']:.2f}]†"
    assert bool(r2["MR mAP ours significant"]) and r2["MR mAP ours p_holm"] < 0.05
    assert r2["MR mAP ours seed variance"] == "not counted"    # one seed: a per-query mark, not a method mark
    # identical per-query values to the reference: no mark, p = 1
    assert not bool(full["MR mAP ours significant"]) and full["MR mAP ours p_holm"] == 1.0
    assert not full["MR mAP ours text"].endswith(("*", "†"))
    # the reference row itself is never marked
    assert not bool(frozen["MR mAP ours significant"]) and "reference row" in frozen["note"]


def test_several_seeds_show_mean_pm_std(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    s.add("w/o Tuning", "frozen", values=vectors(N), category="no-tuning")
    for seed in (0, 1, 2):
        s.add("R²-Tuning", "r2_tuning", seed=seed, values=vectors(N, shift=1.0 + seed))
    table = table9_build(rec.load_records(s.root))
    row = next(r for r in table.rows if r.name == "R²-Tuning")
    cell = row.cells[(0, "MR mAP")]
    heads = [np.mean(vectors(N)["MR-full-mAP"]) + 1 + seed for seed in (0, 1, 2)]
    assert cell.spread == "seed std" and cell.n_seeds == 3
    assert cell.mean == pytest.approx(np.mean(heads)) and cell.std == pytest.approx(np.std(heads, ddof=1))
    assert cell.text.startswith(f"{np.mean(heads):.2f} ± {np.std(heads, ddof=1):.2f}")
    assert "seeds 0,1,2" in row.note


def test_with_several_seeds_on_both_rows_the_mark_is_a_method_mark(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    for seed in (0, 1, 2):
        s.add("w/o Tuning", "frozen", seed=seed, values=vectors(N, shift=0.1 * seed), category="no-tuning")
        s.add("R²-Tuning", "r2_tuning", seed=seed, values=vectors(N, shift=8.0 + 0.1 * seed))
        s.add("Full-Tuning", "full", seed=seed, values=vectors(N, shift=[0.3, -0.5, 0.4][seed]), category="full")
    table = table9_build(rec.load_records(s.root))
    cells = {r.name: r.cells[(0, "MR mAP")] for r in table.rows}
    assert cells["R²-Tuning"].significant and cells["R²-Tuning"].seed_variance == "measured"
    assert cells["R²-Tuning"].text.endswith("*")
    # a seed spread as large as its difference: not a method difference
    assert not cells["Full-Tuning"].significant and not cells["Full-Tuning"].text.endswith(("*", "†"))


def test_without_per_query_values_a_cell_has_no_interval_and_says_so(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    s.add("w/o Tuning", "frozen", values=vectors(N), category="no-tuning", per_query=False)
    s.add("R²-Tuning", "r2_tuning", values=vectors(N, shift=5), per_query=False)
    table = table9_build(rec.load_records(s.root))
    row = next(r for r in table.rows if r.name == "R²-Tuning")
    assert row.cells[(0, "MR mAP")].text == f"{np.mean(vectors(N, shift=5)['MR-full-mAP']):.2f}"
    assert row.cells[(0, "MR mAP")].spread == "" and "no per-query values: no interval, no test" in row.note


def test_per_query_path_relative_to_the_suite_folder_or_beside_the_predictions(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    relative = s.add("w/o Tuning", "frozen", values=vectors(N), relative=True)
    beside = s.add("R²-Tuning", "r2_tuning", values=vectors(N, shift=3))
    del beside["per_query"]
    s.write()
    loaded = {r["row"]: r for r in rec.load_records(s.root)}
    assert rec.per_query_path(loaded["w/o Tuning"]) == s.root / relative["per_query"]
    assert rec.per_query_path(loaded["R²-Tuning"]).name == "per_query.csv"
    assert list(rec.per_query(loaded["R²-Tuning"]).index[:3]) == ["0", "1", "2"]


def test_rows_scored_on_other_queries_are_not_compared(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    s.add("w/o Tuning", "frozen", values=vectors(N))
    s.add("R²-Tuning", "r2_tuning", values=vectors(N, shift=9), qids=range(100, 100 + N))
    row = next(r for r in table9_build(rec.load_records(s.root)).rows if r.name == "R²-Tuning")
    assert "scored on other queries than the reference: not compared" in row.note
    assert not row.cells[(0, "MR mAP")].significant and row.cells[(0, "MR mAP")].spread == "bootstrap"


def test_two_configurations_under_one_row_name_are_refused(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    s.add("w/o Tuning", "frozen", values=vectors(N))
    s.add("R²-Tuning", "r2_tuning", seed=0, values=vectors(N), config={"k": 4})
    s.add("R²-Tuning", "r2_tuning", seed=1, values=vectors(N), config={"k": 2})
    with pytest.raises(TableError, match=r"row 'R²-Tuning': runs differ in config \(k\).*refusing to pool"):
        table9_render(s.root, tmp_path)
    from r2bench.reports.__main__ import main as report_main
    assert report_main([str(s.root), "--no-figures"]) == 1          # the report says which suite it refused


def test_random_init_warning_only_where_a_random_init_run_has_metrics(tmp_path):
    s = SuiteDir(tmp_path / "a", "table9")
    s.add("R²-Tuning", "r2_tuning", values=vectors(N), weights="random-init")
    md, tex, _ = (p.read_text() for p in table9_render(s.root, tmp_path / "a"))
    assert "**WARNING: randomly initialised backbone — metrics not comparable to the paper.**" in md
    assert r"\textbf{WARNING: randomly initialised backbone --- metrics not comparable" in tex
    clean = SuiteDir(tmp_path / "b", "table9")
    clean.add("R²-Tuning", "r2_tuning", values=vectors(N))
    assert "randomly initialised" not in table9_render(clean.root, tmp_path / "b")[0].read_text()
    sized = SuiteDir(tmp_path / "c", "table9")   # --paper-scale: params and memory only
    sized.add("R²-Tuning", "r2_tuning", weights="random-init", dataset="paper-scale")
    md = table9_render(sized.root, tmp_path / "c")[0].read_text()
    assert "randomly initialised" not in md and md_row(md, "R²-Tuning")[2] == "2.70"


def test_latex_looks_compilable(suite, tmp_path):
    tex = table9_render(suite.root, tmp_path)[1].read_text()
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex and r"\begin{table}" in tex
    assert tex.count("{") == tex.count("}")
    assert r"\#Params" in tex and r"R\textsuperscript{2}-Tuning" in tex and "est.)" in tex and r"$\times$" in tex
    body = [line for line in tex.splitlines() if line.startswith((r"R\textsuperscript{2}-Tuning", "LoRA", "w/o", "Full"))]
    assert len(body) == 4 and all(line.count("&") == 18 and line.endswith(r"\\") for line in body)


def test_include_missing_and_rows_the_paper_lacks(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    s.add("R²-Tuning", "r2_tuning", values=vectors(N))
    s.add("My Method", "extra", values=vectors(N), category="PETL")
    md = table9_render(s.root, tmp_path, include_missing=True)[0].read_text()
    vpt = md_row(md, "VPT")
    assert vpt[2] == "–" and vpt[3] == "2.8" and "not run" in vpt[-1]
    assert md_row(md, "My Method")[1] == "PETL" and md_row(md, "My Method")[3] == "–"
    assert md.index("| R²-Tuning") < md.index("| My Method")


def test_corrupt_ledger_line_is_an_input_error(tmp_path):
    (tmp_path / "ledger.jsonl").write_text(json.dumps({"run_id": "a", "method": "x", "status": "ok"}) + "\n{oops\n")
    with pytest.raises(InputError, match=r"ledger.jsonl:2: corrupt ledger line"):
        table9_render(tmp_path, tmp_path)
    (tmp_path / "ledger.jsonl").write_text(json.dumps({"run_id": "a", "status": "ok"}) + "\n")
    with pytest.raises(InputError, match=r"ledger.jsonl:1: field 'method'"):
        rec.load_records(tmp_path)


def test_bad_per_query_file_is_an_input_error(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    r = s.add("R²-Tuning", "r2_tuning", values=vectors(3))
    pd.DataFrame({"qid": [1, 1], "MR-full-mAP": [1.0, 2.0]}).to_csv(r["per_query"], index=False)
    with pytest.raises(InputError, match=r"per_query.csv:3: field 'qid': qid '1' appears more than once"):
        rec.per_query(rec.load_records(s.root)[0])


def test_main_writes_and_reports_errors(suite, tmp_path, capsys):
    from r2bench.reports.__main__ import main as report_main
    assert report_main([str(suite.root), "--no-figures"]) == 0
    assert (suite.root / "table9.tex").is_file() and "report.md" in capsys.readouterr().out
    assert report_main([str(tmp_path / "nowhere")]) == 2
    assert "no such output folder" in capsys.readouterr().err


def test_holm_runs_over_the_rows_of_one_metric(tmp_path):
    """The table's p-values are Holm-adjusted over its non-reference rows, per metric."""
    s = SuiteDir(tmp_path / "t9", "table9")
    s.add("w/o Tuning", "frozen", values=vectors(N))
    s.add("R²-Tuning", "r2_tuning", values=vectors(N, shift=0.5, seed=5))
    s.add("Full-Tuning", "full", values=vectors(N, shift=0.5, seed=6))
    table = table9_build(rec.load_records(s.root))
    from r2bench.reports import stats
    raw = [stats.paired_test(pd.Series(vectors(N, 0.5, seed)["MR-full-mAP"]), pd.Series(vectors(N)["MR-full-mAP"]),
                             n_resamples=common.N_RESAMPLES).p_value for seed in (6, 5)]
    got = {r.name: r.cells[(0, "MR mAP")].p_holm for r in table.rows}
    assert [got["Full-Tuning"], got["R²-Tuning"]] == pytest.approx(list(stats.holm(raw)))
    assert math.isnan(got["w/o Tuning"])


# ---------------------------------------------------------------- Table 6: MR mAP by query length

def test_length_buckets_hold_about_equal_numbers_of_queries():
    from r2bench.reports.tables.table6 import bucket_of, label, length_buckets
    lengths = [2] * 10 + [3] * 10 + [4] * 10 + [6] * 10 + [9] * 9 + [13]
    buckets = length_buckets(lengths)
    assert buckets == ((2, 2), (3, 3), (4, 4), (6, 6), (9, 13))   # a 1-query tail joins the last bucket
    assert [bucket_of(w, buckets) for w in (2, 5, 13)] == [0, None, 4]
    assert label(2, 2) == "2 words" and label(9, 13) == "9–13 words" and label(41, None) == "41+ words"
    assert length_buckets([]) == ()


def test_table6_buckets_our_queries_and_marks_a_bucket_where_the_rows_differ(tmp_path):
    from r2bench.reports.tables import table6
    n = 40
    texts = ["red circle"] * 20 + ["a small red circle moving left in the upper half"] * 20   # 2 and 10 words
    shift = np.r_[np.zeros(20), np.full(20, 30.0)]          # R² better on the long queries only
    base = vectors(n)["MR-full-mAP"]
    s = SuiteDir(tmp_path / "t6", "table6")
    s.add("w/o Tuning", "frozen", values={"MR-full-mAP": base}, query_texts=texts)
    s.add("R²-Tuning", "r2_tuning", values={"MR-full-mAP": base + shift}, query_texts=texts)
    (table,) = table6.build(rec.load_records(s.root), get_suite("table6").layout())
    assert [c.label for c in table.blocks[0].columns] == ["2 words", "10 words"]
    r2 = next(r for r in table.rows if r.name == "R²-Tuning")
    short, long_ = r2.cells[(0, "2 words")], r2.cells[(0, "10 words")]
    assert short.mean == pytest.approx(base[:20].mean()) and not short.significant
    assert long_.mean == pytest.approx(base[20:].mean() + 30) and long_.significant and long_.n_queries == 20
    assert any("Queries per bucket: 2 words: 20, 10 words: 20" in line and "differ from the paper's" in line
               for line in table.setting)
    assert any("R2-Tuning 47.08 / 49.13 / 28.79 / 67.24 / 72.38" in line for line in table.footer)
    from r2bench.reports.render import render_suite
    paths = render_suite(s.root, tmp_path / "out", suite=get_suite("table6"), figures=False).table_files
    assert [p.name for p in paths][:3] == ["table6.md", "table6.tex", "table6.csv"]
    # the built-in benchmark's per-family breakdown follows the table (docs/benchmark.md)
    assert {p.name for p in paths[3:]} <= {"table6_breakdown.md", "table6_breakdown.tex", "table6_breakdown.csv",
                                          "breakdown.csv"}


def test_table6_on_qvhighlights_uses_the_papers_buckets_beside_its_numbers(tmp_path):
    from r2bench.reports.tables import table6
    texts = ["word " * 5, "word " * 15, "word " * 45] * 4
    s = SuiteDir(tmp_path / "t6", "table6")
    s.add("R²-Tuning", "r2_tuning", values={"MR-full-mAP": np.linspace(0, 100, 12)}, query_texts=texts,
          dataset="qvhighlights")
    (table,) = table6.build(rec.load_records(s.root), get_suite("table6").layout())
    assert [c.label for c in table.blocks[0].columns] == ["1–10 words", "11–20 words", "21–30 words", "31–40 words",
                                                          "41+ words"]
    r2 = next(r for r in table.rows if r.name == "R²-Tuning")
    assert r2.cells[(0, "41+ words")].paper == 72.38 and r2.cells[(0, "41+ words")].n_queries == 4
    assert r2.cells[(0, "21–30 words")].text == "–"
    assert any("the paper's bucket edges" in line for line in table.setting)


def test_html_table_escapes_and_marks_warnings(suite):
    from r2bench.reports.tables.common import to_html
    html = to_html(table9_build(rec.load_records(suite.root)))
    assert html.count("<tr>") == 4 + 1 and "<th>MR mAP ours</th>" in html
    assert "CUDA out of memory | at step 3" in html and '<td class="num">' in html


def test_the_report_shows_the_shipped_backbones_probe_where_a_suite_ran_on_it(tmp_path):
    from r2bench.datasets.synthetic.tiny_clip import SHIPPED_PROBE
    from r2bench.reports.render import Rendered
    from r2bench.reports.report import PROBE_TITLE, to_html_report, to_markdown_report
    recorded = json.loads(SHIPPED_PROBE.read_text())
    last_shape = f"{100 * recorded['tokens']['shape'][-1]:.0f}"
    on_it = Rendered("table9", tmp_path / "table9", [{"weights": "R2Bench-Tiny-v3-s0.safetensors#926d24fbcccd1ff1",
                                                      "_suite_dir": str(tmp_path / "table9")}])
    elsewhere = Rendered("table9", tmp_path / "t9", [{"weights": "ViT-B-32.pt#0123456789abcdef",
                                                      "_suite_dir": str(tmp_path / "t9")}])
    md = to_markdown_report([on_it], tmp_path)
    assert PROBE_TITLE in md
    row = next(line for line in md.splitlines() if line.startswith("| tokens | shape |"))
    assert row.rstrip(" |").endswith(last_shape) and row.count("|") == 3 + 6 + 1      # six layers
    assert PROBE_TITLE in to_html_report([on_it], tmp_path)
    assert PROBE_TITLE not in to_markdown_report([elsewhere], tmp_path)               # real CLIP: not this backbone
    assert PROBE_TITLE not in to_html_report([elsewhere], tmp_path)
