"""``python -m bench.evaluate`` run as a subprocess: strict JSON on stdout (undefined metrics ``null``), exit 2 +
one message on bad input, exit 1 + one message when an output cannot be written, ``warning: ...`` lines
on stderr (``--lenient``, the readers' notices)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r2bench.core.io import REPO_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
GT = FIXTURES / "qvhighlights_val_excerpt.jsonl"
BRIEF_KEYS = [
    "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-long-mAP",
    "MR-middle-mAP", "MR-short-mAP", "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP",
    "HL-min-Good-Hit1", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"]


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r2bench.bench.evaluate", *map(str, args)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def perfect_preds(tmp_path) -> Path:
    """Ground-truth windows as predictions (score 1) and the summed saliency as scores."""
    lines = []
    for line in GT.read_text().splitlines():
        d = json.loads(line)
        saliency = [0.0] * int(d["duration"] / 2)
        for clip, row in zip(d["relevant_clip_ids"], d["saliency_scores"]):
            saliency[clip] = float(sum(row))
        lines.append(json.dumps({"qid": d["qid"], "pred_relevant_windows": [w + [1.0] for w in d["relevant_windows"]],
                                 "pred_saliency_scores": saliency}))
    path = tmp_path / "perfect.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_prints_brief_json(perfect_preds):
    proc = run_cli("--dataset", "qvhighlights", GT, perfect_preds)
    assert proc.returncode == 0, proc.stderr
    brief = json.loads(proc.stdout)
    assert list(brief) == BRIEF_KEYS
    assert all(brief[k] == 100.0 for k in BRIEF_KEYS if k.startswith("MR-full"))
    # A bucket keeps only its own ground truth, so the predicted windows of the other
    # buckets count as false positives in queries that mix lengths (excerpt lines 3, 6, 12, 13).
    assert all(0.0 < brief[k] < 100.0 for k in ("MR-short-mAP", "MR-middle-mAP", "MR-long-mAP"))
    assert all(0.0 <= brief[k] <= 100.0 for k in BRIEF_KEYS)


def test_cli_full_prints_nested_result(perfect_preds):
    proc = run_cli("--dataset", "qvhighlights", GT, perfect_preds, "--full")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result) == ["brief", "HL-min-Fair", "HL-min-Good", "HL-min-VeryGood", "full", "long", "middle", "short"]
    assert result["full"]["MR-R1"]["0.95"] == 100.0


def test_cli_missing_qids_exit_2(tmp_path, perfect_preds):
    lines = perfect_preds.read_text().splitlines()
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(lines[:-2]) + "\n")
    dropped = [json.loads(line)["qid"] for line in lines[-2:]]
    proc = run_cli("--dataset", "qvhighlights", GT, partial)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "partial.jsonl" in proc.stderr and "field 'qid'" in proc.stderr
    assert "2 ground-truth qid(s) missing" in proc.stderr and all(str(q) in proc.stderr for q in dropped)


def test_cli_bad_ground_truth_exit_2(tmp_path, perfect_preds):
    unlabelled = tmp_path / "unlabelled.jsonl"
    d = json.loads(GT.read_text().splitlines()[0])
    del d["relevant_windows"]
    unlabelled.write_text(json.dumps(d) + "\n")
    proc = run_cli("--dataset", "qvhighlights", unlabelled, perfect_preds)
    assert proc.returncode == 2
    assert "unlabelled.jsonl:1: field 'relevant_windows': missing required field" in proc.stderr


# --------------------------------------------------------------------------- strict JSON, lenient mode, output errors

def no_nan(text: str):
    def refuse(name):
        raise ValueError(f"bare {name} in the output")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def short_only(tmp_path) -> tuple[Path, Path]:
    """Two queries whose windows are all short: the middle and long buckets are empty (NaN)."""
    gt = [json.loads(x) for x in GT.read_text().splitlines()[:2]]
    for d in gt:
        d["relevant_windows"] = [[0, 4], [10, 12]]
    gt_path = tmp_path / "gt.jsonl"
    gt_path.write_text("".join(json.dumps(d) + "\n" for d in gt))
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"qid": d["qid"],
                                         "pred_relevant_windows": [w + [1.0] for w in d["relevant_windows"]],
                                         "pred_saliency_scores": [0.0] * int(d["duration"] / 2)}) + "\n" for d in gt))
    return gt_path, preds


def test_cli_undefined_metrics_are_null_not_nan(short_only):
    gt, preds = short_only
    proc = run_cli("--dataset", "qvhighlights", gt, preds)
    assert proc.returncode == 0, proc.stderr
    brief = no_nan(proc.stdout)
    assert brief["MR-long-mAP"] is None and brief["MR-middle-mAP"] is None and brief["MR-short-mAP"] == 100.0
    proc = run_cli("--dataset", "qvhighlights", gt, preds, "--full")
    full = no_nan(proc.stdout)
    assert full["long"]["MR-R1"]["0.5"] is None and full["full"]["MR-mAP"]["average"] == 100.0
    assert "NaN" not in proc.stdout


def mr_files(tmp_path, windows) -> tuple[Path, Path]:
    gt = tmp_path / "gt.jsonl"
    gt.write_text("".join(json.dumps({"qid": i, "vid": "v", "query": "q", "duration": 30.0,
                                      "relevant_windows": [[0.0, 10.0]]}) + "\n" for i in range(len(windows))))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"qid": i, "pred_relevant_windows": [w]}) + "\n"
                             for i, w in enumerate(windows)))
    return gt, preds


@pytest.mark.parametrize("window, message", [([-2.0, 8.0, 0.9], "expected times >= 0 s, found [-2.0, 8.0]"),
                                             ([8.0, 2.0, 0.9], "expected start <= end, found [8.0, 2.0]")])
def test_cli_strict_refuses_negative_and_inverted_windows(tmp_path, window, message):
    gt, preds = mr_files(tmp_path, [[0.0, 10.0, 0.9], window])
    proc = run_cli("--dataset", "charades_sta", gt, preds)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {preds}:2: field 'pred_relevant_windows[0]': {message} "
                                        "(--lenient scores it as the official evaluator does)"]


def test_cli_lenient_scores_them_with_one_warning_per_kind(tmp_path):
    # [-10, 10] vs [0, 10]: IoU 10 / 20 = .5 unclamped; [8, 2] and [9, 1]: no overlap → 0; [0, 10]: 1.
    gt, preds = mr_files(tmp_path, [[0.0, 10.0, 0.9], [-10.0, 10.0, 0.9], [8.0, 2.0, 0.9], [9.0, 1.0, 0.9]])
    proc = run_cli("--dataset", "charades_sta", gt, preds, "--lenient")
    assert proc.returncode == 0, proc.stderr
    brief = no_nan(proc.stdout)
    assert brief["MR-full-mIoU"] == 37.5 and brief["MR-full-R1@0.5"] == 50.0 and brief["MR-full-R1@0.7"] == 25.0
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    assert f"warning: {preds}: 1 window(s) with negative times; first on line 2" in lines[0]
    assert f"warning: {preds}: 2 window(s) ending before they start; first on line 3, field " \
           "'pred_relevant_windows[0]': found [8.0, 2.0]" in lines[1]


def test_cli_reader_warnings_go_through_logging(tmp_path):
    gt, preds = mr_files(tmp_path, [[0.0, 10.0, 0.9]])
    gt.write_text(json.dumps({"qid": 0, "vid": "v", "query": "q", "duration": 10.0,
                              "relevant_windows": [[0.0, 10.4]]}) + "\n")
    proc = run_cli("--dataset", "charades_sta", gt, preds)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"warning: {gt}: clamped 1 ground-truth window end(s)")
    assert len(proc.stderr.splitlines()) == 1 and "Warning" not in proc.stderr
    assert no_nan(proc.stdout)["MR-full-mIoU"] == round(100 * 10 / 10.4, 2)     # scored unclamped, as officially


def assert_one_line_write_error(proc, path):
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: cannot write the per-query table to {path}: ") and "--per-query" in line


def test_cli_per_query_into_an_impossible_path(tmp_path, perfect_preds):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    target = blocker / "per_query.csv"
    proc = run_cli("--dataset", "qvhighlights", GT, perfect_preds, "--per-query", target)
    assert_one_line_write_error(proc, target)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_per_query_into_a_read_only_folder(tmp_path, perfect_preds):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = run_cli("--dataset", "qvhighlights", GT, perfect_preds, "--per-query", folder / "pq.csv")
    finally:
        folder.chmod(0o755)
    assert_one_line_write_error(proc, folder / "pq.csv")


def test_per_query_permission_error_in_process(tmp_path, perfect_preds, capsys, monkeypatch):
    """The read-only case without needing a non-root user: the write raises PermissionError."""
    import r2bench.bench.evaluate as cli

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli, "atomic_write", refuse)
    target = tmp_path / "ro" / "pq.csv"
    assert cli.main(["--dataset", "qvhighlights", str(GT), str(perfect_preds), "--per-query", str(target)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == (f"error: cannot write the per-query table to {target}: Permission denied; "
                                 "choose a writable file with --per-query\n")
