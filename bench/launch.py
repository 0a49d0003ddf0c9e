"""Runs of a suite as cluster jobs: ``r2bench run --launcher slurm`` submits every run that is
not done yet as one Slurm job through submitit, waits for them, and renders the tables.

Each job is the same command line narrowed to one run (``--run-id``), so a job runs exactly
the code path of a local run and appends its own record to the suite's ledger, which is
safe for concurrent writers (a file lock). With ``--gpus-per-run G > 1`` the job runs that
one run over G GPUs with ``torchrun -m bench.ddp``. A job that dies without a record (time
limit, node failure, preemption) gets a ``failed`` record naming the job and its reason; a
later run of the same command resubmits it, and it resumes from its last epoch checkpoint.

``--launcher submitit-local`` runs the same jobs as local processes with submitit's local
executor: to try a cluster setup on one machine (the tests use it).

What submitit writes per job (the job's command line, its stdout and stderr, a pickled job
and result) lives under ``OUT/<suite>/jobs/``: files this process writes and reads itself;
no model weights or results travel through pickle.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone

import os

from r2bench.core.io import PACKAGE_ROOT

log = logging.getLogger(__name__)

LAUNCHERS = ("inline", "slurm", "submitit-local")
# options of run_all.py that only the submitting process reads: (flag, takes a value)
_SUBMIT_ONLY = {"--launcher": 1, "--partition": 1, "--gpus-per-run": 1, "--cpus-per-run": 1, "--time": 1,
                "--mem-gb": 1, "--max-parallel": 1, "--slurm-account": 1, "--slurm-constraint": 1,
                "--report": 0, "--run-id": -1, "--suite": 1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (--launcher slurm)")
    g.add_argument("--launcher", choices=LAUNCHERS, default="inline",
                   help="inline: run here, one after another (default); slurm: one Slurm job per run "
                        "(submitit); submitit-local: the same jobs as local processes")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per job; > 1 runs it with torchrun (default 1)")
    g.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores per job (default 8)")
    g.add_argument("--time", type=int, default=240, help="time limit per job, minutes (default 240)")
    g.add_argument("--mem-gb", type=int, default=64, help="memory per job, GB (default 64)")
    g.add_argument("--max-parallel", type=int, default=32, help="jobs of the array running at once (default 32)")
    g.add_argument("--slurm-account", help="Slurm account to charge")
    g.add_argument("--slurm-constraint", help="Slurm node constraint, e.g. a GPU type")


def job_argv(argv: list[str], run_id: str, suite: str) -> list[str]:
    """``argv`` without the submitting process's options, narrowed to ``run_id`` of ``suite``."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        flag = arg.split("=", 1)[0]
        i += 1
        if flag in _SUBMIT_ONLY:
            if "=" not in arg:
                if _SUBMIT_ONLY[flag] < 0:          # a list: up to the next option
                    while i < len(argv) and not argv[i].startswith("--"):
                        i += 1
                else:
                    i += _SUBMIT_ONLY[flag]
            continue
        out.append(arg)
    return [*out, "--suite", suite, "--run-id", run_id, "--launcher", "inline"]


def job_command(argv: list[str], run_id: str, suite: str, gpus: int) -> list[str]:
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                "-m", "r2bench.bench.ddp", *job_argv(argv, run_id, suite)]
    return [sys.executable, "-m", "r2bench", "run", *job_argv(argv, run_id, suite)]


def job_env() -> dict[str, str]:
    """The job's environment: this one, with this r2bench importable (a checkout need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT.parent), env.get("PYTHONPATH")) if p)
    return env


def check_launcher(args) -> None:
    """Fail before anything runs if ``--launcher`` cannot work here (``ValueError``)."""
    if args.gpus_per_run < 1 or args.cpus_per_run < 1 or args.time < 1 or args.max_parallel < 1 or args.mem_gb < 1:
        raise ValueError("--gpus-per-run, --cpus-per-run, --time, --mem-gb and --max-parallel must be at least 1")
    if args.launcher == "inline":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ValueError(f"--launcher {args.launcher} needs submitit: pip install '.[slurm]'") from None


def executor_for(args, folder):
    import submitit
    executor = submitit.AutoExecutor(folder=folder, cluster="local" if args.launcher == "submitit-local" else "slurm")
    params = dict(timeout_min=args.time, cpus_per_task=args.cpus_per_run, mem_gb=args.mem_gb, tasks_per_node=1,
                  nodes=1, name="r2bench", slurm_array_parallelism=args.max_parallel)
    if args.device != "cpu":
        params["gpus_per_node"] = args.gpus_per_run
    if args.partition:
        params["slurm_partition"] = args.partition
    extra = {k: v for k, v in (("account", args.slurm_account), ("constraint", args.slurm_constraint)) if v}
    if extra:
        params["slurm_additional_parameters"] = extra
    executor.update_parameters(**params)
    return executor


def submit_and_collect(todo, args, ledger) -> dict[str, str]:
    """Submit one job per ``(spec, ctx, run_id)`` of ``todo``, wait for all, and record a
    failure for every job that ended without a record of its run. Returns ``{run_id: status}``
    of the jobs: ``failed`` for a job that exited non-zero, even if the ledger keeps an
    earlier ok record of its run."""
    import submitit
    folder = ledger.directory / "jobs"
    executor = executor_for(args, folder)
    gpus = args.gpus_per_run if args.device != "cpu" else 1
    with executor.batch():
        jobs = [(spec, ctx, run_id, executor.submit(submitit.helpers.CommandFunction(
            job_command(args.argv, run_id, ctx.suite, gpus), cwd=os.getcwd(), env=job_env()))) for spec, ctx, run_id in todo]
    log.info("submitted %d job(s) (%s): %s", len(jobs), args.launcher, ", ".join(j.job_id for *_, j in jobs))
    outcome = {}
    for spec, ctx, run_id, job in jobs:
        start = time.perf_counter()
        try:
            job.result()
            reason = None
        except Exception as e:   # the job failed or was killed: its own record (if any) says more
            reason = f"job {job.job_id} ended with {type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e).strip() else ''}"
        record = next((r for r in ledger.records() if r["run_id"] == run_id), None)
        if record is None or record.get("status") == "running":
            from r2bench.bench.run import base_record
            failed = base_record(spec, ctx, run_id)
            failed.update(status="failed", error=reason or f"job {job.job_id} left no record",
                          job_id=job.job_id, wall_s=round(time.perf_counter() - start, 1),
                          finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            ledger.append(failed)
            log.error("run %s: %s (logs: %s)", run_id, failed["error"], folder)
            outcome[run_id] = "failed"
        else:
            outcome[run_id] = "failed" if reason else record.get("status")
            log.info("run %s: %s (job %s)", run_id, outcome[run_id], job.job_id)
    return outcome
