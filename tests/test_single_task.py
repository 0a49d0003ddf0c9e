"""Training on a dataset that has one task only (issue 8, item 5): moment retrieval without
saliency labels (Charades-STA, TACoS, Ego4D-NLQ) and highlight detection without windows
(YouTube Highlights, TVSum: the public configs' head without regression, BCE on per-clip
targets, row-only SampledNCE, cls score alone at test time, positives above ½ / the median)."""
import math

import pytest
import torch
import torch.nn.functional as F

from r2bench.datasets.formats.base import Sample
from r2bench.datasets.registry import get_dataset
from r2bench.datasets.vtg import saliency_target
from r2bench.methods.head import (GroundingHead, HeadConfig, cls_saliency, decode, head_losses, merged_saliency,
                          output_saliency, sampled_nce)
from r2bench.methods.head.losses import positive_clips

HD = get_dataset("tvsum").preset.head


def _sample(**kw):
    base = dict(qid=1, vid="v", query="q", duration=10.0, windows=(), clip_ids=(), saliency=(), clip_seconds=2.0,
                num_clips=5, source="t:1", raw={})
    return Sample(**{**base, **kw})


# --------------------------------------------------------------------------- targets

def test_mr_only_target_marks_the_frames_of_each_window_as_the_public_code():
    # fps 1: window [2.5, 5.0] covers frames ceil(2.5)=3 … ceil(5)-1=4; [7, 7.2] is shorter than
    # a frame: widened to one frame about its centre (6.6-7.6): frames 7
    t = saliency_target(_sample(windows=((2.5, 5.0), (7.0, 7.2))), 10, 1.0)
    assert t.tolist() == [0, 0, 0, 1, 1, 0, 0, 1, 0, 0]


def test_label_targets_are_scaled_to_unit_range():
    s = _sample(clip_ids=(0, 1, 2), saliency=((1.0, 1.0), (3.0, 5.0), (5.0, 5.0)),
                saliency_target=(0.0, 0.75, 1.0), clip_seconds=2.0)
    assert saliency_target(s, 4, 0.5).tolist() == [0.0, 0.75, 1.0, 0.0]   # clip 3 unlabelled


# --------------------------------------------------------------------------- positives

@pytest.mark.parametrize("rule, expected", [
    ("nonzero", [[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]]),
    ("above_half", [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]]),
    # lower median of the real clips: row 0 [0, .5, .75, 1] -> .5; row 1 [.25, 1, 0] -> .25
    ("above_median", [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]]),
])
def test_positive_clip_rules(rule, expected):
    target = torch.tensor([[0.0, 0.5, 0.75, 1.0, 0.9], [0.25, 1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    assert positive_clips(target, mask, rule).int().tolist() == expected


def test_unknown_positive_rule_is_refused():
    with pytest.raises(ValueError, match="positive_clips"):
        HeadConfig(positive_clips="top3")
    with pytest.raises(ValueError, match="saliency_directions"):
        HeadConfig(saliency_directions=("row", "row"))
    with pytest.raises(ValueError, match="strides"):
        HeadConfig(regression=False)          # needs strides=(1,)


def test_row_only_sampled_nce_leaves_out_the_column_term():
    g = torch.Generator().manual_seed(0)
    sal, target = torch.randn(3, 6, generator=g), torch.rand(3, 6, generator=g)
    mask, pos, valid = torch.ones(3, 6, dtype=torch.bool), torch.tensor([1, 2, 3]), torch.ones(3, dtype=torch.bool)
    both = sampled_nce(sal, target, mask, 0.07, pos, valid)
    row = sampled_nce(sal, target, mask, 0.07, pos, valid, ("row",))
    col = sampled_nce(sal, target, mask, 0.07, pos, valid, ("col",))
    assert both == pytest.approx(float(row + col), rel=1e-5) and float(row) != pytest.approx(float(both))


# --------------------------------------------------------------------------- the HD head

def _head_and_out(cfg: HeadConfig, t=8, b=2):
    torch.manual_seed(0)
    head = GroundingHead(32, 16, cfg).eval()
    video, text = torch.randn(b, t, cfg.k, 5, 32), torch.randn(b, cfg.k, 4, 16)
    mask = torch.ones(b, t, dtype=torch.bool)
    return head, head(video, mask, text, torch.ones(b, 4, dtype=torch.bool))


def test_hd_head_has_no_regression_and_trains_cls_on_the_clip_targets():
    cfg = HeadConfig(**{**HD, "hidden": 16, "heads": 2, "k": 2})
    assert cfg.regression is False and cfg.cls_loss == "bce" and cfg.saliency_directions == ("row",)
    head, out = _head_and_out(cfg)
    assert head.reg_head is None and out.levels[0]["reg"] is None and len(out.levels) == 1
    target = torch.tensor([[0.0, 0.2, 0.9, 1.0, 0.4, 0.0, 0.6, 0.7]] * 2)
    losses = head_losses(out, [torch.zeros(0, 2)] * 2, torch.ones(2), target, cfg, torch.Generator().manual_seed(0))
    expected = F.binary_cross_entropy_with_logits(out.levels[0]["cls"].detach(), target)
    assert float(losses["reg"]) == 0.0
    assert float(losses["cls"].detach()) == pytest.approx(cfg.cls_weight * float(expected), rel=1e-5)


def test_hd_head_predicts_the_cls_score_alone_and_no_windows():
    cfg = HeadConfig(**{**HD, "hidden": 16, "heads": 2, "k": 2})
    _, out = _head_and_out(cfg)
    sal = output_saliency(out, cfg)
    assert torch.allclose(sal, cls_saliency(out)) and torch.allclose(sal, out.levels[0]["cls"].sigmoid())
    decoded = decode(out, torch.ones(2), torch.full((2,), 8.0), cfg)
    assert decoded[0]["windows"] is None and len(decoded[0]["saliency"]) == 8


def test_default_head_still_merges_cls_and_cosine():
    cfg = HeadConfig(hidden=16, heads=2, k=2)
    head, out = _head_and_out(cfg)
    assert head.reg_head is not None and cfg.regression and cfg.merge_cls_saliency
    assert torch.allclose(output_saliency(out, cfg), merged_saliency(out))


# --------------------------------------------------------------------------- presets

def test_single_task_datasets_use_the_public_switches():
    for name in ("youtube_highlights", "tvsum", "synthetic_hd_binary", "synthetic_hd_graded"):
        head = get_dataset(name).preset.head
        assert head["regression"] is False and head["strides"] == (1,) and head["merge_cls_saliency"] is False
    assert get_dataset("youtube_highlights").preset.head["positive_clips"] == "above_half"
    assert get_dataset("tvsum").preset.head["positive_clips"] == "above_median"
    for name in ("qvhighlights", "charades_sta", "tacos", "ego4d_nlq", "synthetic", "synthetic_mr"):
        assert get_dataset(name).preset.head.get("regression", True) is True
    assert get_dataset("synthetic_mr").tasks == {"mr"} and not math.isnan(get_dataset("synthetic_mr").fps)


def test_readers_give_the_public_training_targets(tmp_path):
    import json
    yt = tmp_path / "yt.jsonl"
    yt.write_text(json.dumps({"qid": "v1", "vid": "v1", "query": "dog", "domain": "dog", "duration": 10.0,
                              "label": [[0], [1], [1], [0]], "match": [-1, 1, 1, 0]}) + "\n")
    assert get_dataset("youtube_highlights").read(yt)[0].saliency_target == (0.0, 1.0, 1.0, 0.5)   # (match+1)/2
    tv = tmp_path / "tv.jsonl"
    tv.write_text(json.dumps({"qid": "t1", "vid": "t1", "query": "a title", "domain": "VT", "duration": 3,
                              "label": [[1.0, 2.0], [5.0, 3.0], [2.0, 2.0]]}) + "\n")
    assert get_dataset("tvsum").read(tv)[0].saliency_target == pytest.approx((0.125, 0.75, 0.25))  # (mean-1)/4


def test_hd_losses_backpropagate_without_a_regression_head():
    cfg = HeadConfig(**{**HD, "hidden": 16, "heads": 2, "k": 2})
    head = GroundingHead(32, 16, cfg).train()
    video, text = torch.randn(2, 8, 2, 5, 32), torch.randn(2, 2, 4, 16)
    out = head(video, torch.ones(2, 8, dtype=torch.bool), text, torch.ones(2, 4, dtype=torch.bool))
    target = torch.tensor([[0.0, 0.25, 0.9, 1.0, 0.4, 0.0, 0.6, 0.75]] * 2)
    losses = head_losses(out, [torch.zeros(0, 2)] * 2, torch.ones(2), target, cfg, torch.Generator().manual_seed(0))
    losses["total"].backward()
    assert torch.isfinite(losses["total"].detach()) and float(losses["saliency"].detach()) > 0
    assert head.cls_head[0].weight.grad.abs().sum() > 0
