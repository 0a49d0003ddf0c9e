"""Moment-retrieval R1@θ, R5@θ and mIoU with the official evaluators' exact arithmetic
(``docs/metrics.md``): predictions that sit exactly on a threshold.

The official code (R²-Tuning ``datasets/eval/evaluation.py`` = UniVTG ``eval/eval.py`` for
Charades-STA / TACoS / Ego4D-NLQ; moment_detr ``standalone_eval/eval.py`` for QVHighlights):

* picks the ground-truth window with the usual IoU, ``inter / (len_p + len_g − inter)``
  (``compute_temporal_iou_batch_cross``; first maximum);
* compares with θ, by ``>=``, the *paired* IoU ``inter / (max(ends) − min(starts))``
  (``compute_temporal_iou_batch_paired``), in float64, no +1, no clamping;
* R5: the first maximum of the usual IoU (NaN → 0) over the first 5 windows × all ground
  truth (row-major) picks the pair, whose paired IoU is compared.

Both IoUs are the same real number for overlapping windows, but they round differently: each
case below is a window whose IoU is exactly θ in decimal arithmetic, and the hand-worked
float64 values (Python floats, printed with repr) show on which side of θ each formula lands.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from r2bench.bench.metrics import evaluate
from r2bench.bench.metrics.iou import cross_iou, paired_iou
from r2bench.bench.metrics.qvhighlights import evaluate_qvhighlights
from r2bench.core.io import SHARED_DIR
from r2bench.datasets.formats.base import Sample
from r2bench.datasets.registry import get_dataset

FIXTURES = Path(__file__).parent / "fixtures"
ANNOTATIONS = SHARED_DIR / "data/annotations"

# (θ, predicted window, ground-truth window): exactly θ in decimal arithmetic. In float64 (repr):
#             inter                usual union          hull                 usual IoU            paired IoU
# hit@0.3     1.44                 4.800000000000001    4.8                  0.29999999999999993  0.3
# miss@0.3    1.1999999999999997   3.9999999999999996   4.0                  0.3                  0.29999999999999993
# hit@0.5     1.6                  3.2000000000000006   3.2                  0.49999999999999994  0.5
# miss@0.5    1.5999999999999996   3.1999999999999993   3.1999999999999997   0.5                  0.49999999999999994
# hit@0.7     2.1699999999999995   3.1                  3.0999999999999996   0.6999999999999998   0.7
# miss@0.7    4.129999999999999    5.899999999999999    5.8999999999999995   0.7                  0.6999999999999998
ON_THRESHOLD = {
    "hit@0.3": (0.3, (2.0, 3.44), (2.0, 6.8)),
    "miss@0.3": (0.3, (3.4, 6.0), (2.0, 4.6)),
    "hit@0.5": (0.5, (2.0, 3.6), (2.0, 5.2)),
    "miss@0.5": (0.5, (3.7, 5.3), (2.1, 5.3)),
    "hit@0.7": (0.7, (2.93, 5.1), (2.0, 5.1)),
    "miss@0.7": (0.7, (3.97, 8.1), (2.2, 8.1)),
}
# "miss@0.5" in float32 would be 0.5 (a hit): the official evaluator computes in float64.


def sample(qid, windows, duration=30.0, clip=1.0) -> Sample:
    return Sample(qid=qid, vid=f"v{qid}", query="q", duration=duration, windows=tuple(map(tuple, windows)),
                  clip_ids=(), saliency=(), clip_seconds=clip, num_clips=int(duration / clip), source="test", raw={})


def line(qid, *windows, score=0.9):
    return {"qid": qid, "pred_relevant_windows": [[*w[:2], w[2] if len(w) > 2 else score] for w in windows]}


def test_the_two_official_iou_formulas_by_hand():
    for name, (t, p, g) in ON_THRESHOLD.items():
        inter = min(p[1], g[1]) - max(p[0], g[0])
        usual = inter / ((p[1] - p[0]) + (g[1] - g[0]) - inter)
        paired = inter / (max(p[1], g[1]) - min(p[0], g[0]))
        assert float(cross_iou(np.array([p]), np.array([g]))[0, 0]) == usual, name
        assert float(paired_iou(np.array(p), np.array(g))) == paired, name
        assert (paired >= t) == name.startswith("hit") and (usual >= t) != (paired >= t), name
    assert float(paired_iou(np.array([5.0, 5.0]), np.array([5.0, 5.0]))) == 0.0        # 0/0 → 0, not NaN
    assert math.isnan(float(cross_iou(np.array([[5.0, 5.0]]), np.array([[5.0, 5.0]]))[0, 0]))


@pytest.mark.parametrize("dataset", ["charades_sta", "tacos", "ego4d_nlq"])
def test_r1_and_miou_on_the_threshold(dataset):
    """Three queries whose first window is exactly on 0.3, 0.5, 0.7 and a hit by the paired IoU
    (the usual IoU would miss each), then three that the paired IoU misses (the usual would hit)."""
    assert get_dataset(dataset).metric == "grounding"
    hits = [ON_THRESHOLD[k] for k in ("hit@0.3", "hit@0.5", "hit@0.7")]
    gt = [sample(i, [g]) for i, (_, _, g) in enumerate(hits)]
    r = evaluate("grounding", [line(i, p) for i, (_, p, _) in enumerate(hits)], gt)
    # paired IoUs 0.3, 0.5, 0.7: R1@0.3 3/3, R1@0.5 2/3, R1@0.7 1/3 (the usual IoU: 2/3, 1/3, 0)
    assert (r.brief["MR-full-R1@0.3"], r.brief["MR-full-R1@0.5"], r.brief["MR-full-R1@0.7"]) == (100.0, 66.67, 33.33)
    assert r.brief["MR-full-mIoU"] == 50.0                                  # (0.3 + 0.5 + 0.7) / 3
    assert list(r.per_query["MR-full-R1@0.5"]) == [0.0, 100.0, 100.0]

    misses = [ON_THRESHOLD[k] for k in ("miss@0.3", "miss@0.5", "miss@0.7")]
    gt = [sample(i, [g]) for i, (_, _, g) in enumerate(misses)]
    r = evaluate("grounding", [line(i, p) for i, (_, p, _) in enumerate(misses)], gt)
    # paired IoUs 0.29999999999999993, 0.49999999999999994, 0.6999999999999998:
    # R1@0.3 2/3, R1@0.5 1/3, R1@0.7 0 (the usual IoU: 3/3, 2/3, 1/3)
    assert (r.brief["MR-full-R1@0.3"], r.brief["MR-full-R1@0.5"], r.brief["MR-full-R1@0.7"]) == (66.67, 33.33, 0.0)
    assert r.brief["MR-full-mIoU"] == 50.0
    assert r.full["full"]["MR-R1"]["0.45"] == 66.67 and r.full["full"]["MR-R1"]["0.65"] == 33.33


def test_r1_one_ulp_below_and_above_the_threshold():
    """Ground truth [0, 8]; a window [0, x] has paired IoU x / 8, exact in binary. ``>=``,
    float64, no +1 / inclusive ends, no rounding of the IoU: one ulp decides."""
    ends = []
    for e, t in ((2.4, 0.3), (4.0, 0.5), (5.6, 0.7)):
        below, above = math.nextafter(e, 0), math.nextafter(e, 8)
        assert below / 8 < t == e / 8 < above / 8          # e.g. 2.3999999999999995 / 8 = 0.29999999999999993
        ends += [below, e, above]
    ends.append(2.3)                                         # 0.2875 (with +1 / inclusive ends: 3.3 / 9 = 0.37)
    gt = [sample(i, [(0.0, 8.0)]) for i in range(len(ends))]
    r = evaluate("grounding", [line(i, (0.0, e)) for i, e in enumerate(ends)], gt)
    assert list(r.per_query["MR-full-R1@0.3"]) == [0, 100, 100, 100, 100, 100, 100, 100, 100, 0]
    assert list(r.per_query["MR-full-R1@0.5"]) == [0, 0, 0, 0, 100, 100, 100, 100, 100, 0]
    assert list(r.per_query["MR-full-R1@0.7"]) == [0, 0, 0, 0, 0, 0, 0, 100, 100, 0]
    assert (r.brief["MR-full-R1@0.3"], r.brief["MR-full-R1@0.5"], r.brief["MR-full-R1@0.7"]) == (80.0, 50.0, 20.0)


def test_r1_ground_truth_is_chosen_with_the_usual_iou_and_scored_with_the_paired_one():
    # Window P = [3.4, 6.0] and two ground-truth windows:
    #   X = [2.0, 4.6]: usual 0.3, paired 0.29999999999999993;  Y = [4.2, 9.4]: usual 0.29999999999999993, paired 0.3
    # argmax of the usual IoU → X (in either order); its paired IoU 0.29999999999999993 < 0.3 → miss.
    # (The max of the paired IoUs would hit, and so would the usual IoU of X.)
    p, x, y = (3.4, 6.0), (2.0, 4.6), (4.2, 9.4)
    assert float(cross_iou(np.array([p]), np.array([x]))[0, 0]) == 0.3
    assert float(cross_iou(np.array([p]), np.array([y]))[0, 0]) == 0.29999999999999993
    assert float(paired_iou(np.array(p), np.array(y))) == 0.3
    gt = [sample(1, [x, y]), sample(2, [y, x])]
    r = evaluate("grounding", [line(1, p), line(2, p)], gt)
    assert r.brief["MR-full-R1@0.3"] == 0.0
    assert r.brief["MR-full-mIoU"] == 30.0            # 100 × 0.29999999999999993, rounded


def test_r5_on_the_threshold_and_its_pair_rule():
    a, g1 = (3.7, 5.3), (2.1, 5.3)       # usual 0.5,                   paired 0.49999999999999994
    b, g2 = (2.0, 3.6), (2.0, 5.2)       # usual 0.49999999999999994,   paired 0.5
    far = (20.0, 21.0)                   # IoU 0 with everything
    gt = [sample(1, [g2]), sample(2, [g1]), sample(3, [g1, g2]), sample(4, [g2]), sample(5, [g2])]
    sub = [
        line(1, far, far, far, b),           # b 4th: paired 0.5 → R5@0.5 hit (the usual IoU would miss)
        line(2, far, a),                     # a 2nd: paired 0.49999999999999994 → miss (the usual IoU would hit)
        # usual IoUs: a-g1 0.5, a-g2 0.4545..., b-g1 0.4545..., b-g2 0.49999999999999994; the first maximum
        # is (a, g1), whose paired IoU 0.49999999999999994 misses, though (b, g2) has paired IoU 0.5
        line(3, far, b, a),
        line(4, far, far, far, far, far, b),  # b 6th: outside the first 5
        line(5, b, far),                     # b 1st: R1 and R5 hit
    ]
    r = evaluate("grounding", sub, gt)
    assert list(r.per_query["MR-full-R5@0.5"]) == [100.0, 0.0, 0.0, 0.0, 100.0]
    assert r.brief["MR-full-R5@0.5"] == 40.0 and r.brief["MR-full-R5@0.3"] == 80.0
    assert r.brief["MR-full-R1@0.5"] == 20.0


def test_qvhighlights_r1_uses_the_same_arithmetic():
    cases = [ON_THRESHOLD[k] for k in ("hit@0.5", "hit@0.7", "miss@0.7")]
    gt = [{"qid": i, "vid": f"v{i}", "query": "q", "duration": 20, "relevant_windows": [list(g)],
           "relevant_clip_ids": [1], "saliency_scores": [[1, 2, 3]]} for i, (_, _, g) in enumerate(cases)]
    sub = [{"qid": i, "pred_relevant_windows": [[*p, 0.9]], "pred_saliency_scores": [0.0] * 10}
           for i, (_, p, _) in enumerate(cases)]
    r = evaluate_qvhighlights(sub, gt)
    # paired IoUs 0.5, 0.7, 0.6999999999999998 → R1@0.5 3/3, R1@0.7 1/3, R1@0.65 2/3
    # (the usual IoUs 0.49999999999999994, 0.6999999999999998, 0.7 would give 2/3, 1/3, 2/3)
    assert r["brief"]["MR-full-R1@0.5"] == 100.0 and r["brief"]["MR-full-R1@0.7"] == 33.33
    assert r["full"]["MR-R1"]["0.65"] == 66.67 and r["short"]["MR-R1"]["0.5"] == 100.0


def test_ground_truth_windows_are_scored_unclamped(tmp_path):
    """The reader clamps an end up to one clip past the video; the official evaluator reads the
    file's own window: [0, 10] against [0, 10.5] in a 10-s video is 10 / 10.5, not 1."""
    path = tmp_path / "gt.jsonl"
    path.write_text(json.dumps({"qid": 1, "vid": "a", "query": "q", "duration": 10.0,
                                "relevant_windows": [[0.0, 10.5]]}) + "\n")
    with pytest.warns(UserWarning, match="clamped 1 ground-truth window"):
        gt = get_dataset("charades_sta").read(path)
    assert gt[0].windows == ((0.0, 10.0),)
    r = evaluate("grounding", [line(1, (0.0, 10.0))], gt)
    assert r.brief["MR-full-mIoU"] == round(100 * 10 / 10.5, 2) == 95.24


# --------------------------------------------------------------------------- a literal reference on real windows

def ref_usual(p, g):
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    union = (p[1] - p[0]) + (g[1] - g[0]) - inter
    return inter / union if union != 0 else (math.nan if inter == 0 else math.copysign(math.inf, inter))


def ref_paired(p, g):
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    hull = max(p[1], g[1]) - min(p[0], g[0])
    return inter / hull if hull != 0 else 0.0


def first_argmax(values):
    """np.argmax: the first NaN if any, else the first maximum."""
    for i, v in enumerate(values):
        if math.isnan(v):
            return i
    return max(range(len(values)), key=lambda i: (values[i], -i))


def ref_r1(windows, gts):
    p = windows[0]
    return ref_paired(p, gts[first_argmax([ref_usual(p, g) for g in gts])])


def ref_r5(windows, gts):
    pairs = [(0.0 if math.isnan(v := ref_usual(p, g)) else v, p, g) for p in windows[:5] for g in gts]
    best = max(v for v, _, _ in pairs)
    _, p, g = next(x for x in pairs if x[0] == best)
    return ref_paired(p, g)


def probe(gt: list[dict]) -> list[dict]:
    """Per query, a window exactly on 0.3 / 0.5 / 0.7 in decimal arithmetic (nested at either end,
    shifted, or widened), written as float64, float32 (what the R²-Tuning code emits), or 1 ulp
    below / above; listed 1st (R1) or 4th after three misses (R5 only)."""
    out = []
    for i, d in enumerate(gt):
        s, e = d["relevant_windows"][0]
        t, n = (0.3, 0.5, 0.7)[i % 3], e - s
        shapes = [(s, s + t * n), (e - t * n, e), (s + n * (1 - t) / (1 + t), e + n * (1 - t) / (1 + t)),
                  (s, e + n * (1 - t) / t)]
        a, b = shapes[(i // 3) % 4]
        mode = (i // 12) % 4
        if mode == 1:
            a, b = float(np.float32(a)), float(np.float32(b))
        elif mode in (2, 3):
            b = math.nextafter(b, -math.inf if mode == 2 else math.inf)
        miss = [d["duration"] + 5, d["duration"] + 6]
        w = [a, b, 0.9]
        windows = [w, [*miss, 0.5]] if (i // 2) % 2 == 0 else [[*miss, 0.9], [miss[0], miss[1] + 1, 0.8],
                                                                [miss[0], miss[1] + 2, 0.7], [a, b, 0.6]]
        out.append({"qid": d["qid"], "pred_relevant_windows": windows})
    return out


def check_against_reference(dataset: str, gt_path: Path) -> dict:
    raw = [json.loads(x) for x in gt_path.read_text().splitlines() if x.strip()]
    gt = get_dataset(dataset).read(gt_path)
    sub = probe(raw)
    r = evaluate("grounding", sub, gt)
    r1 = [ref_r1(p["pred_relevant_windows"], d["relevant_windows"]) for p, d in zip(sub, raw)]
    r5 = [ref_r5(p["pred_relevant_windows"], d["relevant_windows"]) for p, d in zip(sub, raw)]
    for t in (0.3, 0.5, 0.7):
        assert list(r.per_query[f"MR-full-R1@{t}"]) == [100.0 * (v >= t) for v in r1], t
        assert list(r.per_query[f"MR-full-R5@{t}"]) == [100.0 * (v >= t) for v in r5], t
        assert r.brief[f"MR-full-R1@{t}"] == round(100 * float(np.mean(np.array(r1) >= t)), 2)
    assert list(r.per_query["MR-full-mIoU"]) == [100.0 * v for v in r1]
    assert r.brief["MR-full-mIoU"] == round(float(np.mean(r1)) * 100, 2)
    return r.brief


@pytest.mark.parametrize("dataset, name", [("charades_sta", "charades_sta_test_excerpt.jsonl"),
                                           ("tacos", "tacos_test_excerpt.jsonl"),
                                           ("ego4d_nlq", "ego4d_nlq_val_fixture.jsonl")])
def test_probe_predictions_on_the_excerpts_match_a_literal_reference(dataset, name):
    check_against_reference(dataset, FIXTURES / name)


# Brief values of the official evaluator itself (R²-Tuning datasets/eval/evaluation.py at 03fbcf6, run
# on the probe() predictions for the full test files). The code before this change gave, in order,
# Charades-STA R1 43.95 / 23.68 / 6.91, R5 85.43 / 49.54 / 16.18; TACoS R1 41.44 / 23.32 / 6.37,
# R5 82.73 / 49.44 / 14.60 (mIoU and mAP were already equal).
OFFICIAL_ON_PROBE = {
    "charades_sta": ("charades_sta/charades_test_release.jsonl",
                     {"MR-full-R1@0.3": 43.87, "MR-full-R1@0.5": 23.92, "MR-full-R1@0.7": 6.85, "MR-full-mIoU": 25.0,
                      "MR-full-R5@0.3": 85.56, "MR-full-R5@0.5": 50.32, "MR-full-R5@0.7": 16.24, "MR-full-mAP": 10.19}),
    "tacos": ("tacos/tacos_test_release.jsonl",
              {"MR-full-R1@0.3": 41.56, "MR-full-R1@0.5": 23.22, "MR-full-R1@0.7": 6.5, "MR-full-mIoU": 25.0,
               "MR-full-R5@0.3": 82.85, "MR-full-R5@0.5": 49.34, "MR-full-R5@0.7": 14.65, "MR-full-mAP": 10.07}),
}


@pytest.mark.shared
@pytest.mark.parametrize("dataset", sorted(OFFICIAL_ON_PROBE))
def test_probe_predictions_on_the_full_test_files_give_the_official_numbers(dataset):
    rel, expected = OFFICIAL_ON_PROBE[dataset]
    if not (ANNOTATIONS / rel).exists():
        pytest.skip("needs ../shared")
    assert check_against_reference(dataset, ANNOTATIONS / rel) == expected
