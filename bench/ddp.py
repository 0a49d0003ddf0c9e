"""One training run over several processes (data parallel), started by torchrun:

    torchrun --standalone --nproc_per_node 2 -m r2bench.bench.ddp --suite table9 --methods r2_tuning [run_all options]

Every process runs the same command; rank 0 prepares the data and weights, writes the ledger,
checkpoints and tables, and the others only train with it, one run at a time. Each batch is
split into micro-batches spread over the processes (``bench.train``, ``bench.distributed``):
``W`` processes compute what one process computes with ``--set train.accumulate=W``, so the
run has that run's id and, on the CPU, its numbers (docs/reliability.md, "Scale-out"). Backend: NCCL on
CUDA (one GPU per process, ``LOCAL_RANK``), gloo on the CPU.
"""
from __future__ import annotations

import logging
import os
import sys


def device_argv(argv: list[str], local_rank: int, cuda: bool) -> list[str]:
    """``argv`` with ``--device`` pinned to this process's GPU (or the CPU)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--device":
            i += 2
            continue
        if argv[i].startswith("--device="):
            i += 1
            continue
        out.append(argv[i])
        i += 1
    return [*out, "--device", f"cuda:{local_rank}" if cuda else "cpu"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from r2bench.bench.threads import configure_early, threads_from_argv
    configure_early(threads_from_argv(argv))
    import torch
    import torch.distributed as dist

    if "LOCAL_RANK" not in os.environ:
        print("bench.ddp is started by torchrun: torchrun --standalone --nproc_per_node N -m r2bench.bench.ddp ...",
              file=sys.stderr)
        return 2
    local_rank = int(os.environ["LOCAL_RANK"])
    want_cpu = any(a in ("--device=cpu",) for a in argv) or ("--device" in argv and argv[argv.index("--device") + 1] == "cpu")
    cuda = torch.cuda.is_available() and not want_cpu
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        if dist.get_rank() != 0:
            logging.getLogger().setLevel(logging.WARNING)
            argv = [*argv, "--quiet"] if "--quiet" not in argv else argv
        from r2bench.cli import run_main
        return run_main(device_argv(argv, local_rank, cuda))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
