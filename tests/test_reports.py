"""Paper tables and the Table 9 renderer (Markdown, LaTeX, CSV) from a small hand-made results.csv."""
import math

import pandas as pd
import pytest

from datasets.errors import InputError
from reports.tables import table9
from reports.paper import PAPER_ROW_NAMES, paper_table

METRICS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")


def run(method, label, status="ok", error="", memory_source="cuda", weights="ckpt-1234", seed=0, metrics=None):
    return {"method": method, "label": label, "status": status, "error": error, "params": 2_900_000,
            "params_M": 2.77, "memory_gib": 3.25, "memory_source": memory_source,
            "train_videos_per_s": 10.0, "infer_videos_per_s": 40.0, "wall_s": 5.0,
            **dict(zip(METRICS, metrics or (None,) * 5)),
            "backbone": "ViT-B-32", "weights": weights, "dataset": "synthetic", "seed": seed, "run_id": f"{method}-{seed}"}


def write_results(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def results(tmp_path):
    return write_results(tmp_path / "results.csv", [
        run("r2_tuning", "R2-Tuning", metrics=(11.11, 5.55, 7.77, 22.22, 33.33)),
        run("frozen", "w/o Tuning", memory_source="estimate", metrics=(1.0, 2.0, 3.0, 4.0, 5.0)),
        run("lora", "LoRA", status="failed", error="CUDA out of memory | at step 3"),
    ])


def md_row(text, name):
    """Cells of the Markdown row whose first cell is ``name``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r}")


def test_paper_table_rows_match_registry_mapping():
    paper = paper_table("table9_transfer_methods")
    assert list(paper["method"]) == list(PAPER_ROW_NAMES.values())
    assert paper.set_index("method").loc["R2-Tuning", "MR-R1@0.5"] == 68.71
    with pytest.raises(FileNotFoundError, match="table9_transfer_methods"):
        paper_table("no_such_table")


def test_render_writes_three_files_with_ours_beside_paper(results, tmp_path):
    paths = table9.render(results, tmp_path / "out")
    assert [p.name for p in paths] == ["table9.md", "table9.tex", "table9.csv"]
    md = paths[0].read_text()
    r2 = md_row(md, "R2-Tuning")
    # Method, Kind, params ours|paper, memory ours|paper, R1@0.5 ours|paper, ...
    assert r2[:6] == ["R2-Tuning", "METL", "2.77", "2.7", "3.25", "10.6"]
    assert r2[6:8] == ["11.11", "68.71"] and r2[12:14] == ["22.22", "40.59"]
    assert md.index("| w/o Tuning") < md.index("| LoRA") < md.index("| R2-Tuning")  # paper order
    assert "| VPT" not in md  # not run, not listed by default
    assert "QVHighlights val" in md and "ViT-B/32" in md and "dataset synthetic" in md and "ckpt-1234" in md


def test_estimate_marker_and_failed_reason(results, tmp_path):
    md = table9.render(results, tmp_path)[0].read_text()
    assert md_row(md, "w/o Tuning")[4] == "3.25 (est.)"
    assert "(est.)" not in md_row(md, "R2-Tuning")[4]
    lora = md_row(md, "LoRA")
    assert lora[6] == "–" and lora[7] == "63.70"
    assert "failed: CUDA out of memory \\| at step 3" in lora[-1]


def test_random_init_warning(tmp_path):
    results = write_results(tmp_path / "r.csv", [run("r2_tuning", "R2-Tuning", weights="random-init",
                                                      metrics=(1.0, 1.0, 1.0, 1.0, 1.0))])
    md, tex, _ = (p.read_text() for p in table9.render(results, tmp_path))
    assert "**WARNING: randomly initialised backbone — metrics not comparable to the paper.**" in md
    assert r"\textbf{WARNING: randomly initialised backbone --- metrics not comparable" in tex
    clean = write_results(tmp_path / "c.csv", [run("r2_tuning", "R2-Tuning")])
    assert "randomly initialised" not in table9.render(clean, tmp_path / "c")[0].read_text()
    # --paper-scale rows (params and memory only) have no metrics to warn about
    sized = write_results(tmp_path / "p.csv", [run("r2_tuning", "R2-Tuning", weights="random-init")])
    assert "randomly initialised" not in table9.render(sized, tmp_path / "p")[0].read_text()


def test_latex_looks_compilable(results, tmp_path):
    tex = table9.render(results, tmp_path)[1].read_text()
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex and r"\begin{table}" in tex
    assert tex.count("{") == tex.count("}")
    assert r"\#Params" in tex and "R2-Tuning" in tex and "est.)" in tex
    body = [line for line in tex.splitlines() if line.startswith(("R2-Tuning", "LoRA", "w/o"))]
    assert len(body) == 3 and all(line.count("&") == 16 and line.endswith(r"\\") for line in body)


def test_csv_round_trips(results, tmp_path):
    frame = pd.read_csv(table9.render(results, tmp_path)[2]).set_index("Method")
    assert list(frame.index) == ["w/o Tuning", "LoRA", "R2-Tuning"]
    assert frame.loc["R2-Tuning", "MR R1@0.5 ours"] == 11.11
    assert frame.loc["R2-Tuning", "MR R1@0.5 paper"] == 68.71
    assert frame.loc["R2-Tuning", "HD HIT@1 ours"] == 33.33
    assert frame.loc["w/o Tuning", "memory_source"] == "estimate"
    assert frame.loc["LoRA", "status"] == "failed" and "CUDA out of memory" in frame.loc["LoRA", "note"]
    assert math.isnan(frame.loc["LoRA", "MR mAP ours"])


def test_include_missing_and_seed_mean(tmp_path):
    results = write_results(tmp_path / "r.csv", [
        run("r2_tuning", "R2-Tuning", seed=0, metrics=(10.0,) * 5),
        run("r2_tuning", "R2-Tuning", seed=1, metrics=(20.0,) * 5),
        run("r2_tuning", "R2-Tuning", seed=2, status="failed", error="NaN loss"),
        run("extra", "My Method", metrics=(1.0,) * 5),
    ])
    md = table9.render(results, tmp_path, include_missing=True)[0].read_text()
    assert md_row(md, "VPT")[2] == "–" and md_row(md, "VPT")[3] == "2.8" and "not run" in md_row(md, "VPT")[-1]
    r2 = md_row(md, "R2-Tuning")
    assert r2[6] == "15.00" and "mean of 2 runs" in r2[-1] and "failed: NaN loss" in r2[-1]
    assert md_row(md, "My Method")[7] == "–"  # ours only, after the paper's rows
    assert md.index("| R2-Tuning") < md.index("| My Method")


def test_bad_results_csv_is_input_error(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"method": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="bad.csv: field 'status'"):
        table9.render(bad, tmp_path)


def test_main(results, tmp_path, capsys):
    assert table9.main([str(results), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "table9.tex").is_file()
    assert "table9.md" in capsys.readouterr().out
    assert table9.main([str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "missing.csv: results CSV not found" in capsys.readouterr().err
