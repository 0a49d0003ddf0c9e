"""Runs of one command side by side on one machine: ``r2bench run --jobs N``.

On a CPU, one training process with every core uses them poorly: the tiny models of the
built-in benchmark are made of small operations, and a second thread adds little (a Table 9 row
at 2 threads runs at about 1.4 cores). Two processes with one thread each, each training its own
run, finish the suite about 1.4x sooner (docs/benchmark.md, "Runtime", has the measurements).

How it works. The command that was given (the *coordinator*) plans the suite as usual: binds the
data (generating the built-in benchmark once), checks the videos and the ledger, and decides
which runs to do. It then starts ``N`` *job processes*: the same command line, with
``--suite <this suite> --jobs 1 --threads T --quiet --serve-runs K/N`` appended (the last value of
an option wins, so an experiment file or any other flag means the same there). Each job plans
the same suite (from the cache: cheap), then reads run ids on its standard input, one per line,
runs each exactly as the inline path does (the ledger claim, the OOM retry, the record), and
answers ``<status> <run id>`` on a private copy of its standard output (its own prints and
logs go to standard error). The coordinator hands out the next run id, in the suite's order, to
whichever job answers first, closes the jobs' inputs when nothing is left, and renders.

Failures. A job that dies (killed for memory, a crash in native code) loses only the run it
was on: the coordinator records that run as failed, naming the exit status, and the other jobs
take what remains; when none is left, the coordinator runs the rest itself. Ctrl-C reaches every
process of the terminal: each job records its run as interrupted (it resumes from its last
epoch checkpoint when the command runs again). SIGTERM to the coordinator is passed on to the
jobs, with the same effect.

This module only manages the processes and their protocol: it knows nothing of suites or runs
(:mod:`r2bench.bench.orchestrate` supplies the command and what to do with each answer), so the
imports flow one way.
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
from collections import deque
from typing import Callable

log = logging.getLogger("r2bench.run")

SERVE_FLAG = "--serve-runs"
SELF_STOP_S = 5.0            # after the coordinator stops, how long the jobs get to end by themselves
STOP_GRACE_S = 60.0          # after SIGTERM, how long a job may take to write its interrupted record


def auto_jobs(device_type: str, cores: int, runs: int) -> int:
    """``--jobs auto``: two processes on a CPU with at least two cores and two runs to do;
    otherwise one (a GPU is used by one process at a time here)."""
    if device_type != "cpu" or cores < 2 or runs < 2:
        return 1
    return 2


def threads_per_job(cores: int, jobs: int, threads: int | None) -> int:
    """The threads each job uses: ``--threads`` if given, else the cores shared out evenly."""
    return threads if threads is not None else max(1, cores // jobs)


def job_command(argv: list[str], suite: str, threads: int, index: int, jobs: int) -> list[str]:
    """The command line of job ``index`` of ``jobs``: the coordinator's own, with this suite, one job,
    ``threads`` threads, no progress bars, and serving runs appended (later values win)."""
    return [sys.executable, "-m", "r2bench.cli", "run", *argv, "--suite", suite, "--jobs", "1",
            "--threads", str(threads), "--quiet", SERVE_FLAG, f"{index}/{jobs}"]


def job_environment(memo_gb: float | None, jobs: int) -> dict[str, str]:
    """The jobs' environment: this one, the running ``r2bench`` first on the import path, and
    (unless a budget was given) each job's memo budget the default's share."""
    import r2bench
    from r2bench.core.memo import ENV, memo_budget
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(r2bench.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    if memo_gb is None and not env.get(ENV):
        env[ENV] = f"{memo_budget() / jobs / 2**30:.3f}"
    env.pop("RANK", None)
    return env


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}" + (" (the system's out-of-memory killer sends it)" if -code == 9 else "")
    return f"exited with status {code}"


def run_in_jobs(run_ids: list[str], commands: list[list[str]], env: dict[str, str], *,
                on_answer: Callable[[str, str], None],
                on_lost: Callable[[str, int], None]) -> list[str]:
    """Hand ``run_ids`` out, in order, to one process per entry of ``commands``; ``on_answer(run_id,
    status)`` for every answer, ``on_lost(run_id, exit_code)`` for a run whose job died before
    answering. Returns the run ids never handed out because no job was left (the caller runs them)."""
    pending = deque(run_ids)
    current: dict[subprocess.Popen, str | None] = {}
    sel = selectors.DefaultSelector()

    def give(proc: subprocess.Popen) -> None:
        if not pending:
            current[proc] = None
            _close(proc.stdin)
            return
        run_id = pending.popleft()
        try:
            proc.stdin.write(run_id + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):   # it died: the run goes back, its end is seen on its output
            pending.appendleft(run_id)
            current[proc] = None
            return
        current[proc] = run_id

    procs = []
    try:
        for command in commands[:max(1, min(len(commands), len(pending)))]:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                    bufsize=1)
            procs.append(proc)
            sel.register(proc.stdout, selectors.EVENT_READ, proc)
            give(proc)
        while sel.get_map():
            for key, _ in sel.select():
                proc = key.data
                line = proc.stdout.readline()
                if not line:                       # the job ended
                    sel.unregister(proc.stdout)
                    code = proc.wait()
                    if current.get(proc) is not None:
                        on_lost(current[proc], code)
                    current[proc] = None
                    continue
                status, _, run_id = line.strip().partition(" ")
                if run_id:
                    on_answer(run_id, status)
                    if current.get(proc) == run_id:
                        give(proc)
        return list(pending)
    finally:
        _stop(procs)


def _close(stream) -> None:
    try:
        stream.close()
    except OSError:
        pass


def _stop(procs: list[subprocess.Popen]) -> None:
    """Jobs still running (the coordinator was interrupted): SIGTERM, then wait for their records."""
    for proc in procs:                 # Ctrl-C reached them too: let them record their runs first
        try:
            proc.wait(timeout=SELF_STOP_S)
        except subprocess.TimeoutExpired:
            pass
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
    for proc in alive:
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for proc in procs:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                _close(stream)


class AnswerChannel:
    """A job's side: answers go to a private copy of the standard output it was started with,
    and file descriptor 1 then points at standard error, so that nothing else it prints (a
    library's chatter, a stray print) can be read as an answer."""

    def __init__(self):
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)

    def answer(self, run_id: str, status: str) -> None:
        self._out.write(f"{status} {run_id}\n")
        self._out.flush()
