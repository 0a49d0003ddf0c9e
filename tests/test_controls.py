"""The benchmark's controls on a reduced synthetic benchmark (docs/benchmark.md, "Controls").

Positive control: a head that sees one mean frame for the whole video must come out
significantly worse than w/o Tuning (paired permutation test of ``reports.stats`` on per-query MR
AP). The shuffled-query control is not tested here: at this reduced scale w/o Tuning barely
uses its query, and the sign of that control's effect flips with the number of epochs (at the
default size it is −2.0 MR mAP, significant). Negative
control: w/o Tuning under seeds {0, 1} against w/o Tuning under seeds {2, 3}, compared as if
they were two methods, must not come out significant with a test that counts retraining
variance (Welch's t on the per-seed MR mAP). The per-query test alone is not such a test: at
the default size it calls two seeds of one method "different" in 12 of 20 pairs.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as st

import bench.run
from bench.metrics.qvhighlights import MAX_PRED_WINDOWS, _mr_ap
from bench.run import RunContext, RunSpec, execute
from datasets.registry import synthetic_dataset
from reports.stats import paired_test
from datasets import vtg
from datasets.synthetic import tiny_clip
from methods.registry import build_model, get_method
from methods.backbone import Backbone

SIZES = dict(n_train=24, n_val=60, n_test=0, duration=30)
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
            mp.setattr(bench.run, "paper_memory", lambda *a: (0.0, "skipped"))   # not what this tests
            spec = synthetic_dataset(progress=False, size="small", **SIZES)
            model, _ = tiny_clip.train(seed=0, steps=40, batch_size=32, n_heldout=16, progress=False)
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


def test_positive_control_is_significantly_worse(runs):
    res = paired_test(runs["mean_frame"], runs["frozen_s0"], n_resamples=2000)
    assert res.n >= 100
    assert res.diff < 0 and res.high < 0 and res.p_value < 0.05, res


def test_negative_control_is_not_significant(runs):
    a = [runs[f"frozen_s{k}"].mean() for k in (0, 1)]
    b = [runs[f"frozen_s{k}"].mean() for k in (2, 3)]
    assert len(set(a + b)) == 4                                          # four different trained models
    assert st.ttest_ind(a, b, equal_var=False).pvalue > 0.05, (a, b)


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
    assert get_method("control_shuffled_queries").category == "frozen"
    assert get_method("control_mean_frame").label == "Control: mean frame"
