"""Runs side by side (``--jobs N``, :mod:`r2bench.bench.jobs`): the same numbers as one process,
every run recorded, a job that dies loses only its own run, and bad values are refused."""
from __future__ import annotations

import json
import sys

import pytest

from r2bench import cli
from r2bench.bench import jobs


def _ledger(out):
    return {r["method"]: r for r in map(json.loads, (out / "table9" / "ledger.jsonl").read_text().splitlines())}


DYING_PLUGIN = '''
import os, signal
from dataclasses import dataclass
from r2bench.methods import HeadConfig, TransferModel, register


@dataclass
class DieConfig(HeadConfig):
    k: int = 1


@register("dies", label="Dies", category="METL", config=DieConfig)
def build(backbone, cfg):
    """Killed while building, as the kernel's out-of-memory killer would kill it."""
    os.kill(os.getpid(), signal.SIGKILL)
'''


def test_two_jobs_compute_what_one_process_computes_and_a_dying_job_loses_only_its_run(small_bench, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(small_bench["cache"]))
    plugin = tmp_path / "dies.py"
    plugin.write_text(DYING_PLUGIN)
    methods = ("frozen", "e3va")
    quick = ("--threads", "1", "--curve-queries", "0", "--infer-timing", "none")
    one = small_bench["argv"](tmp_path / "one", "--jobs", "1", *quick, methods=methods, epochs=1)
    two = small_bench["argv"](tmp_path / "two", "--jobs", "2", "--plugin", str(plugin), *quick,
                              methods=("dies", *methods), epochs=1)
    assert cli.run_main(one) == 0
    assert cli.run_main(two) == 1                      # one run failed: its job was killed
    a, b = _ledger(tmp_path / "one"), _ledger(tmp_path / "two")
    assert b["dies"]["status"] == "failed"
    assert "killed by SIGKILL" in b["dies"]["error"] and "out-of-memory" in b["dies"]["error"]
    for m in methods:                                  # the other job went on with the rest
        assert b[m]["status"] == "ok" and b[m]["jobs"] == 2 and "jobs" not in a[m]
        assert b[m]["threads"] == a[m]["threads"] == 1 and b[m]["cpu_s"] > 0
        assert a[m]["metrics"] == b[m]["metrics"], m          # one thread each: bit for bit the same
    assert (tmp_path / "two" / "table9" / "table9.md").is_file()


# ---- the process pool alone (no torch in the jobs: fast) ---------------------------------------

DIE_ON_B = ("import sys, os\nfor line in sys.stdin:\n    if line.strip() == 'b':\n        os._exit(3)\n"
            "    print('ok', line.strip(), flush=True)\n")


def test_the_pool_hands_out_every_run_and_reports_a_lost_one():
    answered, lost = [], []
    left = jobs.run_in_jobs(list("abcdef"), [[sys.executable, "-c", DIE_ON_B]] * 2,
                            {}, on_answer=lambda r, s: answered.append((r, s)), on_lost=lambda r, c: lost.append((r, c)))
    assert left == [] and lost == [("b", 3)]
    assert sorted(r for r, _ in answered) == list("acdef") and {s for _, s in answered} == {"ok"}


def test_runs_no_job_is_left_for_come_back_to_the_caller():
    lost = []
    left = jobs.run_in_jobs(list("abc"), [[sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(2)"]], {},
                            on_answer=lambda r, s: None, on_lost=lambda r, c: lost.append((r, c)))
    assert lost == [("a", 2)] and left == ["b", "c"]
    assert jobs.describe_exit(2) == "exited with status 2"


def test_auto_jobs_and_thread_shares():
    assert jobs.auto_jobs("cpu", 2, 10) == 2 and jobs.auto_jobs("cpu", 1, 10) == 1
    assert jobs.auto_jobs("cuda", 16, 10) == 1 and jobs.auto_jobs("cpu", 8, 1) == 1
    assert jobs.threads_per_job(2, 2, None) == 1 and jobs.threads_per_job(8, 2, None) == 4
    assert jobs.threads_per_job(8, 2, 3) == 3 and jobs.threads_per_job(1, 2, None) == 1
    command = jobs.job_command(["--suite", "all", "--threads", "2"], "table5", 1, 2, 3)
    assert command[-9:] == ["--suite", "table5", "--jobs", "1", "--threads", "1", "--quiet", jobs.SERVE_FLAG, "2/3"]
    from r2bench.bench.threads import threads_from_argv
    assert threads_from_argv(command) == 1             # the appended value wins, as in argparse


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_jobs_value_is_refused_before_anything_runs(value, tmp_path, caplog):
    code = cli.run_main(["--paper-scale", "--methods", "frozen", "--jobs", value, "--out", str(tmp_path / "o")])
    assert code == 2 and "--jobs must be auto or a whole number" in caplog.text
