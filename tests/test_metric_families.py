"""bench.metrics: the registry and evaluate(), per-query values that average to the brief, and
hand-computed cases for grounding, YouTube Highlights and TVSum (ties, empty predictions,
even-length medians, windows past the duration); prediction-file validation per metric."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from r2bench.bench.metrics import METRICS, evaluate, get_metric, load_submission
from r2bench.bench.metrics.base import trapezoid_ap
from r2bench.bench.metrics.tvsum import lower_median
from r2bench.core.errors import InputError
from r2bench.datasets.formats.base import Sample
from r2bench.core.io import SHARED_DIR
from r2bench.datasets.registry import DATASETS, get_dataset

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = SHARED_DIR / "data"


def sample(qid, windows=(), duration=60.0, clip=2.0, saliency=(), domain=None, vid=None) -> Sample:
    n = len(saliency) if saliency else int(duration / clip)
    return Sample(qid=qid, vid=vid or str(qid), query="q", duration=duration, windows=tuple(map(tuple, windows)),
                  clip_ids=tuple(range(len(saliency))), saliency=tuple(map(tuple, saliency)), clip_seconds=clip,
                  num_clips=n, domain=domain, source="test", raw={})


def assert_per_query_matches_brief(result):
    means = result.per_query.mean()
    assert list(result.per_query.columns) == list(result.brief)
    assert result.per_query.index.name == "qid"
    for key, value in result.brief.items():
        if math.isnan(value):
            assert math.isnan(means[key]), key
        else:
            assert abs(means[key] - value) <= 0.005 + 1e-9, (key, means[key], value)


def test_every_dataset_names_a_registered_metric():
    assert set(METRICS) == {"qvhighlights", "grounding", "youtube_highlights", "tvsum"}
    assert {spec.metric for spec in DATASETS.values()} <= set(METRICS)
    with pytest.raises(KeyError, match="unknown metric 'map'; known: grounding, qvhighlights"):
        get_metric("map")


# --------------------------------------------------------------------------- QVHighlights per query

def test_qvhighlights_per_query_on_the_excerpt():
    gt = get_dataset("qvhighlights").read(FIXTURES / "qvhighlights_val_excerpt.jsonl")
    sub = load_submission(FIXTURES / "qvhighlights_val_excerpt_preds.jsonl", gt, get_metric("qvhighlights"))
    r = evaluate("qvhighlights", sub, gt)
    assert r.full["brief"] == r.brief and list(r.per_query.index) == [s.qid for s in gt]
    assert_per_query_matches_brief(r)
    pq = r.per_query
    assert set(pq["MR-full-R1@0.5"].unique()) <= {0.0, 100.0}
    assert set(pq["HL-min-VeryGood-Hit1"].unique()) <= {0.0, 100.0}
    # a query has a value in a length bucket only if it has a ground-truth window there
    for s in gt:
        lengths = [e - b for b, e in s.windows]
        assert np.isnan(pq.loc[s.qid, "MR-short-mAP"]) == (not any(x <= 10 for x in lengths))
        assert np.isnan(pq.loc[s.qid, "MR-long-mAP"]) == (not any(x > 30 for x in lengths))


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "eval_fixtures").is_dir(), reason="needs ../shared")
def test_qvhighlights_official_fixture_through_the_registry():
    gt = get_dataset("qvhighlights").bind().samples("val")
    sub = load_submission(SHARED / "eval_fixtures/qvhighlights_sample_val_preds.jsonl", gt, get_metric("qvhighlights"))
    r = evaluate("qvhighlights", sub, gt, validate_lines=False)
    expected = json.loads((SHARED / "eval_fixtures/qvhighlights_sample_val_preds_metrics.json").read_text())
    assert r.brief == expected["brief"] and r.full == expected
    assert len(r.per_query) == 1550
    assert_per_query_matches_brief(r)


# --------------------------------------------------------------------------- grounding

def grounding_case():
    gt = [sample(1, [[10, 20]], duration=30), sample(2, [[0, 10], [30, 40]]), sample(3, [[50, 60]])]
    sub = [
        # tie in score: the stable sort keeps [12.2, 20] (IoU .78) before [10, 20] (IoU 1)
        {"qid": 1, "pred_relevant_windows": [[12.2, 20, 0.5], [10, 20, 0.5]]},
        # first listed [30, 36.2]: IoU .62 with [30, 40]
        {"qid": 2, "pred_relevant_windows": [[30, 36.2, 0.2], [30, 40, 0.1]]},
        # first listed runs past the 60-s video: scored as given, IoU 5/20 = .25 (clamped it would be .5);
        # the exact window is listed 6th, outside the top 5
        {"qid": 3, "pred_relevant_windows": [[55, 70, 1.0], [0, 1, .9], [0, 2, .8], [0, 3, .7], [0, 4, .6],
                                             [50, 60, .5]]},
    ]
    return gt, sub


def test_grounding_hand_computed():
    # top-1 IoU: .78, .62, .25 -> R1@.3 = R1@.5 = 2/3, R1@.7 = 1/3, mIoU = 1.65/3 = .55
    # best of the first 5: 1, 1, .25 -> R5@.3/.5/.7 = 2/3
    # AP: q1 1 for t <= .75 (6 thresholds), .5 for t >= .8 (FP then TP) -> .8
    #     q2 t <= .6: TP, FP (its GT taken, the other at IoU 0) -> .5; t > .6: FP, TP -> P=.5 at R=.5 -> .25
    #        -> (3 × .5 + 7 × .25) / 10 = .325
    #     q3 five FP then a TP -> 1/6;  mAP = (.8 + .325 + 1/6) / 3 = .430556
    gt, sub = grounding_case()
    r = evaluate("grounding", sub, gt)
    assert r.brief == {"MR-full-R1@0.3": 66.67, "MR-full-R1@0.5": 66.67, "MR-full-R1@0.7": 33.33,
                       "MR-full-mIoU": 55.0, "MR-full-R5@0.3": 66.67, "MR-full-R5@0.5": 66.67,
                       "MR-full-R5@0.7": 66.67, "MR-full-mAP": 43.06}
    full = r.full["full"]
    assert list(full["MR-R1"]) == ["0.3", "0.35", "0.4", "0.45", "0.5", "0.55", "0.6", "0.65", "0.7", "0.75",
                                   "0.8", "0.85", "0.9", "0.95"]
    assert full["MR-R1"]["0.75"] == 33.33 and full["MR-R1"]["0.8"] == 0.0 and full["MR-R5"]["0.95"] == 66.67
    assert full["MR-mAP"]["0.5"] == round(100 * (1 + .5 + 1 / 6) / 3, 2) and full["MR-mAP"]["0.95"] == 30.56
    pq = r.per_query
    np.testing.assert_allclose(pq["MR-full-mIoU"], [78, 62, 25])
    np.testing.assert_allclose(pq["MR-full-mAP"], [80, 32.5, 100 / 6])
    assert list(pq["MR-full-R1@0.7"]) == [100.0, 0.0, 0.0]
    assert_per_query_matches_brief(r)


def test_grounding_empty_predictions_miss_and_are_skipped_in_map():
    gt, sub = grounding_case()
    sub[2] = {"qid": 3, "pred_relevant_windows": []}
    with pytest.raises(InputError, match=r"<submission>:3: field 'pred_relevant_windows': .*empty list"):
        evaluate("grounding", sub, gt)
    r = evaluate("grounding", sub, gt, validate_lines=False)
    assert r.brief["MR-full-mIoU"] == round(100 * (.78 + .62 + 0) / 3, 2)
    assert r.brief["MR-full-R5@0.3"] == 66.67
    assert r.brief["MR-full-mAP"] == round(100 * (.8 + .325) / 2, 2)       # q3 skipped
    assert np.isnan(r.per_query.loc[3, "MR-full-mAP"]) and r.per_query.loc[3, "MR-full-mIoU"] == 0.0
    assert_per_query_matches_brief(r)


def test_grounding_on_the_charades_excerpt_with_perfect_and_shifted_predictions():
    gt = get_dataset("charades_sta").read(FIXTURES / "charades_sta_test_excerpt.jsonl")
    perfect = [{"qid": s.qid, "pred_relevant_windows": [[*s.windows[0], 1.0]]} for s in gt]
    assert set(evaluate("grounding", perfect, gt).brief.values()) == {100.0}
    # shifted by half its length: IoU = (L/2) / (3L/2) = 1/3 for every query
    shifted = [{"qid": s.qid, "pred_relevant_windows": [[s.windows[0][0] + (s.windows[0][1] - s.windows[0][0]) / 2,
                                                         s.windows[0][1] + (s.windows[0][1] - s.windows[0][0]) / 2,
                                                         1.0]]} for s in gt]
    r = evaluate("grounding", shifted, gt)
    assert r.brief["MR-full-R1@0.3"] == 100.0 and r.brief["MR-full-R1@0.5"] == 0.0
    assert r.brief["MR-full-mIoU"] == 33.33


# --------------------------------------------------------------------------- YouTube Highlights

def test_trapezoid_ap_by_hand():
    assert trapezoid_ap([1, 0, 1, 0]) == pytest.approx(.5 + .5 * (.5 + 2 / 3) / 2)
    assert trapezoid_ap([0, 1]) == pytest.approx(.25)      # starts from precision 1, recall 0
    assert trapezoid_ap([0, 0, 0]) == 0.0 and trapezoid_ap([]) == 0.0


def youtube_case():
    gt = [sample("A", saliency=[[0], [1], [1], [0]], domain="dog"),
          sample("B", saliency=[[1], [0], [0]], domain="dog"),
          sample("C", saliency=[[0], [0], [1]], domain="surfing"),
          sample("D", saliency=[[1], [1], [0]], domain="surfing"),
          sample("E", saliency=[[0], [1]], domain="surfing")]
    scores = {"A": [.1, .9, .3, .5],        # ranked labels 1, 0, 1, 0 -> .5 + .5 × (.5 + 2/3) / 2 = .791667
              "B": [.2, .2, .2],            # all tied: clip order kept -> 1, 0, 0 -> 1
              "C": [.5, .7],                # scores only clips 0, 1 (both negative) -> 0
              "D": [.1, .4, .3, .9],        # cut to 3 clips: 1, 0, 1 -> .791667
              "E": [1.0, 0.0]}              # 0, 1 -> .25
    return gt, [{"vid": v, "pred_saliency_scores": s} for v, s in scores.items()]


def test_youtube_hand_computed_per_domain():
    gt, sub = youtube_case()
    r = evaluate("youtube_highlights", sub, gt)
    ap_a = .5 + .5 * (.5 + 2 / 3) / 2
    dog, surfing = (ap_a + 1) / 2, (0 + ap_a + .25) / 3
    assert r.brief == {"mAP-dog": round(100 * dog, 2), "mAP-surfing": round(100 * surfing, 2),
                       "mAP": round(100 * (dog + surfing) / 2, 2)}
    assert r.brief == {"mAP-dog": 89.58, "mAP-surfing": 34.72, "mAP": 62.15}
    pq = r.per_query
    np.testing.assert_allclose(pq["mAP-dog"].dropna(), [100 * ap_a, 100])
    assert pq["mAP-dog"].isna().sum() == 3
    # the mean column holds each video's share of the mean over domains: 5/(2×2) and 5/(2×3)
    np.testing.assert_allclose(pq["mAP"], 100 * np.array([ap_a * 1.25, 1.25, 0, ap_a * 5 / 6, .25 * 5 / 6]))
    assert_per_query_matches_brief(r)
    assert r.full["per_domain"]["surfing"] == {"mAP": 34.72, "videos": 3}


def test_youtube_empty_predictions_and_validation():
    gt, sub = youtube_case()
    sub[0] = {"vid": "A", "pred_saliency_scores": []}
    with pytest.raises(InputError, match=r"<submission>:1: field 'pred_saliency_scores': .*empty list"):
        evaluate("youtube_highlights", sub, gt)
    r = evaluate("youtube_highlights", sub, gt, validate_lines=False)
    assert r.brief["mAP-dog"] == 50.0                       # A: nothing ranked -> 0
    sub[0] = {"vid": "A", "pred_saliency_scores": [0.1, float("nan"), 0, 0]}
    with pytest.raises(InputError, match=r"<submission>:1: field 'pred_saliency_scores\[1\]': expected a finite "
                                         r"number, found number NaN"):
        evaluate("youtube_highlights", sub, gt)
    sub[0] = {"vid": "A", "pred_saliency_scores": [0.0] * 9}    # 4 clips, 9 scores: more than 4 off
    with pytest.raises(InputError, match=r"expected one score per clip: 4 clips .* found 9 scores"):
        evaluate("youtube_highlights", sub, gt)
    with pytest.raises(InputError, match=r"field 'vid': expected exactly the ground truth's vids; found 1 "
                                         r"ground-truth vid\(s\) missing from the submission: 'A'"):
        evaluate("youtube_highlights", sub[1:], gt)


def test_youtube_on_the_excerpt_perfect_scores_give_100():
    gt = get_dataset("youtube_highlights").read(FIXTURES / "youtube_highlights_val_excerpt.jsonl")
    perfect = [{"vid": s.vid, "pred_saliency_scores": [row[0] for row in s.saliency]} for s in gt]
    r = evaluate("youtube_highlights", perfect, gt)
    assert list(r.brief) == ["mAP-dog", "mAP-gymnastics", "mAP-parkour", "mAP-skating", "mAP-skiing",
                             "mAP-surfing", "mAP"]
    assert set(r.brief.values()) == {100.0}
    assert_per_query_matches_brief(r)


# --------------------------------------------------------------------------- TVSum

def test_lower_median_is_torchs():
    assert lower_median([4, 1, 3, 2]) == 2.0            # numpy: 2.5
    assert lower_median([1, 2, 3]) == 2.0
    assert lower_median([5, 5, 1, 1]) == 1.0


def tvsum_case():
    gt = [sample("v1", saliency=[[1, 5], [2, 1], [3, 1], [4, 1], [5, 1], [4, 2]], domain="VT"),
          sample("v2", saliency=[[2, 1], [2, 3], [2, 2], [2, 5]], domain="VU")]
    sub = [{"vid": "v1", "pred_saliency_scores": [.9, .1, .5, .5, .2, .8]},
           {"vid": "v2", "pred_saliency_scores": [.3, .1]}]
    return gt, sub


def test_tvsum_hand_computed_top5_even_medians_ties():
    # v1 (6 clips, even): annotator 1 scores 1 2 3 4 5 4, lower median 3 -> positives clips 3, 4, 5;
    #   annotator 2 scores 5 1 1 1 1 2, lower median 1 -> positives clips 0, 5.
    #   ranking 0, 5, 2, 3, 4, 1 (clips 2 and 3 tie at .5: clip order); top 5 = 0, 5, 2, 3, 4
    #   a1: 0 1 0 1 1, P = 3 -> 1/12 + 5/36 + 11/60 = 73/180;  a2: 1 1 0 0 0 -> 1;  video: (73/180 + 1) / 2
    # v2 (4 clips, fewer than 5; prediction scores only clips 0, 1): a1 constant 2 -> no positive -> 0;
    #   a2 1 3 2 5, lower median 2 -> positives 1, 3; ranked 0, 1 -> 0 1 -> .25;  video: .125
    gt, sub = tvsum_case()
    r = evaluate("tvsum", sub, gt)
    v1 = (73 / 180 + 1) / 2
    assert r.brief == {"Top5-mAP-VT": round(100 * v1, 2), "Top5-mAP-VU": 12.5,
                       "Top5-mAP": round(100 * (v1 + .125) / 2, 2)}
    assert r.brief == {"Top5-mAP-VT": 70.28, "Top5-mAP-VU": 12.5, "Top5-mAP": 41.39}
    np.testing.assert_allclose(r.per_query["Top5-mAP"], [100 * v1, 12.5])
    assert_per_query_matches_brief(r)
    # the tie matters: clip 3 before clip 2 would give annotator 1 ranked labels 0 1 1 0 1
    swapped = [{"vid": "v1", "pred_saliency_scores": [.9, .1, .5, .51, .2, .8]}, sub[1]]
    assert evaluate("tvsum", swapped, gt).brief["Top5-mAP-VT"] != r.brief["Top5-mAP-VT"]


def test_tvsum_empty_prediction_scores_zero():
    gt, sub = tvsum_case()
    sub[1] = {"vid": "v2", "pred_saliency_scores": []}
    assert evaluate("tvsum", sub, gt, validate_lines=False).brief["Top5-mAP-VU"] == 0.0


def test_tvsum_on_the_excerpt_mean_annotator_scores_beat_reversed_ones():
    gt = get_dataset("tvsum").read(FIXTURES / "tvsum_val_excerpt.jsonl")
    mean = [{"vid": s.vid, "pred_saliency_scores": [sum(r) / len(r) for r in s.saliency]} for s in gt]
    worst = [{"vid": s.vid, "pred_saliency_scores": [-sum(r) for r in s.saliency]} for s in gt]
    good, bad = evaluate("tvsum", mean, gt), evaluate("tvsum", worst, gt)
    assert list(good.brief) == ["Top5-mAP-VU", "Top5-mAP-BK", "Top5-mAP-BT", "Top5-mAP"]
    assert good.brief["Top5-mAP"] > 80 > 20 > bad.brief["Top5-mAP"]
    assert_per_query_matches_brief(good)


# --------------------------------------------------------------------------- files and the CLI

def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prediction_file_errors_name_file_line_field(tmp_path):
    gt, sub = youtube_case()
    metric = get_metric("youtube_highlights")
    assert len(load_submission(write_jsonl(tmp_path / "ok.jsonl", sub), gt, metric)) == 5
    bad = [dict(sub[0]), {"pred_saliency_scores": [0.0, 1.0, 0.0]}, *sub[1:]]
    with pytest.raises(InputError) as exc:
        load_submission(write_jsonl(tmp_path / "p.jsonl", bad), gt, metric)
    assert str(exc.value).startswith(f"{tmp_path / 'p.jsonl'}:2: field 'vid': missing required field")
    dup = [*sub, sub[1]]
    with pytest.raises(InputError, match=r"p2.jsonl:6: field 'vid': expected one line per vid, found 'B' again"):
        load_submission(write_jsonl(tmp_path / "p2.jsonl", dup), gt, metric)
    gt_g, sub_g = grounding_case()
    sub_g[1] = {**sub_g[1], "pred_saliency_scores": [0.0] * 30}        # optional for grounding, checked if present
    assert len(load_submission(write_jsonl(tmp_path / "g.jsonl", sub_g), gt_g, get_metric("grounding"))) == 3
    sub_g[1]["pred_saliency_scores"] = [0.0] * 60                      # 30 clips of 2 s: 60 is a wrong rate
    with pytest.raises(InputError, match=r"g2.jsonl:2: field 'pred_saliency_scores': expected one score per clip: "
                                         r"30 clips of 2 s"):
        load_submission(write_jsonl(tmp_path / "g2.jsonl", sub_g), gt_g, get_metric("grounding"))


def run_cli(*args):
    from r2bench.bench.evaluate import main
    return main([str(a) for a in args])


def test_evaluate_cli_every_family(tmp_path, capsys):
    cases = {
        "charades_sta": (FIXTURES / "charades_sta_test_excerpt.jsonl",
                         lambda s: {"qid": s.qid, "pred_relevant_windows": [[*s.windows[0], 0.9]]}),
        "tacos": (FIXTURES / "tacos_test_excerpt.jsonl",
                  lambda s: {"qid": s.qid, "pred_relevant_windows": [[0.0, s.duration, 0.9]]}),
        "ego4d_nlq": (FIXTURES / "ego4d_nlq_val_fixture.jsonl",
                      lambda s: {"qid": s.qid, "pred_relevant_windows": [[*s.windows[0], 0.9]]}),
        "youtube_highlights": (FIXTURES / "youtube_highlights_val_excerpt.jsonl",
                               lambda s: {"vid": s.vid, "pred_saliency_scores": [0.0] * s.num_clips}),
        "tvsum": (FIXTURES / "tvsum_val_excerpt.jsonl",
                  lambda s: {"vid": s.vid, "pred_saliency_scores": [r[0] for r in s.saliency]}),
    }
    for name, (gt_path, make) in cases.items():
        gt = get_dataset(name).read(gt_path)
        preds = write_jsonl(tmp_path / f"{name}.jsonl", [make(s) for s in gt])
        out_csv = tmp_path / f"{name}.csv"
        assert run_cli("--dataset", name, gt_path, preds, "--per-query", out_csv) == 0, name
        brief = json.loads(capsys.readouterr().out)
        expected = evaluate(get_dataset(name).metric, [make(s) for s in gt], gt).brief
        assert brief == expected, name
        table = pd.read_csv(out_csv, index_col="qid")
        assert len(table) == len(gt) and list(table.columns) == list(brief)
    assert brief["Top5-mAP"] > 0


def test_evaluate_cli_bad_inputs_exit_2(tmp_path, capsys):
    gt = FIXTURES / "tvsum_val_excerpt.jsonl"
    samples = get_dataset("tvsum").read(gt)
    preds = write_jsonl(tmp_path / "p.jsonl", [{"vid": s.vid, "pred_saliency_scores": [0.5] * (s.num_clips * 2)}
                                                for s in samples])
    assert run_cli("--dataset", "tvsum", gt, preds) == 2
    err = capsys.readouterr().err
    assert f"{preds}:1: field 'pred_saliency_scores': expected one score per clip: 74 clips" in err
    assert run_cli("--dataset", "youtube_highlights", gt, preds) == 2          # TVSum file is not YouTube
    assert "field 'domain': expected one of dog" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("--dataset", "nope", gt, preds)
