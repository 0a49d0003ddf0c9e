"""The shared head: parameter counts, shapes, targets, losses, decoding, NMS, protocols.

The default protocol is ``official`` (the public code's behaviour); tests whose expectation is
the paper's printed behaviour build ``HeadConfig(protocol="paper")`` and say so."""
import dataclasses
import math

import pytest
import torch

from r2bench.bench.run import paper_params
from r2bench.methods.head import (PROTOCOL_FIELDS, PROTOCOLS, GroundingHead, HeadConfig, HeadOutput, assign_targets, decode,
                          decode_sample, hard_nms, head_losses, info_nce, linear_soft_nms, merged_saliency,
                          regression_range, sampled_nce, saliency_contrastive, widen_windows, window_iou)
from r2bench.methods.tuners.frozen import FrozenConfig

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


@pytest.mark.parametrize("field, value", [("layer_mode", "sum"), ("attention_order", "x"), ("nms", "soft"),
                                          ("protocol", "code"), ("saliency_loss", "nce"), ("calibration_clip", "all"),
                                          ("window_unit", 0.0)])
def test_bad_config_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        HeadConfig(**{field: value})


def test_protocols_fill_every_protocol_field():
    official, paper = HeadConfig(), HeadConfig(protocol="paper")
    assert official.protocol == "official"
    for name in PROTOCOL_FIELDS:
        assert getattr(official, name) == PROTOCOLS["official"][name]
        assert getattr(paper, name) == PROTOCOLS["paper"][name]
        assert getattr(official, name) != getattr(paper, name), name   # each field is a real difference
    assert official.focal_alpha is None and paper.focal_alpha == 0.9


def test_one_override_flips_exactly_one_switch_and_the_record_rebuilds_the_config():
    cfg = HeadConfig(protocol="official", focal_alpha=0.9)
    assert cfg.protocol_overrides() == {"focal_alpha": 0.9}
    assert all(getattr(cfg, n) == PROTOCOLS["official"][n] for n in PROTOCOL_FIELDS if n != "focal_alpha")
    record = dataclasses.asdict(cfg)                # what a run stores
    assert record["protocol"] == "official" and record["focal_alpha"] == 0.9
    assert HeadConfig(**record) == cfg
    # method configs inherit the protocol switches
    assert FrozenConfig(protocol="paper").saliency_loss == "within_video" and FrozenConfig().k == 1


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


def test_padding_does_not_change_a_samples_output_in_evaluation():
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


def test_hard_nms_official_keeps_suppressed_rows_at_zero_paper_removes_them():
    windows = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.8, 0.9, 0.7])                  # IoU(0, 1) = 0.9 → row 0 suppressed by row 1
    kept, kept_scores = hard_nms(windows, scores, 0.7, keep_suppressed=True)
    assert kept.tolist() == [[1.0, 10.0], [20.0, 30.0], [0.0, 10.0]]
    assert kept_scores.tolist() == pytest.approx([0.9, 0.7, 0.0])
    kept, kept_scores = hard_nms(windows, scores, 0.7, keep_suppressed=False)
    assert kept.tolist() == [[1.0, 10.0], [20.0, 30.0]] and kept_scores.tolist() == pytest.approx([0.9, 0.7])


def test_iou_exactly_at_the_threshold_suppresses_and_zero_length_windows_never_do():
    # 14/20 in float32 is float32(0.7): suppressed (IoU ≥ θ, both in float32)
    _, scores = hard_nms(torch.tensor([[0.0, 20.0], [6.0, 20.0]]), torch.tensor([0.9, 0.8]), 0.7)
    assert scores.tolist() == pytest.approx([0.9, 0.0])
    # a zero-length window has IoU 0/0 = NaN with its twin: never suppressed
    _, scores = hard_nms(torch.tensor([[4.0, 4.0], [4.0, 4.0]]), torch.tensor([0.9, 0.8]), 0.7)
    assert scores.tolist() == pytest.approx([0.9, 0.8])


def test_linear_soft_nms_official_decays_every_later_row_paper_only_above_the_threshold():
    windows = torch.tensor([[0.0, 10.0], [5.0, 15.0], [1.0, 10.0]])   # IoUs with row 0: 1/3, 0.9
    scores = torch.tensor([0.9, 0.8, 0.7])
    w, sc = linear_soft_nms(windows, scores)                           # public code: no threshold
    assert w.tolist() == [[0.0, 10.0], [5.0, 15.0], [1.0, 10.0]]
    # row 1: 0.8 × (1 − 1/3); row 2: 0.7 × (1 − 0.9) × (1 − IoU([5,15], [1,10]) = 5/14)
    assert sc.tolist() == pytest.approx([0.9, 0.8 * 2 / 3, 0.7 * 0.1 * (1 - 5 / 14)], rel=1e-5)
    w, sc = linear_soft_nms(windows, scores, 0.7)                      # soft-NMS with threshold
    assert sc.tolist() == pytest.approx([0.9, 0.8, 0.07], rel=1e-5)


def _one_level_output(cls: list[float], reg: list[list[float]]) -> HeadOutput:
    t = len(cls)
    mask = torch.ones(1, t, dtype=torch.bool)
    level = dict(cls=torch.tensor([cls]), reg=torch.tensor([reg]), mask=mask, stride=1, index=0)
    return HeadOutput(h=torch.zeros(1, t, 4), query=torch.zeros(1, 4), saliency=torch.ones(1, t), levels=[level],
                      video_mask=mask)


def test_windows_are_rounded_to_the_unit_only_where_the_unclamped_end_is_inside_the_video():
    # fps 0.5: points 0, 1, 2 frames; windows [0, 2.4], [1.4, 3.2], [3.0, 5.8] s; duration 5.5 s
    out = _one_level_output([2.0, 1.0, 0.0], [[0.0, 1.2], [0.3, 0.6], [0.5, 0.9]])
    rounded = decode_sample(out, 0, 0.5, 5.5, HeadConfig(nms="none", window_unit=2.0))["windows"]
    torch.testing.assert_close(rounded[:, :2], torch.tensor([[0.0, 2.0], [2.0, 4.0], [3.0, 5.5]]))  # last: clamped
    plain = decode_sample(out, 0, 0.5, 5.5, HeadConfig(protocol="paper", nms="none"))["windows"]
    torch.testing.assert_close(plain[:, :2], torch.tensor([[0.0, 2.4], [1.4, 3.2], [3.0, 5.5]]))
    raw = decode_sample(out, 0, 0.5, 5.5, HeadConfig(nms="none"))["raw"]
    torch.testing.assert_close(raw[:, :2], torch.tensor([[0.0, 2.4], [1.4, 3.2], [3.0, 5.8]]))


def test_test_time_saliency_is_the_max_over_levels_repeated_by_int_t_over_tj():
    # sample 0: T=5 → level 1 has 2 points repeated int(5/2)=2 times and padded with the last;
    # level 2 has 1 point repeated 5 times. Sample 1: T=3 beside it → level 1: 1 point × 3, no level 2.
    sig = torch.sigmoid
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    levels = [dict(cls=torch.full((2, 5), -20.0), stride=1, index=0, mask=mask),
              dict(cls=torch.tensor([[0.0, 2.0], [1.0, 5.0]]), stride=2, index=1, mask=mask[:, ::2][:, :2]),
              dict(cls=torch.tensor([[1.0], [9.0]]), stride=4, index=2, mask=mask[:, :1])]
    cos = torch.tensor([[1.0, 0.5, 1.0, 1.0, 2.0], [1.0, 1.0, -1.0, 1.0, 1.0]])
    out = HeadOutput(h=torch.zeros(2, 5, 4), query=torch.zeros(2, 4), saliency=cos, levels=levels, video_mask=mask)
    merged = merged_saliency(out)
    a, b, c = sig(torch.tensor(0.0)), sig(torch.tensor(2.0)), sig(torch.tensor(1.0))
    expected0 = torch.stack([c, c, b, b, b]) * cos[0]
    torch.testing.assert_close(merged[0], expected0)
    torch.testing.assert_close(merged[1, :3], sig(torch.tensor(1.0)) * cos[1, :3])


def _batch_with(sample: tuple, others: list[tuple]):
    """Pad (video, text) samples of different lengths into one batch, the first being ``sample``."""
    items = [sample] + others
    t, lt = max(v.shape[0] for v, _ in items), max(x.shape[1] for _, x in items)
    video = torch.randn(len(items), t, *sample[0].shape[1:])          # padding is noise, not zeros
    text = torch.randn(len(items), sample[1].shape[0], lt, sample[1].shape[2])
    vm, tm = torch.zeros(len(items), t, dtype=torch.bool), torch.zeros(len(items), lt, dtype=torch.bool)
    for i, (v, x) in enumerate(items):
        video[i, :v.shape[0]], vm[i, :v.shape[0]] = v, True
        text[i, :, :x.shape[1]], tm[i, :x.shape[1]] = x, True
    return video, vm, text, tm


@pytest.mark.parametrize("protocol", ["official", "paper"])
def test_evaluation_does_not_depend_on_batch_mates(protocol):
    """The same sample alone and beside longer videos: identical windows and saliency (1e-5)."""
    g = torch.Generator().manual_seed(3)
    make = lambda t, lt: (torch.randn(t, 4, 5, 32, generator=g), torch.randn(4, lt, 24, generator=g))
    sample = make(13, 4)
    head = GroundingHead(32, 24, _small_cfg(protocol=protocol, max_windows=20)).eval()
    for p in head.parameters():                                     # spread the scores out
        p.data.add_(torch.randn(p.shape, generator=g) * 0.05)
    with torch.no_grad():
        alone_out = head(sample[0][None], torch.ones(1, 13, dtype=torch.bool), sample[1][None],
                         torch.ones(1, 4, dtype=torch.bool))
        batch_out = head(*_batch_with(sample, [make(29, 6), make(40, 3)]))
    fps, duration = 0.5, 26.0
    alone = decode_sample(alone_out, 0, fps, duration, head.cfg, merged_saliency(alone_out))
    batched = decode_sample(batch_out, 0, fps, duration, head.cfg, merged_saliency(batch_out))
    for key in ("raw", "windows", "saliency"):
        torch.testing.assert_close(batched[key], alone[key], atol=1e-5, rtol=0, msg=key)
    assert [lv["mask"][0].sum().item() for lv in batch_out.levels] == [13, 6, 3, 1]      # floor(13 / s)


@pytest.mark.parametrize("protocol, same", [("official", False), ("paper", True)])
def test_official_training_reproduces_the_padded_batch(protocol, same):
    """In training, the public code normalises TEF and positions by the padded length and pools
    over padded text tokens: a sample's features then depend on the batch; the paper's masked
    computation does not."""
    torch.manual_seed(0)
    video, vm, text, tm = _inputs(b=1, t=12)
    head = GroundingHead(32, 24, _small_cfg(protocol=protocol, strides=(1,))).eval()
    with torch.no_grad():
        short = head(video, vm, text, tm, train_semantics=True)
        padded = head(*_batch_with((video[0], text[0, :, :4]), [(torch.randn(17, *video.shape[2:]), text[0])]),
                      train_semantics=True)
    gap = (padded.h[0, :12] - short.h[0]).abs().max().item()
    assert (gap < 1e-5) if same else (gap > 1e-3)


def test_official_training_level_masks_cover_every_point_with_a_real_clip():
    video, vm, text, tm = _inputs(b=2, t=20)                         # lengths 20 and 15
    head = GroundingHead(32, 24, _small_cfg()).eval()
    with torch.no_grad():
        train = head(video, vm, text, tm, train_semantics=True)
        evaluation = head(video, vm, text, tm)
    assert [lv["mask"][1].sum().item() for lv in train.levels] == [15, 8, 4, 2]        # ceil(15 / s)
    assert [lv["mask"][1].sum().item() for lv in evaluation.levels] == [15, 7, 3, 1]   # floor(15 / s)


def test_sampled_nce_is_the_row_plus_column_softmax_with_ties():
    sal = torch.tensor([[0.9, 0.2, 0.5, 0.1], [0.3, 0.8, 0.4, -0.2]])
    target = torch.tensor([[0.0, 1.0, 1.0, 0.5], [2.0, 2.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    pos = torch.tensor([1, 0])
    s = 1 / 0.07
    # row terms: sample 0, clips with target ≤ 1 (all four); sample 1, target ≤ 2 and real (0, 1, 2)
    row0 = -torch.log_softmax(sal[0] * s, 0)[1]
    row1 = -torch.log_softmax(sal[1, :3] * s, 0)[0]
    # column terms: clip p_b across the videos where it is allowed (target ≤ that video's positive)
    col0 = -torch.log_softmax(torch.stack([sal[0, 1], sal[1, 1]]) * s, 0)[0]   # video 1, clip 1: 2 ≤ 2
    col1 = -torch.log_softmax(torch.stack([sal[0, 0], sal[1, 0]]) * s, 0)[1]   # video 0, clip 0: 0 ≤ 1
    expected = (row0 + row1 + col0 + col1) / 2
    got = sampled_nce(sal, target, mask, 0.07, pos, torch.tensor([True, True]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the paper's Eq. 15 keeps only clips of strictly lower saliency, in the same video
    paper = saliency_contrastive(sal, target, mask, 0.07, pos_clip=pos)
    assert abs(paper.item() - got.item()) > 0.1


def test_calibration_uses_the_sampled_clip_official_or_the_mean_of_positives_paper():
    torch.manual_seed(0)
    video, vm, text, tm = _inputs()
    windows, fps = [torch.tensor([[6.0, 16.0]]), torch.tensor([[0.0, 8.0]])], torch.tensor([0.5, 0.5])
    one, two = torch.zeros(2, 20), torch.zeros(2, 20)
    one[0, 5], one[1, 2] = 1.0, 1.0
    two[0, 5], two[0, 7], two[1, 2] = 1.0, 1.0, 1.0
    pos = torch.tensor([5, 2])
    values = {}
    for protocol in ("official", "paper"):
        head = GroundingHead(32, 24, _small_cfg(protocol=protocol)).eval()
        torch.manual_seed(1)
        head.load_state_dict(GroundingHead(32, 24, _small_cfg()).state_dict())   # same weights
        out = head(video, vm, text, tm)
        for name, target in (("one", one), ("two", two)):
            values[protocol, name] = head_losses(out, windows, fps, target, head.cfg, pos_clip=pos)["video_calibration"]
    torch.testing.assert_close(values["official", "one"], values["paper", "one"])       # one positive: the same
    assert abs(values["official", "two"] - values["paper", "two"]) > 1e-4


def test_info_nce_over_leading_dimensions_is_the_mean_of_the_single_ones():
    a, b = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    single = torch.stack([info_nce(a[i], b[i], 0.07) for i in range(3)]).mean()
    torch.testing.assert_close(info_nce(a, b, 0.07), single)


def test_short_windows_are_widened_to_one_clip_as_the_public_code_binds_them():
    fps, clips = torch.tensor(0.5), torch.tensor(20)                 # 2-s clips, 40-s video
    w = widen_windows(torch.tensor([[10.0, 10.5], [39.0, 45.0], [8.0, 4.0], [2.0, 12.0]]), clips, fps)
    assert w.tolist() == [[9.25, 11.25], [38.0, 40.0], [4.0, 8.0], [2.0, 12.0]]


def test_the_temporal_layer_is_initialised_like_the_public_code():
    official = GroundingHead(768, 512, HeadConfig()).blocks[0].temporal[0]
    paper = GroundingHead(768, 512, HeadConfig(protocol="paper")).blocks[0].temporal[0]
    for layer in (official, paper):
        assert layer.cross.in_proj_bias.abs().max() == 0     # torch's default too
    assert official.ffn[0].bias.abs().max() == 0 and paper.ffn[0].bias.abs().max() > 0
    # Xavier per 256×256 q/k/v block (bound √(6/512)), not over the 768×256 in_proj (√(6/1024))
    bound = official.self_attn.in_proj_weight.abs().max().item()
    assert math.sqrt(6 / 1024) < bound <= math.sqrt(6 / 512)
    assert paper.self_attn.in_proj_weight.abs().max().item() <= math.sqrt(6 / 1024)


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
