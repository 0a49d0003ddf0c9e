"""The benchmark's controls on a reduced synthetic benchmark (docs/benchmark.md, "Controls").

Positive control: a head that sees one mean frame for the whole video must come out
significantly worse than w/o Tuning (paired permutation test of ``reports.stats`` on per-query MR
AP of the two trained models). Negative control: w/o Tuning under seeds {0, 1} against w/o
Tuning under seeds {2, 3}, compared as if they were two methods with the table's significance
policy (``reports.stats.method_test``: seed and query variance), must not come out significant.

The reduced benchmark needs a tiny CLIP pretrained for 200 steps: with 40 steps (and with
30-s videos, where a position prior alone scores well) w/o Tuning learnt nothing beyond the
prior and tied with the mean-frame control (measured: 19.1 vs 18.6 and 36.4 vs 37.7 MR mAP).

Its two trained tests are marked ``slow`` (about 6 min on 2 cores: a 200-step pretraining and five trainings of 10 epochs);
``pytest -m slow tests/test_controls.py`` runs it. The statistics it relies on are unit-tested in
the default run (tests/test_stats.py).
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st

import r2bench.bench.run as bench_run
from r2bench.bench.metrics.qvhighlights import MAX_PRED_WINDOWS, _mr_ap
from r2bench.bench.run import RunContext, RunSpec, execute
from r2bench.datasets.registry import synthetic_dataset
from r2bench.reports.stats import method_test, paired_test
from r2bench.datasets import vtg
from r2bench.datasets.synthetic import tiny_clip
from r2bench.methods.registry import build_model, get_method
from r2bench.methods.backbone import Backbone


SIZES = dict(n_train=48, n_val=40, n_test=0, duration=60)
TRAIN = dict(epochs=10, batch_size=8, warmup_iters=5, lr_drop_epoch=None)


def per_query_map(record: dict, samples) -> np.ndarray:
    """MR AP per query (mean over IoU thresholds, points), in the order of ``samples``."""
    lines = {p["qid"]: p for p in map(json.loads, Path(record["predictions"]).read_text().splitlines())}
    gts = [np.asarray(s.raw["relevant_windows"], float).reshape(-1, 2) for s in samples]
    preds = [np.asarray(lines[s.qid]["pred_relevant_windows"], float)[:MAX_PRED_WINDOWS] for s in samples]
    return 100 * _mr_ap(gts, preds).mean(1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # small batches: threads only spin on a shared machine
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("R2BENCH_CACHE", str(root))
            mp.setattr(bench_run, "paper_memory", lambda *a: (0.0, "skipped"))   # not what this tests
            spec = synthetic_dataset(progress=False, size="small", **SIZES)
            model, _ = tiny_clip.train(seed=0, steps=200, batch_size=32, n_heldout=16, progress=False)
            weights = tiny_clip.save(model, root / "tiny.safetensors", {})
            samples = spec.samples("val")
            out = {}
            for name, method, seed in [(f"frozen_s{k}", "frozen", k) for k in range(4)] + [
                    ("mean_frame", "control_mean_frame", 0)]:
                ctx = RunContext("controls", spec, "R2Bench-Tiny", str(weights), torch.device("cpu"), root / "out",
                                 seed, train_overrides=TRAIN, progress=False)
                out[name] = per_query_map(execute(RunSpec(method), ctx, name), samples)
            yield out
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_positive_control_is_significantly_worse(runs):
    res = paired_test(runs["mean_frame"], runs["frozen_s0"], n_resamples=2000)
    assert res.n >= 90                                                  # 40 val videos, ~2.5 queries each
    assert res.diff < 0 and res.high < 0 and res.p_value < 0.05, res


@pytest.mark.slow
def test_negative_control_is_not_significant(runs):
    a = pd.DataFrame({k: runs[f"frozen_s{k}"] for k in (0, 1)})
    b = pd.DataFrame({k: runs[f"frozen_s{k}"] for k in (2, 3)})
    heads = list(a.mean()) + list(b.mean())
    assert len(set(heads)) == 4                                          # four different trained models
    res = method_test(a, b)
    assert res.seed_variance == "measured" and res.p_value > 0.05, (heads, res)


def test_controls_destroy_their_input():
    backbone = Backbone("R2Bench-Tiny")
    b, t = 3, 5
    video = torch.randn(b, t, 1, backbone.tokens_per_frame, backbone.video_width)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[2, 3:] = False
    ids = backbone.tokenize(["a red circle", "a blue square", "two green triangles"])
    seen = {}
    for name in ("control_shuffled_queries", "control_mean_frame", "frozen"):
        model = build_model(name, backbone, {"dropout": 0.0, "drop_path": 0.0}).eval()
        model.head.forward = lambda v, vm, txt, tm, name=name: seen.__setitem__(name, (v, txt))
        model({"video_taps": {"block": video}, "video_mask": mask, "text_ids": ids})
    text = backbone.text_tokens(ids, backbone.taps(1))[0]["block"]
    torch.testing.assert_close(seen["frozen"][1], text)
    torch.testing.assert_close(seen["control_shuffled_queries"][1], text.roll(1, 0))
    mean_video = seen["control_mean_frame"][0]
    torch.testing.assert_close(mean_video[0], video[0].mean(0, keepdim=True).expand(t, -1, -1, -1))
    torch.testing.assert_close(mean_video[2, :3], video[2, :3].mean(0, keepdim=True).expand(3, -1, -1, -1))
    assert (mean_video[2, 3:] == 0).all()
    assert get_method("control_shuffled_queries").category == "no-tuning"
    assert get_method("control_mean_frame").label == "Control: mean frame"
