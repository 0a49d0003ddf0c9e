"""Sizes and training presets of the built-in benchmark, and the version string runs carry.

``SIZES[size]``: arguments of ``generator.generate`` (videos per split, seconds per video).
``PRESETS[size]``: ``train`` (``bench.train.TrainConfig`` overrides) and ``head``
(``HeadConfig`` overrides) for that size. ``benchmark_version(size)`` names the generator
version, the tiny CLIP recipe version and the size, e.g. ``"synthetic-g2c2-default"``:
results from different versions or sizes must never be pooled or compared as if they were
one benchmark. docs/benchmark.md gives the reasoning and the measured cost of each size.
``seed_calibration(records)``: the shipped seed variance of the default benchmark
(``seed_calibration.json``), for method-level marks on one-seed tables (docs/statistics.md).
"""
from __future__ import annotations

import json
from pathlib import Path

from r2bench.datasets.synthetic.generator import GENERATOR_VERSION

SIZE_NAMES = ("small", "default", "large")
DEFAULT_SIZE = "default"

# Videos per split (about 3.2 queries per video since generator v3; 2.2 before) and seconds per
# video. Sized by cost: each size keeps the number of queries of generator v2's size of the
# same name (default: ≈ 364 train, ≈ 667 val queries), so the ten Table 9 rows cost what they
# did; see docs/benchmark.md for the cost model and the measured power of each size.
SIZES: dict[str, dict] = {
    "small": dict(n_train=56, n_val=84, n_test=14, duration=60),
    "default": dict(n_train=112, n_val=210, n_test=28, duration=60),
    "large": dict(n_train=280, n_val=700, n_test=70, duration=60),
}

_HEAD = dict(dropout=0.1, saliency_weight=0.1, nms="hard", nms_threshold=0.7)
PRESETS: dict[str, dict] = {
    "small": dict(train=dict(batch_size=16, lr=1e-3, epochs=3, warmup_iters=20, lr_drop_epoch=2), head=_HEAD),
    "default": dict(train=dict(batch_size=16, lr=1e-3, epochs=3, warmup_iters=20, lr_drop_epoch=2), head=_HEAD),
    "large": dict(train=dict(batch_size=16, lr=1e-3, epochs=4, warmup_iters=30, lr_drop_epoch=3), head=_HEAD),
}


def check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"unknown benchmark size {size!r}; choose one of {list(SIZE_NAMES)}")
    return size


def benchmark_version(size: str = DEFAULT_SIZE) -> str:
    """``"synthetic-g<generator version>c<tiny CLIP version>-<size>"``."""
    from r2bench.datasets.synthetic.tiny_clip import TINY_CLIP_VERSION   # imports torch and open_clip: only when asked
    return f"synthetic-g{GENERATOR_VERSION}c{TINY_CLIP_VERSION}-{check_size(size)}"


# --------------------------------------------------------------------------- seed calibration
CALIBRATION_FILE = Path(__file__).with_name("seed_calibration.json")
# training settings a run may differ in without changing what it learns (not compared)
_NOT_COMPARED = ("seed", "accumulate", "eval_batch_size")


def training_settings(config: dict | None) -> dict:
    """A run's ``train_config`` without what does not change what it learns (what a
    calibration is matched on)."""
    return {k: v for k, v in (config or {}).items() if k not in _NOT_COMPARED}


def seed_calibration(records: list[dict], path: Path = CALIBRATION_FILE) -> dict[str, dict] | None:
    """The shipped calibrated seed variance, ``{metric key: dict(seed_sd, df, noise_sd, source)}``,
    when it applies to every run of ``records``: the benchmark version, the tiny CLIP weights and
    the training settings it was measured with (``docs/measurements/benchmark/calibrate.py``
    writes the file); else None. A run trained longer, at another learning rate or on other
    weights has another seed variance, so a one-seed table of it gets no method-level marks."""
    if not records:
        return None
    try:
        shipped = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for entry in shipped.get("calibrations", []):
        match = entry.get("match", {})
        if all(r.get("benchmark_version") == match.get("benchmark_version")
               and r.get("weights") == match.get("weights")
               and training_settings(r.get("train_config")) == training_settings(match.get("train_config")) for r in records):
            return entry.get("metrics")
    return None
