"""Benchmarks (``perf`` marker, tests/perf) and slow end-to-end suite runs (``slow``) run only
when asked for:

    pytest tests/perf --benchmark-only                 # run them
    pytest tests/perf --benchmark-only --benchmark-autosave, later --benchmark-compare
    pytest -m perf tests/perf --benchmark-enable       # the same, with the plain tests too
    pytest -m slow                                     # the slow suite runs (minutes)

The default ``pytest`` run deselects both (they take minutes).

``small_bench``: a very small synthetic benchmark and a briefly pretrained tiny CLIP, made once per
test session in a private cache, and the ``run_all`` command line that trains on them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests run one suite process each (``--jobs 1``), so that what they patch in this process is what
# runs; tests/test_jobs.py runs the side-by-side path (``--jobs 2``, the CPU default) on purpose.
os.environ.setdefault("R2BENCH_JOBS", "1")


def _asked_for(config, marker: str) -> bool:
    expr = (config.getoption("markexpr", "") or "").replace(f"not {marker}", "")
    return marker in expr


def _benchmarks_asked_for(config) -> bool:
    opt = config.getoption
    return bool(opt("benchmark_only", False) or opt("benchmark_enable", False) or _asked_for(config, "perf"))


def pytest_collection_modifyitems(config, items):
    skip = [m for m, asked in (("perf", _benchmarks_asked_for(config)), ("slow", _asked_for(config, "slow")))
            if not asked]
    dropped = [it for it in items if any(it.get_closest_marker(m) is not None for m in skip)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = {id(it) for it in dropped}
        items[:] = [it for it in items if id(it) not in gone]


SMALL = dict(n_train=16, n_val=8, n_test=2, duration=20)


@pytest.fixture(scope="session")
def small_bench(tmp_path_factory):
    """``dict(root, annotations, videos, weights, cache, argv(out, *extra))`` — ``argv`` is a
    run_all command line (frozen row unless ``--methods`` is given, batch 4, 2 epochs)."""
    cache = tmp_path_factory.mktemp("small-bench-cache")
    old = os.environ.get("R2BENCH_CACHE")
    os.environ["R2BENCH_CACHE"] = str(cache)
    try:
        from r2bench.datasets.registry import synthetic_dataset
        from r2bench.datasets.synthetic.tiny_clip import pretrain
        data = synthetic_dataset(progress=False, **SMALL)
        weights, _ = pretrain(seed=0, steps=10, out=cache / "tiny.safetensors", progress=False)
    finally:
        if old is None:
            os.environ.pop("R2BENCH_CACHE", None)
        else:
            os.environ["R2BENCH_CACHE"] = old
    root = Path(data.video_dir).parent

    def argv(out, *extra, methods=("frozen",), epochs=2):
        args = ["--suite", "table9", "--dataset", "synthetic", "--annotations", str(root / "annotations"),
                "--video-dir", str(root / "videos"), "--weights", str(weights), "--set", "train.batch_size=4",
                "--epochs", str(epochs), "--out", str(out), "--quiet", "--device", "cpu"]
        if "--methods" not in extra:
            args += ["--methods", *methods]
        return [*args, *extra]

    return dict(root=root, annotations=root / "annotations", videos=root / "videos", weights=Path(weights),
                cache=cache, argv=argv, data=data)
