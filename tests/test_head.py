"""The shared head: parameter counts, shapes, targets, losses, decoding, NMS."""
import math

import pytest
import torch

from bench.run import paper_params
from methods.head import (GroundingHead, HeadConfig, assign_targets, decode, hard_nms, head_losses,
                          linear_soft_nms, regression_range, saliency_contrastive, window_iou)

PAPER_R2_PARAMS = 2_836_242


def test_r2_tuning_has_the_papers_parameter_count():
    params, backbone = paper_params("r2_tuning", {})
    assert params == PAPER_R2_PARAMS
    assert round(params / 2**20, 1) == 2.7
    assert backbone == 151_277_313


def test_frozen_head_is_the_same_head_at_k1():
    params, _ = paper_params("frozen", {})
    assert params == PAPER_R2_PARAMS - 6  # three fusion gates and three pooling gates fewer


def test_head_parameter_breakdown_matches_the_spec():
    head = GroundingHead(768, 512, HeadConfig())
    parts = {}
    for name, p in head.named_parameters():
        key = name.split(".")[2] if name.startswith("blocks") else name.split(".")[0]
        parts[key] = parts.get(key, 0) + p.numel()
    assert parts == {"video_map": 265_220, "text_map": 198_656, "w_q": 65_792, "w_v": 65_792,
                     "pool_gates": 4, "fusion_gates": 3, "temporal": 1_053_440, "pyramid": 791_040,
                     "query_pool": 256, "cls_head": 197_633, "reg_head": 198_402, "reg_scales": 4}


@pytest.mark.parametrize("overrides, delta", [
    (dict(shared_block=False), 3 * (265_220 + 198_656 + 131_584 + 1_053_440)),
    (dict(temporal_layers=3), 2 * 1_053_440),
    (dict(use_tef=False), -(2 * 2 + 2 * 256)),      # LN(770)→LN(768) and Linear(770,·)→(768,·)
    (dict(layer_mode="mean"), -6),                   # one step: no fusion gates, one pooling gate
])
def test_ablation_switches_change_the_model_as_expected(overrides, delta):
    base = sum(p.numel() for p in GroundingHead(768, 512, HeadConfig()).parameters())
    other = sum(p.numel() for p in GroundingHead(768, 512, HeadConfig(**overrides)).parameters())
    assert other - base == delta


@pytest.mark.parametrize("field, value", [("layer_mode", "sum"), ("attention_order", "x"), ("nms", "soft")])
def test_bad_config_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        HeadConfig(**{field: value})


def _inputs(b=2, t=20, k=4, n=5, dv=32, dt=24, lt=6):
    torch.manual_seed(0)
    video_mask = torch.ones(b, t, dtype=torch.bool)
    text_mask = torch.ones(b, lt, dtype=torch.bool)
    text_mask[0, 4:] = False
    if b > 1:
        video_mask[1, 15:] = False
    return torch.randn(b, t, k, n, dv), video_mask, torch.randn(b, k, lt, dt), text_mask


def _small_cfg(**kw):
    return HeadConfig(hidden=32, heads=4, ffn=64, **kw)


@pytest.mark.parametrize("mode", ["recurrent", "single", "mean"])
@pytest.mark.parametrize("order", ["cross_self", "self_cross"])
def test_shapes_through_the_head(mode, order):
    video, vm, text, tm = _inputs()
    head = GroundingHead(32, 24, _small_cfg(layer_mode=mode, attention_order=order, shared_block=mode != "mean"))
    out = head(video, vm, text, tm)
    assert out.h.shape == (2, 20, 32) and out.query.shape == (2, 32) and out.saliency.shape == (2, 20)
    assert [lv["cls"].shape[1] for lv in out.levels] == [20, 10, 5, 2]
    assert all(lv["reg"].shape[-1] == 2 and (lv["reg"] > 0).all() for lv in out.levels)
    assert len(out.layer_cls) == (4 if mode == "recurrent" else 1)
    assert out.saliency.abs().max() <= 1 + 1e-5


def test_padding_does_not_change_a_samples_output():
    video, vm, text, tm = _inputs(b=1, t=12)
    head = GroundingHead(32, 24, _small_cfg(strides=(1,))).eval()
    short = head(video, vm, text, tm)
    padded = head(torch.cat([video, torch.randn(1, 5, *video.shape[2:])], 1),
                  torch.cat([vm, torch.zeros(1, 5, dtype=torch.bool)], 1),
                  torch.cat([text, torch.randn(1, 4, 3, 24)], 2), torch.cat([tm, torch.zeros(1, 3, dtype=torch.bool)], 1))
    torch.testing.assert_close(padded.h[:, :12], short.h, atol=1e-5, rtol=1e-4)


def test_levels_shorter_than_their_stride_are_skipped():
    video, vm, text, tm = _inputs(t=6)
    out = GroundingHead(32, 24, _small_cfg())(video, vm, text, tm)
    assert [lv["stride"] for lv in out.levels] == [1, 2, 4]


def test_regression_ranges():
    strides = (1, 2, 4, 8)
    assert [regression_range(strides, i) for i in range(4)] == [(0, 2), (2, 4), (4, 8), (8, math.inf)]
    assert regression_range((1,), 0) == (0, math.inf)


def test_assign_targets_on_a_hand_case():
    # fps 1 → window [4, 7] frames; stride-1 level of 10 points; centre 5.5, radius 1.5 → [4, 7];
    # a point is kept when max(left, right) ≤ 2: points 5 (1, 2) and 6 (2, 1) only.
    level = dict(stride=1, index=0, mask=torch.ones(1, 10, dtype=torch.bool))
    labels, targets = assign_targets(level, [torch.tensor([[4.0, 7.0]])], torch.tensor([1.0]), (1, 2, 4, 8))
    assert labels[0].nonzero().flatten().tolist() == [5, 6]
    assert targets[0, 5].tolist() == [1.0, 2.0] and targets[0, 6].tolist() == [2.0, 1.0]


def test_ties_go_to_the_shortest_window():
    level = dict(stride=8, index=3, mask=torch.ones(1, 4, dtype=torch.bool))
    windows = [torch.tensor([[0.0, 30.0], [4.0, 28.0]])]   # point 16 lies in both
    labels, targets = assign_targets(level, windows, torch.tensor([1.0]), (1, 2, 4, 8))
    assert labels[0, 2] == 1 and targets[0, 2].tolist() == [12 / 8, 12 / 8]


def test_losses_are_finite_and_reach_every_learnable_parameter():
    video, vm, text, tm = _inputs()
    head = GroundingHead(32, 24, _small_cfg())
    out = head(video, vm, text, tm)
    saliency = torch.zeros(2, 20)
    saliency[0, 3:8], saliency[1, 0:4] = 3.0, 2.0
    saliency[0, 5] = 4.0
    losses = head_losses(out, [torch.tensor([[6.0, 16.0]]), torch.tensor([[0.0, 8.0]])], torch.tensor([0.5, 0.5]),
                         saliency, head.cfg, torch.Generator().manual_seed(0))
    assert set(losses) == {"cls", "reg", "saliency", "video_calibration", "layer_calibration", "total"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    losses["total"].backward()
    unused = [n for n, p in head.named_parameters() if p.grad is None]
    assert unused == []


def test_saliency_loss_prefers_ranking_positives_above_lower_clips():
    target = torch.tensor([[0.0, 0.0, 2.0, 4.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    good = saliency_contrastive(torch.tensor([[-1.0, -1.0, 0.5, 0.9]]), target, mask, 0.07)
    bad = saliency_contrastive(torch.tensor([[0.9, 0.9, -1.0, -1.0]]), target, mask, 0.07)
    assert good < 0.01 < bad
    # no positive clip at all: no loss, no NaN
    assert saliency_contrastive(torch.zeros(1, 4), torch.zeros(1, 4), mask, 0.07) == 0


def test_window_iou():
    iou = window_iou(torch.tensor([[0.0, 10.0]]), torch.tensor([[5.0, 15.0], [20.0, 30.0], [0.0, 10.0]]))
    torch.testing.assert_close(iou, torch.tensor([[1 / 3, 0.0, 1.0]]))


def test_hard_and_linear_soft_nms():
    windows = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept, kept_scores = hard_nms(windows, scores, 0.7)        # IoU(0,1) = 0.9 → suppressed
    assert kept.tolist() == [[0.0, 10.0], [20.0, 30.0]] and kept_scores.tolist() == pytest.approx([0.9, 0.7])
    soft, soft_scores = linear_soft_nms(windows, scores, 0.7)  # 0.8 × (1 − 0.9) = 0.08
    assert soft.tolist() == [[0.0, 10.0], [20.0, 30.0], [1.0, 10.0]]
    assert soft_scores.tolist() == pytest.approx([0.9, 0.7, 0.08])


def test_decode_returns_ranked_clamped_windows_and_one_saliency_per_frame():
    video, vm, text, tm = _inputs()
    head = GroundingHead(32, 24, _small_cfg(max_windows=10)).eval()
    with torch.no_grad():
        results = decode(head(video, vm, text, tm), torch.tensor([0.5, 0.5]), torch.tensor([40.0, 30.0]), head.cfg)
    for res, duration, frames in zip(results, (40.0, 30.0), (20, 15)):
        scores = [w[2] for w in res["windows"]]
        assert 0 < len(scores) <= 10 and scores == sorted(scores, reverse=True)
        assert all(0 <= s <= e <= duration for s, e, _ in res["windows"])
        assert len(res["saliency"]) == frames
