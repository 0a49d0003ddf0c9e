"""Whole processes: ``kill -9`` mid-suite and resume, one run over two torchrun processes
(gloo, CPU), and a suite submitted as jobs through submitit's local executor.

Marked ``slow`` (each starts several Python processes; about 3 minutes together on 2 cores):
deselected by default, run with ``pytest -m slow``.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r2bench import cli

from r2bench.bench import orchestrate
from r2bench.bench.ledger import Ledger

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(small_bench, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(small_bench["cache"]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    return small_bench


def records(out) -> list[dict]:
    return Ledger(Path(out) / "table9").records()


def same_metrics(a: dict, b: dict, tol: float = 0.0) -> bool:
    assert a.keys() == b.keys()
    return all((math.isnan(a[k]) and math.isnan(b[k])) or abs(a[k] - b[k]) <= tol for k in a)


def test_kill_9_mid_suite_loses_and_duplicates_nothing_and_the_run_resumes(env, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, str(REPO / "run_all.py"), *env["argv"](out, "--seeds", "0", "1", epochs=4)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = out / "table9" / "ledger.jsonl"
    deadline = time.time() + 300
    try:       # wait until seed 0 is recorded and seed 1 has written an epoch checkpoint, then kill -9
        while time.time() < deadline and proc.poll() is None:
            done = ledger.is_file() and len(ledger.read_text().splitlines()) == 1
            if done and [p for p in (out / "table9" / "runs").glob("*/resume.safetensors")]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the suite ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = records(out)
    assert [r["seed"] for r in before] == [0] and before[0]["status"] == "ok"

    assert cli.run_main(env["argv"](out, "--seeds", "0", "1", epochs=4)) == 0
    after = records(out)
    assert after[0] == before[0]                                       # the finished run untouched
    assert [r["seed"] for r in after] == [0, 1] and after[1]["status"] == "ok"
    assert after[1]["resumed_from_epoch"] and after[1]["resumed_from_epoch"] >= 1
    assert not [p for p in out.rglob(".*") if ".r2tmp-" in p.name]    # the killed writer's temp files are gone


def test_torchrun_two_gloo_processes_match_the_single_process_run(env, tmp_path):
    """Two processes (gloo, CPU) compute what one process computes with ``accumulate=2``: same
    run id, metrics equal within 1e-6 (we measured them equal to the last bit)."""
    common = env["argv"](None, "--methods", "r2_tuning", epochs=2)
    i = common.index("--out")
    del common[i:i + 2]
    assert cli.run_main([*common, "--out", str(tmp_path / "one"), "--set", "train.batch_size=4",
                         "train.accumulate=2"]) == 0
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "r2bench.bench.ddp", *common, "--out", str(tmp_path / "two")], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (one,), (two,) = records(tmp_path / "one"), records(tmp_path / "two")
    assert two["status"] == "ok" and two["processes"] == 2 and one["processes"] == 1
    assert two["run_id"] == one["run_id"]
    assert same_metrics(one["metrics"], two["metrics"], tol=1e-6)
    assert same_metrics(one["final_losses"], two["final_losses"], tol=1e-5)


def test_launcher_submitit_local_runs_each_run_as_a_job_into_one_ledger(env, tmp_path):
    out = tmp_path / "out"
    argv = env["argv"](out, "--seeds", "0", "1", "--launcher", "submitit-local", "--max-parallel", "2", epochs=1)
    assert cli.run_main(argv) == 0
    recs = records(out)
    assert sorted(r["seed"] for r in recs) == [0, 1] and all(r["status"] == "ok" and r["metrics"] for r in recs)
    assert len({r["run_id"] for r in recs}) == 2
    jobs = out / "table9" / "jobs"
    assert len(list(jobs.glob("*_submitted.pkl"))) + len(list(jobs.glob("*_result.pkl"))) >= 2
    # the same runs inline are done already: nothing is submitted again
    assert cli.run_main(env["argv"](out, "--seeds", "0", "1", epochs=1)) == 0
    assert records(out) == recs
