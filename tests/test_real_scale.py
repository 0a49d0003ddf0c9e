"""Real data at real scale (issue 13): missing and unreadable videos, a prepared cache reused by
every row, memos bounded in bytes, cheap inference timing, tables on stdout, the test-split
submission with every qid. On the small built-in benchmark (``small_bench``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from r2bench import cli
from r2bench.core.memo import ByteLRU, memo_budget, nbytes


def records(out: Path, suite: str = "table9") -> list[dict]:
    return [json.loads(line) for line in (out / suite / "ledger.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture
def env(small_bench, tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(small_bench["cache"]))
    return small_bench


def _videos_without(env, tmp_path, n: int = 1) -> tuple[Path, list[str]]:
    """A copy of the benchmark's video folder with the first ``n`` validation videos deleted."""
    videos = tmp_path / "videos"
    shutil.copytree(env["videos"], videos)
    val = sorted({s.vid for s in env["data"].samples("val")})[:n]
    for vid in val:
        (videos / f"{vid}.mp4").unlink()
    return videos, val


def test_a_missing_video_is_skipped_counted_and_noted_and_require_all_videos_makes_it_fatal(env, tmp_path, capsys):
    videos, gone = _videos_without(env, tmp_path)
    argv = [*env["argv"](tmp_path / "out", epochs=1), "--video-dir", str(videos)]
    assert cli.run_main([*argv, "--require-all-videos"]) == 2                 # refused before anything runs
    assert not (tmp_path / "out" / "table9" / "ledger.jsonl").exists()
    assert cli.run_main(argv) == 0
    (r,) = records(tmp_path / "out")
    n_val = len(env["data"].samples("val"))
    skipped = sum(s.vid in gone for s in env["data"].samples("val"))
    assert r["status"] == "ok" and r["videos"]["missing"] == 1 and r["videos"]["skipped_queries"]["val"] == skipped
    assert r["n_eval"] == n_val - skipped and r["videos"]["examples"][0]["vid"] == gone[0]
    assert len(pd.read_csv(tmp_path / "out" / "table9" / "runs" / r["run_id"] / "per_query.csv")) == n_val - skipped
    table = (tmp_path / "out" / "table9" / "table9.md").read_text()
    assert f"{skipped} of {n_val} val queries not scored (1 videos missing, 0 unreadable)" in table
    assert "# Table 9" in capsys.readouterr().out                              # the table goes to stdout
    # the run without that video is another run than the one with every video (same folder restored)
    shutil.copy(env["videos"] / f"{gone[0]}.mp4", videos / f"{gone[0]}.mp4")
    assert cli.run_main([*env["argv"](tmp_path / "out2", epochs=1), "--video-dir", str(videos)]) == 0
    (whole,) = records(tmp_path / "out2")
    assert whole["run_id"] != r["run_id"] and "missing_videos" in r and "missing_videos" not in whole


def test_the_test_split_submission_keeps_every_qid_with_empty_predictions_for_missing_videos(env, tmp_path):
    from r2bench.bench.run import RunContext, RunSpec, execute
    from r2bench.datasets.registry import get_dataset
    videos = tmp_path / "videos"
    shutil.copytree(env["videos"], videos)
    data = get_dataset("synthetic").with_overrides(["train.batch_size=4", "train.epochs=1"]).bind(
        env["annotations"], videos)
    test = data.samples("test")
    (videos / f"{test[0].vid}.mp4").unlink()
    check = data.check_videos(["train", "val", "test"])
    assert list(check.missing) == [test[0].vid] and check.skipped["test"] == sum(s.vid == test[0].vid for s in test)
    ctx = RunContext("t", data, "R2Bench-Tiny", str(env["weights"]), torch.device("cpu"), tmp_path / "out",
                     progress=False, infer_timing="none", videos=check)
    r = execute(RunSpec("frozen", predict_splits=("test",)), ctx, "run1")
    lines = [json.loads(x) for x in Path(r["split_predictions"]["test"]).read_text().splitlines()]
    assert [x["qid"] for x in lines] == [s.qid for s in test]
    empty = [x for x in lines if x["vid"] == test[0].vid]
    assert empty and all(x["pred_relevant_windows"] == [] and x["pred_saliency_scores"] == [] for x in empty)
    assert all(x["pred_relevant_windows"] for x in lines if x["vid"] != test[0].vid)
    # its ground truth given (the synthetic test split is labelled): scored like val, per query too
    assert r["metrics"]["test:MR-full-mAP"] >= 0 and Path(r["split_per_query"]["test"]).is_file()


def test_a_row_reads_a_prepared_cache_whose_taps_cover_its_own(env, tmp_path, monkeypatch):
    from r2bench.datasets import prepare as prep
    from r2bench.datasets import vtg
    from r2bench.methods.backbone import Backbone
    backbone = Backbone("R2Bench-Tiny", str(env["weights"]))
    cache = tmp_path / "features"
    prep.prepare("synthetic", env["annotations"] / "train.jsonl", env["videos"], backbone, backbone.taps(4), cache,
                 workers=0, progress=False)
    prep.prepare("synthetic", env["annotations"] / "val.jsonl", env["videos"], backbone, backbone.taps(4), cache,
                 workers=0, progress=False)
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))                         # features/ under it
    calls = []
    real = vtg.extract_features
    monkeypatch.setattr(vtg, "extract_features", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert cli.run_main(env["argv"](tmp_path / "out", epochs=1)) == 0          # w/o Tuning taps the last layer only
    assert calls == []                                                       # nothing encoded again
    (r,) = records(tmp_path / "out")
    assert r["status"] == "ok" and r["input"] == "features"
    filled = {len(json.loads((p.parent / "key.json").read_text())["taps"]["layers"]) for p in cache.glob("*/*.safetensors")}
    assert filled == {4}                                                     # no second, narrower cache was filled


def test_the_frame_memo_stays_within_its_byte_budget(tmp_path):
    loads = []

    def frames(vid):                      # a "150-s video": 75 frames of 3 × 64 × 64 floats = 3.7 MB
        loads.append(vid)
        return torch.zeros(75, 3, 64, 64)
    per_video = nbytes(frames("probe"))
    memo = ByteLRU(frames, max_bytes=5 * per_video)
    for round_ in range(3):
        for vid in range(40):
            memo(vid)
            assert memo.bytes <= 5 * per_video and len(memo) <= 5
    assert memo.evicted > 0 and memo.hits == 0                      # 40 videos round-robin through 5 slots
    memo(39)
    assert memo.hits == 1
    big = ByteLRU(lambda k: torch.zeros(10 * per_video // 4), max_bytes=per_video)
    big("x")
    assert len(big) == 0                                            # larger than the whole budget: not kept
    assert memo_budget(0.5) == 2**29


def test_rss_stays_under_the_budget_while_many_videos_stream_through(tmp_path):
    """Many videos, a small budget: the process's resident memory grows by about the budget, not by
    the number of videos (Linux: /proc/self/status)."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs /proc")

    def rss() -> int:
        return next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if line.startswith("VmRSS"))
    budget = 64 * 2**20
    memo = ByteLRU(lambda vid: torch.ones(75, 3, 96, 96), max_bytes=budget)     # 8.3 MB a video
    before = rss()
    for vid in range(200):                                          # 1.66 GB if every video were kept
        memo(vid)
    grown = rss() - before
    assert memo.bytes <= budget and grown < budget + 96 * 2**20, f"RSS grew {grown / 2**20:.0f} MiB"


def test_inference_timing_is_cheap_by_default_and_full_when_asked(env, tmp_path):
    assert cli.run_main(env["argv"](tmp_path / "q", epochs=1)) == 0
    (quick,) = records(tmp_path / "q")
    assert quick["infer_timed_videos"] == 4 and quick["eval_queries_per_s"] > 0
    assert cli.run_main([*env["argv"](tmp_path / "n", epochs=1), "--infer-timing", "none"]) == 0
    (none,) = records(tmp_path / "n")
    assert "infer_timed_videos" not in none and none["run_id"] == quick["run_id"]   # timing is not identity


def test_decoding_workers_give_the_same_numbers(env, tmp_path):
    argv = env["argv"](tmp_path / "a", epochs=1, methods=("vpt",))
    assert cli.run_main([*argv, "--workers", "0"]) == 0
    assert cli.run_main([*env["argv"](tmp_path / "b", epochs=1, methods=("vpt",)), "--workers", "2"]) == 0
    (a,), (b,) = records(tmp_path / "a"), records(tmp_path / "b")
    assert a["input"] == "frames" and b["workers"] == 2
    assert a["metrics"] == b["metrics"] and a["final_losses"] == b["final_losses"]
