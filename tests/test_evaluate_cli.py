"""``python -m bench.evaluate`` run as a subprocess: JSON on stdout, exit 2 + message on bad input."""
from __future__ import annotations

import json
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
