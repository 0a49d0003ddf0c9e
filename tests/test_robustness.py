"""Nothing lost, nothing silent (issue 17): bad settings refused up front, finished runs verified,
runs claimed by one process, output errors in one line, reports that never generate data,
confinement of video paths, and clean output."""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from r2bench import cli
from r2bench.core.errors import InputError

REPO = Path(__file__).resolve().parent.parent


def records(out: Path, suite: str = "table9") -> list[dict]:
    return [json.loads(line) for line in (out / suite / "ledger.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture
def env(small_bench, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(small_bench["cache"]))
    return small_bench


# --------------------------------------------------------------------------- settings, up front

@pytest.mark.parametrize("extra, field", [
    (["--set", "head.dropout=abc"], "head.dropout': expected a number, got 'abc'"),
    (["--set", "head.dropout=2"], "head.dropout': expected a value ≥ 0.0 and < 1.0, got 2.0"),
    (["--set", "head.strides=[1,0]"], "strides"),
    (["--set", "train.lr=fast"], "train.lr"),
    (["--seeds", "-1"], "--seeds -1: a seed is an integer from 0 to 2^32 - 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--workers", "-2"], "--workers must be at least 0"),
    (["--memo-gb", "-1"], "memo budget must be ≥ 0 GB"),
])
def test_every_bad_setting_is_refused_before_anything_runs(env, tmp_path, caplog, extra, field):
    start = time.perf_counter()
    with caplog.at_level(logging.ERROR):
        assert cli.run_main([*env["argv"](tmp_path / "out"), *extra]) == 2
    assert field in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "out" / "table9" / "ledger.jsonl").exists()
    assert time.perf_counter() - start < 30


def test_a_seed_given_twice_runs_once_and_says_so(env, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert cli.run_main([*env["argv"](tmp_path / "out", epochs=1), "--seeds", "0", "0"]) == 0
    assert "--seeds: 0 given more than once; each seed runs once" in caplog.text
    assert len(records(tmp_path / "out")) == 1


# --------------------------------------------------------------------------- finished runs are verified

def test_a_deleted_checkpoint_makes_the_run_run_again(env, tmp_path, caplog):
    argv = env["argv"](tmp_path / "out", epochs=1)
    assert cli.run_main(argv) == 0
    (r,) = records(tmp_path / "out")
    assert set(r["files"]) == {"checkpoint", "predictions", "per_query"}
    checkpoint = tmp_path / "out" / "table9" / r["files"]["checkpoint"]["path"]
    checkpoint.unlink()
    with caplog.at_level(logging.INFO):
        assert cli.run_main(argv) == 0
    assert f"runs again: its checkpoint file: {checkpoint} is missing" in caplog.text
    assert checkpoint.is_file()
    from r2bench.bench.predict import Predictor
    Predictor.from_run(checkpoint.parent)            # the run is usable again
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert cli.run_main(argv) == 0
    assert "done already" in caplog.text


def test_a_damaged_per_query_file_is_refused_by_name_in_the_table(env, tmp_path):
    argv = env["argv"](tmp_path / "out", epochs=1)
    assert cli.run_main(argv) == 0
    (r,) = records(tmp_path / "out")
    path = Path(r["per_query"])
    frame = pd.read_csv(path)
    frame.loc[0, "MR-full-mAP"] = float("nan")
    frame.to_csv(path, index=False)
    from r2bench.bench.suites import get_suite
    from r2bench.reports.render import render_suite
    rendered = render_suite(tmp_path / "out" / "table9", suite=get_suite("table9"), figures=False)
    res = next(x for x in rendered.tables[0].rows if x.name == "w/o Tuning")
    assert res.cells[(0, "MR mAP")].text == "refused" and str(path) in res.note and "re-run" in res.note


# --------------------------------------------------------------------------- two commands, one --out

def test_two_commands_on_one_out_share_the_work(env, tmp_path):
    argv = [sys.executable, str(REPO / "run_all.py"), *env["argv"](tmp_path / "out", epochs=2,
                                                                    methods=("frozen", "r2_tuning", "e3va"))]
    procs = [subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    trained = sum(err.count("── ") for _, err in outs)
    assert trained == 3, [err for _, err in outs]          # each run trained once, by one of the two
    ledger = records(tmp_path / "out")
    assert len(ledger) == 3 and all(r["status"] == "ok" and "failed_attempts" not in r for r in ledger)
    assert all("| R²-Tuning" in out for out, _ in outs)     # both waited for the other's runs to render


# --------------------------------------------------------------------------- errors in one line

def test_a_read_only_output_folder_is_one_line_for_the_report(env, tmp_path, monkeypatch, caplog):
    from r2bench.reports import report
    assert cli.run_main(env["argv"](tmp_path / "out", epochs=1)) == 0

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
    monkeypatch.setattr(report, "atomic_write", read_only)
    from r2bench.reports.__main__ import main as report_main
    from r2bench.core.errors import guarded
    with caplog.at_level(logging.ERROR):
        assert guarded(report_main, [str(tmp_path / "out"), "--no-figures"]) == 1
        assert cli.run_main(["--report", "--out", str(tmp_path / "out"), "--quiet"]) == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert lines and all(line.startswith("error: Read-only file system: ") and "report.html" in line and
                         "choose another folder" in line and "\n" not in line for line in lines)


def test_a_full_disk_while_the_benchmark_is_generated_says_which_folder(tmp_path, monkeypatch, caplog):
    import imageio_ffmpeg
    from r2bench.datasets.synthetic import generator

    def dying_writer(*args, **kwargs):
        def gen():
            yield
            raise BrokenPipeError("\n".join(f"[libx264 @ 0x55] line {i}" for i in range(310)))
        return gen()
    monkeypatch.setattr(imageio_ffmpeg, "write_frames", dying_writer)
    monkeypatch.setattr(generator.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path / "cache"))
    from r2bench.core.errors import guarded
    with caplog.at_level(logging.ERROR):
        code = guarded(generator.generate, n_train=1, n_val=1, n_test=0, duration=8, progress=False)
    assert code == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("error: No space left on device: ") and "(the cache folder, R2BENCH_CACHE)" in line
    assert "libx264" not in line and "free space there" in line


# --------------------------------------------------------------------------- reports never generate data

def test_a_figure_of_a_small_run_needs_the_small_benchmark_and_never_generates_one(tmp_path, monkeypatch):
    from r2bench.reports.figures import runs
    from r2bench.reports.figures.sources import FigureSkipped, Sources
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path / "empty-cache"))
    record = dict(run_id="r", dataset="synthetic", benchmark_version="synthetic-g2c2-small", _suite_dir=str(tmp_path))
    assert runs.run_size(record) == "small"
    with pytest.raises(FigureSkipped, match=r"synthetic --size small is not generated on this machine"):
        runs.dataset_spec(record, Sources())
    assert not (tmp_path / "empty-cache" / "synthetic").exists()          # nothing was generated


# --------------------------------------------------------------------------- video paths stay in their folder

def _dataset_with(tmp_path, lines):
    from r2bench.datasets.registry import get_dataset
    ann = tmp_path / "ann"
    ann.mkdir(exist_ok=True)
    for split in ("train", "val", "test"):
        (ann / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return get_dataset("synthetic").bind(ann, tmp_path / "videos")


def _line(vid):
    return dict(qid=1, query="a red circle", duration=20, vid=vid, relevant_windows=[[0, 4]],
                relevant_clip_ids=[0, 1], saliency_scores=[[1, 1, 1], [2, 2, 2]])


def test_a_vid_escaping_the_folder_is_refused_up_front_naming_the_annotation_line(tmp_path):
    (tmp_path / "videos").mkdir()
    data = _dataset_with(tmp_path, [_line("../etc/x")])
    with pytest.raises(InputError) as info:
        data.check_videos(["train"])
    assert info.value.path.endswith("train.jsonl") and info.value.line == 1 and info.value.field == "vid"


def test_a_symlink_out_of_the_video_folder_is_refused_unless_allowed(tmp_path):
    (tmp_path / "videos").mkdir()
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"not a video")
    (tmp_path / "videos" / "v1.mp4").symlink_to(outside)
    (tmp_path / "videos" / "v2.mp4").symlink_to("v1.mp4")              # a link inside the folder: fine
    data = _dataset_with(tmp_path, [_line("v1")])
    with pytest.raises(InputError, match="outside the video folder.*--follow-symlinks") as info:
        data.check_videos(["train"])
    assert info.value.line == 1
    from r2bench.datasets.registry import get_dataset
    allowed = get_dataset("synthetic").bind(tmp_path / "ann", tmp_path / "videos", follow_symlinks=True)
    assert allowed.check_videos(["train"]).found["v1"] == tmp_path / "videos" / "v1.mp4"


# --------------------------------------------------------------------------- clean output

def test_a_byte_order_mark_is_read_as_text(tmp_path):
    from r2bench.datasets.registry import get_dataset
    path = tmp_path / "val.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_line("v1")).encode() + b"\n")
    (sample,) = get_dataset("synthetic").read(path)
    assert sample.vid == "v1"


def test_warnings_are_log_lines_in_the_projects_format(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    line = _line("v1")
    line["relevant_windows"] = [[0, 20.5]]                # past the 20-s video by less than a clip: clamped
    path.write_text(json.dumps(line) + "\n")
    proc = subprocess.run([sys.executable, "-m", "r2bench.datasets", "--dataset", "synthetic", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "warning: " in proc.stderr and "ClampWarning" not in proc.stderr and ".py:" not in proc.stderr


def test_decords_own_error_line_does_not_leak(tmp_path, capfd):
    from r2bench.datasets.video import read_frames
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(InputError, match="cannot decode video"):
        read_frames(bad, 0.5, 32)
    err = capfd.readouterr().err
    assert "ERROR opening" not in err and "moov atom" not in err
