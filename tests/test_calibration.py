"""The shipped seed calibration of the built-in benchmark: which runs it applies to, and the
method-level marks it gives a one-seed table (docs/statistics.md)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from r2bench.datasets.synthetic import presets
from r2bench.reports import stats
from r2bench.reports.tables import common

TRAIN = {"epochs": 3, "batch_size": 16, "eval_batch_size": 32, "lr": 0.001, "seed": 0, "accumulate": 1}
MATCH = dict(benchmark_version="synthetic-g3c3-default", weights="tiny.safetensors#abc",
             train_config={k: v for k, v in TRAIN.items() if k not in ("seed", "accumulate", "eval_batch_size")})
METRICS = {"MR-full-mAP": dict(seed_sd=0.9, df=20, noise_sd=12.0, source="test")}


def _file(tmp_path):
    path = tmp_path / "seed_calibration.json"
    path.write_text(json.dumps(dict(calibrations=[dict(match=MATCH, metrics=METRICS)])))
    return path


def _record(**change):
    r = dict(benchmark_version=MATCH["benchmark_version"], weights=MATCH["weights"], train_config=dict(TRAIN))
    r.update(change)
    return r


def test_the_calibration_applies_only_to_runs_of_its_benchmark_weights_and_training(tmp_path):
    path = _file(tmp_path)
    other_seed = _record(train_config={**TRAIN, "seed": 2, "accumulate": 4, "eval_batch_size": 8})
    assert presets.seed_calibration([_record(), other_seed], path) == METRICS
    assert presets.seed_calibration([_record(), _record(train_config={**TRAIN, "epochs": 6})], path) is None
    assert presets.seed_calibration([_record(weights="other#1")], path) is None
    assert presets.seed_calibration([_record(benchmark_version="synthetic-g3c3-small")], path) is None
    assert presets.seed_calibration([], path) is None
    assert presets.seed_calibration([_record()], tmp_path / "missing.json") is None


def test_the_shipped_file_names_the_default_benchmark():
    shipped = json.loads(presets.CALIBRATION_FILE.read_text())
    entry = shipped["calibrations"][-1]
    assert entry["match"]["benchmark_version"] == presets.benchmark_version()
    assert entry["match"]["weights"].startswith("R2Bench-Tiny-v3")
    for key, m in entry["metrics"].items():
        assert 0 < m["seed_sd"] < 10 and m["df"] >= 6, key


def test_a_one_seed_row_gets_a_method_level_mark_only_with_a_calibration():
    rng = np.random.default_rng(0)
    qids = range(300)
    ref = pd.Series(rng.normal(30, 12, 300), index=qids)
    far = ref + 6 + pd.Series(rng.normal(0, 6, 300), index=qids)        # 6 points: beyond a 0.9 seed sd
    near = ref + 0.8 + pd.Series(rng.normal(0, 6, 300), index=qids)     # 0.8 points: within it
    matrices = {r: s.to_frame(0) for r, s in dict(ref=ref, far=far, near=near).items()}
    headline = {r: [float(m[0].mean())] for r, m in matrices.items()}
    cal = stats.SeedVariance(0.9, 20, 6.0, "test")
    with_cal, _ = common.cells_from_matrices(matrices, headline, "ref", "MR-full-mAP", calibration=cal)
    without, _ = common.cells_from_matrices(matrices, headline, "ref", "MR-full-mAP")
    assert with_cal["far"].text.endswith(common.MARK) and with_cal["far"].seed_variance == "calibrated"
    assert not with_cal["near"].text.endswith((common.MARK, stats.QUERY_MARK))   # the seed noise covers it
    assert without["far"].text.endswith(stats.QUERY_MARK)                        # per-query only, as before
    assert without["near"].text.endswith(stats.QUERY_MARK)                       # 0.8 is "these runs differ"
