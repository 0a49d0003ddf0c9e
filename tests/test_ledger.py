"""Ledger: atomic rewrites, replace-by-run_id, done(), results.csv columns, corrupt-line errors."""
import json
import os

import pandas as pd
import pytest

from r2bench.bench.ledger import LEADING_COLUMNS, TRAILING_COLUMNS, Ledger
from r2bench.core.errors import InputError


def record(run_id, status="ok", metrics=None, **extra):
    return {"run_id": run_id, "suite": "t9", "method": run_id.split("-")[0], "label": "X", "category": "METL",
            "dataset": "synthetic", "seed": 0, "status": status, "error": None if status == "ok" else "OOM",
            "backbone": "ViT-B-32", "weights": "random-init", "params": 2_831_155, "params_M": 2.7,
            "memory_gib": 1.5, "memory_source": "estimate", "train_videos_per_s": 10.0,
            "infer_videos_per_s": 50.0, "wall_s": 3.0, "metrics": metrics or {}, **extra}


def test_append_and_read_back(tmp_path):
    ledger = Ledger(tmp_path / "runs")
    assert ledger.records() == []
    ledger.append(record("a-1", config={"lr": 1e-4}))
    ledger.append(record("b-1"))
    assert [r["run_id"] for r in Ledger(tmp_path / "runs").records()] == ["a-1", "b-1"]
    assert ledger.records()[0]["config"] == {"lr": 1e-4}


def test_same_run_id_replaces_in_place(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append(record("a-1", status="failed"))
    ledger.append(record("b-1"))
    ledger.append(record("a-1", status="ok"))
    records = ledger.records()
    assert [r["run_id"] for r in records] == ["a-1", "b-1"]
    assert records[0]["status"] == "ok"


def test_done_only_for_ok(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append(record("a-1"))
    ledger.append(record("b-1", status="failed"))
    assert ledger.done("a-1")
    assert not ledger.done("b-1")
    assert not ledger.done("never-ran")


def test_crash_mid_write_keeps_old_ledger(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path)
    ledger.append(record("a-1"))
    before = ledger.path.read_bytes()

    def crash(*args):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        ledger.append(record("b-1"))
    monkeypatch.undo()
    assert ledger.path.read_bytes() == before
    assert [r["run_id"] for r in ledger.records()] == ["a-1"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".ledger.lock") == ["ledger.jsonl"]  # temp file cleaned up


def test_record_needs_run_id(tmp_path):
    with pytest.raises(ValueError, match="run_id"):
        Ledger(tmp_path).append({"status": "ok"})


@pytest.mark.parametrize("bad_line", ['{"run_id": "b-1", "stat', '["not", "a", "record"]'])
def test_a_corrupt_line_is_reported_by_number_kept_aside_and_the_ledger_goes_on(tmp_path, bad_line, caplog):
    ledger = Ledger(tmp_path)
    ledger.path.write_text(json.dumps(record("a-1")) + "\n" + bad_line + "\n" + json.dumps(record("c-1")) + "\n")
    with caplog.at_level("WARNING"):
        assert [r["run_id"] for r in ledger.records()] == ["a-1", "c-1"]
    assert f"{ledger.path}:2:" in caplog.text
    assert ledger.done("a-1") and not ledger.done("b-1")                    # the suite can go on
    ledger.append(record("d-1"))                                            # the next write sets the line aside
    assert [r["run_id"] for r in ledger.records()] == ["a-1", "c-1", "d-1"]
    rejected = [json.loads(line) for line in (tmp_path / "ledger.rejected.jsonl").read_text().splitlines()]
    assert rejected == [dict(line=2, error=rejected[0]["error"], text=bad_line)] and ":2:" in rejected[0]["error"]
    with pytest.raises(InputError) as info:                                 # a report reads strictly
        from r2bench.reports.records import read_ledger
        (tmp_path / "strict.jsonl").write_text(bad_line + "\n")
        read_ledger(tmp_path / "strict.jsonl")
    assert info.value.line == 1


def test_results_csv_columns_in_contract_order(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append(record("a-1", metrics={"HL-min-VeryGood-mAP": 39.1, "MR-full-R1@0.5": 64.2,
                                         "HL-min-VeryGood-Hit1": 63.2, "MR-full-mAP": 42.2}))
    ledger.append(record("b-1", status="failed"))
    ledger.append(record("c-1", metrics={"MR-full-R1@0.7": 45.0}))
    path = ledger.write_results_csv()
    assert path == tmp_path / "results.csv"
    frame = pd.read_csv(path)
    metrics = ["MR-full-R1@0.5", "MR-full-mAP", "MR-full-R1@0.7", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"]
    assert list(frame.columns) == [*LEADING_COLUMNS, *metrics, *TRAILING_COLUMNS]
    assert list(frame["run_id"]) == ["a-1", "b-1", "c-1"]
    assert frame.loc[0, "MR-full-R1@0.5"] == 64.2
    assert frame.loc[1, "error"] == "OOM" and pd.isna(frame.loc[1, "MR-full-R1@0.5"])


def test_results_csv_of_empty_ledger_has_fixed_columns(tmp_path):
    frame = pd.read_csv(Ledger(tmp_path).write_results_csv())
    assert list(frame.columns) == [*LEADING_COLUMNS, *TRAILING_COLUMNS] and frame.empty
