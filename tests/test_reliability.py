"""Faults end in a clear record and never in a lost or stale result: non-finite losses, CUDA
out-of-memory, Ctrl-C and resume, failed re-runs, stale features, damaged checkpoints, bad
command lines, quiet output, file permissions, no network."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

import r2bench.bench.train as T
from r2bench import cli
from r2bench.bench import orchestrate
from r2bench.bench.ledger import Ledger


@pytest.fixture
def env(small_bench, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(small_bench["cache"]))
    return small_bench


def records(out):
    return Ledger(Path(out) / "table9").records()


def no_temp_files(root):
    return [p for p in Path(root).rglob(".*") if ".r2tmp-" in p.name or p.name.endswith(".tmp")]


# ---- faults ---------------------------------------------------------------------------------
def test_a_nan_loss_is_recorded_with_its_step_and_terms_and_the_suite_goes_on(env, tmp_path, monkeypatch):
    real, calls = T.train_step, []

    def nan_at_third_step_of_the_first_run(model, batch, state):
        losses = real(model, batch, state)
        calls.append(state.step)
        if len(calls) == 3:
            losses = {k: v * float("nan") if k in ("total", "cls") else v for k, v in losses.items()}
        return losses

    monkeypatch.setattr(T, "train_step", nan_at_third_step_of_the_first_run)
    code = cli.run_main(env["argv"](tmp_path, "--seeds", "0", "1", epochs=1))
    first, second = records(tmp_path)
    assert code == 1                                   # some run failed
    assert first["status"] == "failed" and "non-finite loss at step 3 (epoch 1)" in first["error"]
    assert first["fault"]["kind"] == "non_finite_loss" and first["fault"]["step"] == 3
    assert set(first["fault"]["losses"]) == {"cls", "reg", "saliency", "video_calibration", "layer_calibration", "total"}
    assert second["status"] == "ok" and second["seed"] == 1 and second["metrics"]


def test_cuda_out_of_memory_is_retried_with_accumulation_until_it_fits_and_names_the_failed_step(env, tmp_path,
                                                                                                 monkeypatch):
    real = T.train_step

    def oom_above_one_sample(model, batch, state):      # a GPU where only one sample fits at a time
        if max(len(mb.batch["qid"]) for mb in batch) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, batch, state)

    monkeypatch.setattr(T, "train_step", oom_above_one_sample)
    assert cli.run_main(env["argv"](tmp_path / "a", "--epochs", "1", "--no-oom-retry")) == 1
    (failed,) = records(tmp_path / "a")
    assert failed["status"] == "failed" and "out of memory" in failed["error"]
    assert failed["fault"] == dict(kind="out_of_memory", step="training step 1 (epoch 1): batch of 4 in 1 "
                                   "micro-batch(es) of up to 4", phase="train", failed_batch=4, failed_micro_batch=4,
                                   batch_size=4, accumulate=1, micro_batch=4, peak_gib=None, device_gib=None)

    assert cli.run_main(env["argv"](tmp_path / "b", "--epochs", "1")) == 0       # retried by default
    (retried,) = records(tmp_path / "b")
    assert retried["run_id"] == failed["run_id"]         # the run asked for, recorded as retried
    assert retried["status"] == "ok" and retried["train_config"]["accumulate"] == 4
    assert [a["accumulate"] for a in retried["oom_retry"]] == [1, 2]              # 4 -> 2 -> 1 sample at a time
    assert [a["failed_micro_batch"] for a in retried["oom_retry"]] == [4, 2]


def test_ctrl_c_mid_run_records_it_and_the_rerun_resumes_to_the_same_numbers(env, tmp_path, monkeypatch):
    argv = env["argv"](tmp_path / "cut", epochs=2)
    assert cli.run_main(env["argv"](tmp_path / "whole", epochs=2)) == 0
    (whole,) = records(tmp_path / "whole")
    steps_per_epoch = -(-len(env["data"].samples("train")) // 4)
    real = T.train_step

    def interrupt_in_epoch_2(model, batch, state):
        if state.step == steps_per_epoch + 1:          # the second step of the second epoch
            raise KeyboardInterrupt
        return real(model, batch, state)

    monkeypatch.setattr(T, "train_step", interrupt_in_epoch_2)
    assert cli.run_main(argv) == 130
    (cut,) = records(tmp_path / "cut")
    assert cut["status"] == "interrupted" and cut["resume_epoch"] == 1 and "resumes from epoch 1" in cut["error"]
    assert not no_temp_files(tmp_path / "cut")

    monkeypatch.setattr(T, "train_step", real)
    assert cli.run_main(argv) == 0
    (done,) = records(tmp_path / "cut")
    assert done["run_id"] == whole["run_id"] and done["status"] == "ok" and done["resumed_from_epoch"] == 1
    assert done["metrics"] == whole["metrics"] and done["final_losses"] == whole["final_losses"]
    assert not list((tmp_path / "cut").rglob("resume.safetensors"))      # removed once the run is complete


def test_a_failed_fresh_rerun_keeps_the_ok_record(env, tmp_path, monkeypatch):
    assert cli.run_main(env["argv"](tmp_path, epochs=1)) == 0
    (ok,) = records(tmp_path)

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(T, "train_step", broken)
    assert cli.run_main(env["argv"](tmp_path, "--fresh", epochs=1)) == 1
    (kept,) = records(tmp_path)
    assert kept["status"] == "ok" and kept["metrics"] == ok["metrics"] and kept["started"] == ok["started"]
    assert [a["status"] for a in kept["failed_attempts"]] == ["failed"]
    assert "disk on fire" in kept["failed_attempts"][0]["error"]
    results = (tmp_path / "table9" / "results.csv").read_text()
    assert ",ok," in results and "disk on fire" not in results


def test_a_video_replaced_after_caching_is_never_trained_from_old_features(env, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    shutil.copytree(env["videos"], videos)
    argv = [*env["argv"](tmp_path / "out", epochs=1), "--video-dir", str(videos)]
    assert cli.run_main(argv) == 0
    victim = sorted(videos.glob("*.mp4"))[0]
    victim.write_bytes(b"")                                          # emptied after its features were cached
    assert cli.run_main([*argv, "--fresh"]) == 0                    # the video is left out, never its old features
    (record,) = records(tmp_path / "out")
    assert record["videos"]["unreadable"] == 1 and record["videos"]["missing"] == 0
    assert record["videos"]["examples"][0]["vid"] == victim.stem
    split = "train" if record["videos"]["skipped_queries"]["train"] else "val"
    assert record["videos"]["skipped_queries"][split] >= 1


@pytest.mark.slow        # the default run has test_e2e.py::test_same_seed_same_numbers_on_cpu (one cache)
def test_same_seed_same_metrics_across_fresh_caches(env, tmp_path, monkeypatch):
    outs = []
    for name in ("a", "b"):
        monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path / f"cache-{name}"))   # features computed anew
        assert cli.run_main(env["argv"](tmp_path / name, epochs=1)) == 0
        (r,) = records(tmp_path / name)
        outs.append((r["run_id"], r["metrics"], r["final_losses"], Path(r["predictions"]).read_text()))
        assert list((tmp_path / f"cache-{name}" / "features").rglob("*.safetensors"))
    assert outs[0] == outs[1]


# ---- bad command lines ----------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--device", "foo"], "--device foo: not a device"),
    (["--device", "mps"], "runs on cpu or cuda, not mps"),
    pytest.param(["--device", "cuda"], "no CUDA device", marks=pytest.mark.skipif(torch.cuda.is_available(),
                                                                                   reason="has CUDA")),
    (["--backbone", "roberta-ViT-B-32"], "Hugging Face hub"),
    (["--methods", "frozn"], "--methods frozn: no such method"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", "-3"], "--epochs must be at least 1"),
    (["--launcher", "slurm", "--time", "0"], "--time, --mem-gb and --max-parallel must be at least 1"),
])
def test_bad_settings_exit_2_with_a_message_and_no_traceback(env, tmp_path, caplog, argv, message):
    assert cli.run_main(env["argv"](tmp_path / "out", *argv)) == 2
    assert message in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "out" / "table9" / "ledger.jsonl").exists()


def test_an_unwritable_out_folder_exits_2_naming_it(tmp_path, caplog):
    if os.geteuid() == 0:        # root writes anywhere: use a path under a file
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "out"
    assert cli.run_main(["--paper-scale", "--out", str(out), "--quiet"]) == 2
    assert f"--out {out}: cannot write there" in caplog.text and "Traceback" not in caplog.text


def test_tiny_clip_refuses_zero_steps(capsys):
    from r2bench.datasets.synthetic import tiny_clip
    with pytest.raises(SystemExit) as e:
        tiny_clip.main(["--steps", "0", "--out", "/nonexistent/never.safetensors"])
    assert e.value.code == 2 and "--steps must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 1 step"):
        tiny_clip.train(steps=0)


# ---- quiet, permissions, no network ---------------------------------------------------------
def test_quiet_prints_no_progress_bar_and_no_library_log_line(env, tmp_path, capfd, caplog, monkeypatch):
    from r2bench.datasets.synthetic import tiny_clip
    seen = {}

    def fake_ensure(seed=0, progress=True):
        seen["progress"] = progress
        return env["weights"]

    monkeypatch.setattr(tiny_clip, "ensure_tiny_clip", fake_ensure)
    caplog.set_level(logging.INFO)
    argv = [a for a in env["argv"](tmp_path, epochs=1) if a != str(env["weights"])]
    argv.remove("--weights")                           # the default tiny CLIP: ensure_tiny_clip
    assert cli.run_main(argv) == 0
    err = capfd.readouterr().err
    assert seen["progress"] is False
    assert "it/s" not in err and "%|" not in err
    assert not [r for r in caplog.records if "open_clip" in r.pathname]
    assert "suite table9" in caplog.text                 # our own lines stay


def test_outputs_get_the_usual_permissions(tmp_path):
    from r2bench.core.io import atomic_write, temp_dir_for
    old = os.umask(0o022)
    try:
        assert (atomic_write(tmp_path / "a.txt", "x").stat().st_mode & 0o777) == 0o644
        os.umask(0o002)
        assert (atomic_write(tmp_path / "b.txt", "x").stat().st_mode & 0o777) == 0o664
        assert (temp_dir_for(tmp_path / "dir").stat().st_mode & 0o777) == 0o775
    finally:
        os.umask(old)


def test_a_small_suite_touches_no_network(env, tmp_path, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted during a run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert cli.run_main(env["argv"](tmp_path, epochs=1)) == 0
    assert cli.run_main(["--backbone", "roberta-ViT-B-32", "--random-init", "--out", str(tmp_path / "hub"), "--quiet"]) == 2
    assert attempts == []
    (record,) = records(tmp_path)
    assert record["status"] == "ok"


def test_job_commands_carry_the_suite_options_but_not_the_launcher_ones():
    from r2bench.bench.launch import job_argv, job_command
    argv = ["--suite", "all", "--launcher", "slurm", "--partition", "gpu", "--time", "60", "--run-id", "a", "b",
            "--seeds", "0", "1", "--epochs", "3", "--gpus-per-run=2", "--set", "train.lr=1e-4"]
    assert job_argv(argv, "table9-x", "table9") == ["--seeds", "0", "1", "--epochs", "3", "--set", "train.lr=1e-4",
                                                    "--suite", "table9", "--run-id", "table9-x", "--launcher", "inline"]
    cmd = job_command(argv, "table9-x", "table9", gpus=2)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] and "r2bench.bench.ddp" in cmd


def test_thread_settings_default_to_the_cores_and_a_passive_wait_and_yield_to_the_user():
    from r2bench.bench.threads import available_cores, configure_early, threads_from_argv
    assert configure_early(None, env := {}) == {"OMP_NUM_THREADS": str(available_cores()), "OMP_WAIT_POLICY": "PASSIVE"}
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert configure_early(None, {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}) == \
        {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}                     # the environment wins
    assert configure_early(2, {"OMP_NUM_THREADS": "3"}) == \
        {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}   # --threads wins
    assert threads_from_argv(["--suite", "x", "--threads", "4"]) == 4 and threads_from_argv(["--threads=1"]) == 1
    assert threads_from_argv(["--threads", "0"]) is None and threads_from_argv([]) is None
