"""Per-row costs on the built-in benchmark, for sizing it to the Quickstart budget.

    OMP_NUM_THREADS=1 python docs/measurements/benchmark/timing.py --n-train 40 --n-val 40 --epochs 2

Times, in process CPU seconds (one thread, so CPU time is close to the wall time of an
unloaded core even on a busy machine) and in wall seconds: benchmark generation per video,
tiny CLIP pretraining per step, feature caching per video, and per row (w/o Tuning and
R²-Tuning from cached features; "frames" = w/o Tuning with the whole tiny CLIP trainable,
run from frames, the cost model of the full/PETL rows) the training cost per sample, the
evaluation cost per query and the fixed per-run overhead (paper-setting memory estimate).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402

from r2bench.bench.run import RunContext, RunSpec, execute  # noqa: E402
from r2bench.datasets.registry import synthetic_dataset  # noqa: E402
from r2bench.datasets.synthetic import generator  # noqa: E402
from r2bench.methods.model import TransferModel  # noqa: E402
from r2bench.methods.registry import register  # noqa: E402
from r2bench.methods.tuners.frozen import FrozenConfig  # noqa: E402


@register("timing_frames", label="timing: frozen head, trainable CLIP, from frames", category="full",
          config=FrozenConfig)
def _build(backbone, cfg):
    backbone.clip.requires_grad_(True)
    return TransferModel(backbone, cfg, backbone_grad=True)


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished children (ffmpeg)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Clock:
    def __enter__(self):
        self.cpu, self.wall = _cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu, self.wall = _cpu() - self.cpu, time.perf_counter() - self.wall


PHASES: dict[str, list[float]] = {}


def _timed(name, fn):
    """``fn`` with its process CPU seconds added to ``PHASES[name]``."""
    def wrapper(*a, **kw):
        start = time.process_time()
        try:
            return fn(*a, **kw)
        finally:
            PHASES.setdefault(name, []).append(time.process_time() - start)
    return wrapper


def main() -> None:
    import r2bench.bench.run as run
    for name in ("train", "predict", "build_features", "paper_memory", "paper_params"):
        setattr(run, name, _timed(name, getattr(run, name)))
    p = argparse.ArgumentParser()
    p.add_argument("--n-train", type=int, default=40)
    p.add_argument("--n-val", type=int, default=40)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", type=Path, default=Path(".cache/timing"))
    p.add_argument("--methods", nargs="+", default=["frozen", "r2_tuning", "timing_frames"])
    args = p.parse_args()
    out: dict = {"threads": torch.get_num_threads()}
    with Clock() as c:
        spec = synthetic_dataset(seed=123, progress=False, n_train=args.n_train, n_val=args.n_val, n_test=0)
    n_videos = args.n_train + args.n_val
    out["generate_per_video"] = dict(cpu=c.cpu / n_videos, wall=c.wall / n_videos)
    for method in args.methods:
        ctx = RunContext("timing", spec, "R2Bench-Tiny", args.weights, torch.device("cpu"), args.out / method,
                         train_overrides=dict(epochs=args.epochs), progress=False)
        PHASES.clear()
        with Clock() as c:
            rec = execute(RunSpec(method), ctx, f"timing-{method}")
        n_q = rec["n_train"] * args.epochs
        cpu = {k: sum(v) for k, v in PHASES.items()}
        # predict runs twice: on the eval split, then on up to 64 samples from frames (inference speed)
        out[method] = dict(wall_s=c.wall, cpu_s=c.cpu, phases_cpu=cpu, calls=PHASES.copy(),
                           train_cpu_per_sample=cpu["train"] / n_q,
                           eval_cpu_per_query=PHASES["predict"][0] / rec["n_eval"],
                           cache_cpu_per_video=cpu.get("build_features", 0.0) / n_videos,
                           n_train=rec["n_train"], n_eval=rec["n_eval"], train_wall_s=rec["train_seconds"],
                           mr_map=rec["metrics"]["MR-full-mAP"])
        print(method, json.dumps(out[method]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
