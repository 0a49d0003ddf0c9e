"""CPU threads and how they wait, set before PyTorch starts its thread pools.

PyTorch's OpenMP threads spin while they wait for work (libgomp's default). Alone on a
machine that is fastest; beside another busy process the spinning threads take the cores the
other needs, and both slow down several-fold (docs/reliability.md, "Shared cores", has the
measurements). The defaults here keep a run within ~10 % of its best alone and within
~2.5x beside another run: ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep), and as many
threads as cores this process may use. ``--threads N`` or ``OMP_NUM_THREADS`` /
``OMP_WAIT_POLICY`` in the environment override them.

This module imports nothing heavy: ``run_all.py`` calls :func:`configure_early` before
``import torch``, because OpenMP reads these variables once, when it starts.
"""
from __future__ import annotations

import os

DEFAULT_WAIT_POLICY = "PASSIVE"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_from_argv(argv: list[str]) -> int | None:
    """The value of ``--threads N`` / ``--threads=N`` in ``argv`` (None if absent or not a number);
    given twice, the last one (as argparse reads it: a job of ``--jobs`` appends its own)."""
    found = None
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else argv[i + 1] if arg == "--threads" and i + 1 < len(argv) else None
        if value is not None:
            found = int(value) if value.isdigit() and int(value) > 0 else None
    return found


def configure_early(threads: int | None, environ=os.environ) -> dict[str, str]:
    """Set the thread count (``threads``, else the environment's, else the cores available)
    and the wait policy (the environment's, else PASSIVE) in ``environ``; returns what is set."""
    if threads is not None:
        for var in THREAD_VARS:
            environ[var] = str(threads)
    elif "OMP_NUM_THREADS" not in environ:
        environ["OMP_NUM_THREADS"] = str(available_cores())
    environ.setdefault("OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY)
    return {k: environ[k] for k in (*THREAD_VARS, "OMP_WAIT_POLICY") if k in environ}


def apply(threads: int | None) -> None:
    """After torch is imported: the intra-op thread count (the pool may already exist, so
    this is all that can change then)."""
    import torch
    if threads is not None:
        torch.set_num_threads(threads)
