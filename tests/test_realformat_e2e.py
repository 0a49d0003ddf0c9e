"""The whole real-data path in the formats users bring (issue 13): real QVHighlights annotation
lines, H.264 videos of the real durations (126–150 s) at 30 fps, CLIP weights in OpenAI's
TorchScript release format, one video missing —

    r2bench prepare (every split, --k 4)  →  r2bench run --suite table9 (w/o Tuning, R²-Tuning)
    →  r2bench run --suite table1 (test-split submission)  →  r2bench predict

The default run uses the project's tiny ViT in OpenAI's format (about a minute); ``-m slow``
runs the same with a ViT-B/32-sized archive."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.realformat import h264_videos, openai_torchscript_archive, qvhighlights_lines

REPO = Path(__file__).resolve().parent.parent
TEST_EXCERPT = REPO / "tests" / "fixtures" / "qvhighlights_test_excerpt.jsonl"


def r2bench(*args: str, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r2bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def real_format(root: Path, config: str) -> dict:
    val = qvhighlights_lines()                                    # 20 real validation lines
    test = [json.loads(x) for x in TEST_EXCERPT.read_text().splitlines() if x.strip()]
    ann = root / "annotations"
    ann.mkdir(parents=True)
    splits = {"train": val[:12], "val": val[12:], "test": test}
    for split, lines in splits.items():
        (ann / f"highlight_{split}_release.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    durations = {x["vid"]: float(x["duration"]) for lines in splits.values() for x in lines}
    h264_videos(root / "videos", durations, fps=30, size=(96, 64))
    missing = val[12]["vid"]
    (root / "videos" / f"{missing}.mp4").unlink()                 # every real download misses some videos
    weights = openai_torchscript_archive(root / "clip.pt", config=config)
    return dict(ann=ann, videos=root / "videos", weights=weights, missing=missing, splits=splits)


def whole_path(tmp_path: Path, config: str) -> None:
    import os
    data = real_format(tmp_path / "data", config)
    env = {**os.environ, "PYTHONPATH": str(REPO), "R2BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"}
    common = ["--backbone", config, "--weights", str(data["weights"])]
    for split in ("train", "val", "test"):
        proc = r2bench("prepare", "--dataset", "qvhighlights", "--annotations",
                       str(data["ann"] / f"highlight_{split}_release.jsonl"), "--video-dir", str(data["videos"]),
                       "--k", "4", "--workers", "1", "--quiet", *common, cwd=tmp_path, env=env)
        assert proc.returncode == (1 if split == "val" else 0), proc.stderr      # val: one video missing
    assert "Traceback" not in proc.stderr and "torch.jit" not in proc.stderr   # no warning noise
    train = ["--set", "train.batch_size=4", "train.repeat=1", "train.warmup_iters=2", "--epochs", "1",
             "--device", "cpu", "--quiet", *common]
    proc = r2bench("run", "--suite", "table9", "--dataset", "qvhighlights", "--annotations", str(data["ann"]),
                   "--video-dir", str(data["videos"]), "--methods", "frozen", "r2_tuning", *train,
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    filled = {p.parent for p in (tmp_path / "cache" / "features").glob("*/*.safetensors")}
    assert len(filled) == 1                                 # both rows read what prepare cached (K = 4 covers K = 1)
    assert "| R²-Tuning" in proc.stdout and "| w/o Tuning" in proc.stdout        # the table, on stdout
    records = [json.loads(x) for x in (tmp_path / "out" / "table9" / "ledger.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" and r["videos"]["missing"] == 1 for r in records)
    n_val = len(data["splits"]["val"])
    skipped = sum(x["vid"] == data["missing"] for x in data["splits"]["val"])
    assert all(r["n_eval"] == n_val - skipped for r in records)
    assert f"{skipped} of {n_val} val queries not scored (1 videos missing" in (tmp_path / "out" / "table9" /
                                                                             "table9.md").read_text()
    proc = r2bench("run", "--suite", "table1", "--data", f"qvhighlights={data['videos']}", "--annotations",
                   str(data["ann"]), *train, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    submission = tmp_path / "out" / "table1" / "hl_test_submission.jsonl"
    lines = [json.loads(x) for x in submission.read_text().splitlines()]
    assert [x["qid"] for x in lines] == [x["qid"] for x in data["splits"]["test"]]      # every qid
    with zipfile.ZipFile(tmp_path / "out" / "table1" / "submission.zip") as z:
        assert sorted(z.namelist()) == ["hl_test_submission.jsonl", "hl_val_submission.jsonl"]
    r2 = next(r for r in records if r["method"] == "r2_tuning")
    run_dir = tmp_path / "out" / "table9" / "runs" / r2["run_id"]
    video = data["videos"] / f"{data['splits']['val'][-1]['vid']}.mp4"
    proc = r2bench("predict", str(run_dir), str(video), "-q", "a woman talks", "-q", "a dog runs", cwd=tmp_path,
                   env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    assert len(answers) == 2 and all(a["pred_relevant_windows"] for a in answers)


def test_real_formats_end_to_end_with_a_tiny_backbone(tmp_path):
    whole_path(tmp_path, "R2Bench-Tiny-quickgelu")


@pytest.mark.slow
def test_real_formats_end_to_end_with_vit_b32(tmp_path):
    whole_path(tmp_path, "ViT-B-32-quickgelu")
