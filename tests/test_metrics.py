"""QVHighlights metrics: the official fixture, hand-computed cases, a literal reference
implementation of METRICS.md checked against the vectorised code, and submission loading."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from r2bench.bench.metrics.qvhighlights import IOU_THRESHOLDS, _hl_ap, _mr_ap, evaluate_qvhighlights, load_submission
from r2bench.core.io import SHARED_DIR
from r2bench.datasets.formats.qvhighlights import read_jsonl
from r2bench.core.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures"
VAL_GT = SHARED_DIR / "data/annotations/qvhighlights/highlight_val_release.jsonl"
VAL_PREDS = SHARED_DIR / "data/eval_fixtures/qvhighlights_sample_val_preds.jsonl"
VAL_METRICS = SHARED_DIR / "data/eval_fixtures/qvhighlights_sample_val_preds_metrics.json"
THR_KEYS = [str(t) for t in IOU_THRESHOLDS]


def gt(qid, windows, duration=150, clip_ids=(), saliency=()):
    return {"qid": qid, "vid": f"v{qid}", "query": "q", "duration": duration, "relevant_windows": windows,
            "relevant_clip_ids": list(clip_ids), "saliency_scores": [list(r) for r in saliency]}


def pred(qid, windows, saliency=(0.0,)):
    return {"qid": qid, "pred_relevant_windows": windows, "pred_saliency_scores": list(saliency)}


def assert_same_nested(ours: dict, expected: dict, where: str = "") -> None:
    assert list(ours) == list(expected), f"keys of {where or 'result'}"
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_same_nested(ours[key], value, f"{where}/{key}")
        else:
            assert ours[key] == pytest.approx(value, abs=1e-9), f"{where}/{key}: {ours[key]} != {value}"


# --------------------------------------------------------------------------- official fixture

@pytest.mark.shared
@pytest.mark.skipif(not (VAL_GT.exists() and VAL_PREDS.exists() and VAL_METRICS.exists()), reason="needs ../shared")
def test_official_fixture_every_value():
    samples = read_jsonl(VAL_GT)
    result = evaluate_qvhighlights(load_submission(VAL_PREDS, samples), [s.raw for s in samples])
    assert_same_nested(result, json.loads(VAL_METRICS.read_text()))


# --------------------------------------------------------------------------- hand-computed MR

def test_mr_two_queries_buckets_ties_and_first_listed_r1():
    # Q1: GT A=[0,10] (short, len 10 = bucket edge), B=[20,50] (middle, len 30 = edge).
    #     listed a=[20,50,.5] b=[0,10,.9] c=[50,60,.9]; stable sort -> b, c, a (b before c).
    #     full: TP FP TP, P=(1, 1/2, 2/3), R=(.5, .5, 1) -> AP = .5*1 + .5*2/3 = 5/6 at every t.
    #     R1 uses a (first listed): IoU 1 with B -> hit at every t.
    # Q2: GT [100,140] (long). listed p0=[100,120,.1] (IoU .5), p1=[100,140,.8] (IoU 1).
    #     sorted p1 TP, p0 FP (its GT is taken) -> AP 1. R1 uses p0: IoU .5 -> hit only at .5.
    # full: mAP = (5/6 + 1)/2 = 91.67 at every t; R1@.5 = 100, else 50.
    # short: Q1 with A only: b TP, c FP, a FP -> AP 1; R1: a vs A IoU 0 -> 0.
    # middle: Q1 with B only: b FP, c FP, a TP -> P=1/3 at R=1 -> AP 1/3; R1: a -> 100.
    # long: Q2 only: AP 1; R1 as above.
    ground = [gt(1, [[0, 10], [20, 50]]), gt(2, [[100, 140]])]
    sub = [pred(1, [[20, 50, 0.5], [0, 10, 0.9], [50, 60, 0.9]]), pred(2, [[100, 120, 0.1], [100, 140, 0.8]])]
    r = evaluate_qvhighlights(sub, ground)

    def expect(bucket, m_ap, r1):
        assert r[bucket]["MR-mAP"] == {**{k: m_ap for k in THR_KEYS}, "average": m_ap}, bucket
        assert r[bucket]["MR-R1"] == dict(zip(THR_KEYS, r1)), bucket

    expect("full", 91.67, [100.0] + [50.0] * 9)
    expect("short", 100.0, [0.0] * 10)
    expect("middle", 33.33, [100.0] * 10)
    expect("long", 100.0, [100.0] + [0.0] * 9)
    assert {k: v for k, v in r["brief"].items() if k.startswith("MR")} == {
        "MR-full-R1@0.5": 100.0, "MR-full-R1@0.7": 50.0, "MR-full-mAP": 91.67, "MR-full-mAP@0.5": 91.67,
        "MR-full-mAP@0.75": 91.67, "MR-long-mAP": 100.0, "MR-middle-mAP": 33.33, "MR-short-mAP": 100.0}


def test_mr_score_ties_keep_given_order():
    # Equal scores: the listed order stays -> FP then TP: P=(0, 1/2), R=(0, 1) -> AP 1/2.
    # (Putting the correct window first would give AP 1.)
    r = evaluate_qvhighlights([pred(1, [[50, 60, 0.7], [0, 10, 0.7]])], [gt(1, [[0, 10]])])
    assert r["full"]["MR-mAP"]["average"] == 50.0


def test_mr_r1_uses_first_listed_not_highest_scored():
    # First listed [50,60] misses; the highest scored [0,10] would hit. mAP sorts by score -> 100.
    r = evaluate_qvhighlights([pred(1, [[50, 60, 0.1], [0, 10, 0.9]])], [gt(1, [[0, 10]])])
    assert set(r["full"]["MR-R1"].values()) == {0.0}
    assert r["full"]["MR-mAP"]["average"] == 100.0


def test_mr_top10_cut_before_sorting():
    # Ten wrong windows first, the correct one 11th with the top score: it is cut -> AP 0.
    wrong = [[100 + i, 101 + i, 0.5] for i in range(10)]
    r = evaluate_qvhighlights([pred(1, wrong + [[0, 10, 0.99]])], [gt(1, [[0, 10]])])
    assert r["full"]["MR-mAP"]["average"] == 0.0


def test_mr_matched_ground_truth_is_skipped_per_threshold():
    # GT A=[0,10], B=[0,12]; two identical predictions [0,10] (.9 then .8).
    # First: A (IoU 1) TP. Second: A taken -> B, IoU 10/12 = .833: TP for t <= .8 (AP 1),
    # FP for t >= .85 (P=(1, 1/2), R=(.5, .5) -> AP .5). average = (7*1 + 3*.5)/10 = .85.
    r = evaluate_qvhighlights([pred(1, [[0, 10, 0.9], [0, 10, 0.8]])], [gt(1, [[0, 10], [0, 12]])])
    m_ap = r["full"]["MR-mAP"]
    assert [m_ap[k] for k in THR_KEYS] == [100.0] * 7 + [50.0] * 3
    assert m_ap["average"] == 85.0


def test_mr_ground_truth_iou_tie_visits_later_window_first():
    # GT A=[0,10], B=[5,15]; P=[5,10,.9] has IoU .5 with both, Q=[0,10,.8] IoU 1 with A.
    # t=.5: P takes B (the later one, as the official argsort()[::-1]), Q takes A -> AP 1.
    #       (Had P taken A, Q would fall to B with IoU 1/3 -> AP .5.)
    # t>=.55: P FP, Q TP: P=(0, 1/2), R=(0, .5) -> AP .5*.5 = .25. average = (1 + 9*.25)/10.
    r = evaluate_qvhighlights([pred(1, [[5, 10, 0.9], [0, 10, 0.8]])], [gt(1, [[0, 10], [5, 15]])])
    m_ap = r["full"]["MR-mAP"]
    assert [m_ap[k] for k in THR_KEYS] == [100.0] + [25.0] * 9
    assert m_ap["average"] == 32.5


def test_mr_query_without_predictions_skipped_in_map_missed_in_r1():
    ground = [gt(1, [[0, 10]]), gt(2, [[0, 10]])]
    r = evaluate_qvhighlights([pred(1, []), pred(2, [[0, 10, 1.0]])], ground)
    assert r["full"]["MR-mAP"]["average"] == 100.0
    assert r["full"]["MR-R1"]["0.5"] == 50.0


def test_mr_empty_bucket_is_nan():
    r = evaluate_qvhighlights([pred(1, [[0, 10, 1.0]])], [gt(1, [[0, 10]])])
    assert r["short"]["MR-mAP"]["average"] == 100.0
    for bucket in ("middle", "long"):
        assert all(np.isnan(v) for v in r[bucket]["MR-mAP"].values())
        assert all(np.isnan(v) for v in r[bucket]["MR-R1"].values())
    assert np.isnan(r["brief"]["MR-long-mAP"])


# --------------------------------------------------------------------------- hand-computed HD

def test_hl_two_queries():
    # Q1: 8 s -> 4 clips; clip1=[4,2,0], clip2=[1,3,2]; pred (.2, .9, .9, .1).
    #   HIT@1: argmax -> clip 1 (first of the tie); positive at every level -> hit.
    #   AP groups the tie at .9 (clips 1 and 2 enter together):
    #   Fair  labels a0=(0,1,0,0) .5, a1=(0,1,1,0) 1, a2=(0,0,1,0) .5 -> 2/3
    #   Good  a0=(0,1,0,0) .5, a1=(0,0,1,0) .5, a2=0 -> 1/3;  VeryGood a0 .5, others 0 -> 1/6
    # Q2: 6 s -> 3 clips; clips 0..2 = [2,4,0],[3,4,0],[0,4,0]; pred (.2, .1, .3, .9).
    #   HIT@1: argmax is index 3, past the last clip -> miss. AP uses (.2, .1, .3): order 2, 0, 1.
    #   Fair  a0=(1,1,0): (P,R) = (0,0), (.5,.5), (2/3,1) -> mean(2/3, 2/3) = 2/3;
    #         a1 all positive 1; a2 all negative 0 -> 5/9
    #   Good  a0=(0,1,0): (0,0),(0,0),(1/3,1) -> 1/3; a1 1; a2 0 -> 4/9
    #   VeryGood a0 0, a1 1, a2 0 -> 1/3
    # mAP: Fair (2/3+5/9)/2 = 61.11, Good (1/3+4/9)/2 = 38.89, VeryGood (1/6+1/3)/2 = 25; HIT 50.
    ground = [gt(1, [[0, 4]], duration=8, clip_ids=[1, 2], saliency=[[4, 2, 0], [1, 3, 2]]),
              gt(2, [[0, 4]], duration=6, clip_ids=[0, 1, 2], saliency=[[2, 4, 0], [3, 4, 0], [0, 4, 0]])]
    sub = [pred(1, [[0, 4, 1]], [0.2, 0.9, 0.9, 0.1]), pred(2, [[0, 4, 1]], [0.2, 0.1, 0.3, 0.9])]
    r = evaluate_qvhighlights(sub, ground)
    assert r["HL-min-Fair"] == {"HL-mAP": 61.11, "HL-Hit1": 50.0}
    assert r["HL-min-Good"] == {"HL-mAP": 38.89, "HL-Hit1": 50.0}
    assert r["HL-min-VeryGood"] == {"HL-mAP": 25.0, "HL-Hit1": 50.0}
    assert r["brief"]["HL-min-VeryGood-mAP"] == 25.0 and r["brief"]["HL-min-Fair-Hit1"] == 50.0


def test_hl_short_prediction_is_zero_padded():
    # 4 clips, only clip 3 positive (annotator 0, score 4); pred (-1,) -> padded (-1, 0, 0, 0).
    # The zeros outrank -1: threshold 0 holds clips 1-3 (1 TP of 3) -> P=1/3 at R=1 -> AP 1/3
    # for annotator 0, 0 for the others -> 1/9 at every level. HIT@1: clip 0 -> miss.
    r = evaluate_qvhighlights([pred(1, [[0, 4, 1]], [-1.0])],
                              [gt(1, [[0, 4]], duration=8, clip_ids=[3], saliency=[[4, 0, 0]])])
    for level in ("Fair", "Good", "VeryGood"):
        assert r[f"HL-min-{level}"] == {"HL-mAP": 11.11, "HL-Hit1": 0.0}


def test_result_layout_matches_official():
    r = evaluate_qvhighlights([pred(1, [[0, 10, 1.0]])], [gt(1, [[0, 10]])])
    assert list(r) == ["brief", "HL-min-Fair", "HL-min-Good", "HL-min-VeryGood", "full", "long", "middle", "short"]
    assert list(r["brief"]) == [
        "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-long-mAP",
        "MR-middle-mAP", "MR-short-mAP", "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP",
        "HL-min-Good-Hit1", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"]
    assert list(r["full"]["MR-mAP"]) == THR_KEYS + ["average"]


def test_qid_mismatch_in_evaluate_is_input_error():
    with pytest.raises(InputError, match="missing.*2"):
        evaluate_qvhighlights([pred(1, [[0, 10, 1.0]])], [gt(1, [[0, 10]]), gt(2, [[0, 10]])])


# --------------------------------------------------------------------------- literal reference

def ref_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def ref_mr_ap(gts, preds, t):
    """METRICS.md step by step, with plain loops."""
    preds = sorted(preds[:10], key=lambda w: -w[2])                  # Python's sort is stable
    matched, tps = set(), []
    for p in preds:
        ious = [ref_iou(p, g) for g in gts]
        tp = False
        for j in sorted(range(len(gts)), key=lambda j: (-ious[j], -j)):  # IoU ties: later GT first
            if ious[j] < t:
                break
            if j not in matched:
                matched.add(j)
                tp = True
                break
        tps.append(tp)
    cum = np.cumsum(tps)
    prec = [0.0] + list(cum / np.arange(1, len(tps) + 1)) + [0.0]
    rec = [0.0] + list(cum / len(gts)) + [1.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    return sum((rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1])


def ref_hl_ap(labels, scores):
    if not any(labels):
        return 0.0
    if all(labels):
        return 1.0
    points = []
    for thr in sorted(set(scores), reverse=True):
        chosen = [y for y, s in zip(labels, scores) if s >= thr]
        points.append((sum(chosen) / len(chosen), sum(chosen) / sum(labels)))
    levels = sorted({r for _, r in points if r > 0})
    return float(np.mean([max(p for p, r in points if r >= lvl) for lvl in levels]))


def random_mr_case(rng: random.Random):
    gts = []
    for _ in range(rng.randint(1, 4)):
        s = 2 * rng.randint(0, 70)
        gts.append([s, s + 2 * rng.randint(1, 10)])
    preds = []
    for _ in range(rng.randint(1, 14)):
        if rng.random() < 0.4:  # copies and shifts of GT windows create IoU ties
            g = rng.choice(gts)
            s, e = g[0] + 2 * rng.randint(-2, 2), g[1] + 2 * rng.randint(-2, 2)
        else:
            s = 2 * rng.randint(0, 70)
            e = s + 2 * rng.randint(0, 15)
        preds.append([s, max(s, e), rng.choice([0.1, 0.2, 0.3, 0.5])])  # few scores: many ties
    return gts, preds


def test_vectorised_mr_ap_matches_literal_reference():
    rng = random.Random(0)
    cases = [random_mr_case(rng) for _ in range(300)]
    ours = _mr_ap([np.array(g, float) for g, _ in cases], [np.array(p, float)[:10] for _, p in cases])
    expected = np.array([[ref_mr_ap(g, p, t) for t in IOU_THRESHOLDS] for g, p in cases])
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_vectorised_hl_ap_matches_literal_reference():
    rng = random.Random(1)
    for _ in range(300):
        n = rng.randint(1, 12)
        labels = np.array([[rng.random() < 0.4 for _ in range(5)] for _ in range(n)])
        scores = np.array([rng.choice([-0.5, 0.0, 0.1, 0.2, 0.7]) for _ in range(n)])
        expected = [ref_hl_ap(list(labels[:, k]), list(scores)) for k in range(5)]
        np.testing.assert_allclose(_hl_ap(labels, scores), expected, atol=1e-12)


def test_excerpt_predictions_match_reference():
    """Real predictions (committed excerpt): per-query MR AP equals the literal reference."""
    samples = read_jsonl(FIXTURES / "qvhighlights_val_excerpt.jsonl")
    sub = load_submission(FIXTURES / "qvhighlights_val_excerpt_preds.jsonl", samples)
    gts = [np.array(s.windows) for s in samples]
    preds = [np.array(p["pred_relevant_windows"], float)[:10] for p in sub]
    expected = [[ref_mr_ap(s.windows, p["pred_relevant_windows"], t) for t in IOU_THRESHOLDS]
                for s, p in zip(samples, sub)]
    np.testing.assert_allclose(_mr_ap(gts, preds), expected, atol=1e-12)
    r = evaluate_qvhighlights(sub, [s.raw for s in samples])
    assert r["full"]["MR-mAP"]["average"] == round(100 * float(np.mean(expected)), 2)


# --------------------------------------------------------------------------- load_submission

@pytest.fixture
def excerpt_gt():
    return read_jsonl(FIXTURES / "qvhighlights_val_excerpt.jsonl")


def write_submission(tmp_path, samples, bad_line: str | None = None, name="preds.jsonl") -> Path:
    """One valid line per sample; line 3 replaced by ``bad_line`` (``{qid}`` filled in)."""
    lines = [json.dumps(pred(s.qid, [[0, 10, 0.5]], [0.1, 0.2] * (s.num_clips // 2))) for s in samples]
    if bad_line is not None:
        lines[2] = bad_line.replace("{qid}", json.dumps(samples[2].qid))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_submission_accepts_valid_file(tmp_path, excerpt_gt):
    sub = load_submission(write_submission(tmp_path, excerpt_gt), excerpt_gt)
    assert [p["qid"] for p in sub] == [s.qid for s in excerpt_gt]


OK_W = '"pred_relevant_windows": [[0, 10, 0.5]]'
OK_S = '"pred_saliency_scores": [0.1]'
BAD_SUBMISSION_LINES = [
    ('{"qid": {qid}, ', None, "malformed JSON"),
    ('[1, 2, 3]', None, "expected a JSON object"),
    ('{' + OK_W + ', ' + OK_S + '}', "qid", "missing required field"),
    ('{"qid": true, ' + OK_W + ', ' + OK_S + '}', "qid", "found boolean true"),
    ('{"qid": 1.5, ' + OK_W + ', ' + OK_S + '}', "qid", "found number 1.5"),
    ('{"qid": {qid}, ' + OK_S + '}', "pred_relevant_windows", "missing required field"),
    ('{"qid": {qid}, ' + OK_W + '}', "pred_saliency_scores", "missing required field"),
    ('{"qid": {qid}, "pred_relevant_windows": "0 10", ' + OK_S + '}', "pred_relevant_windows", "expected a list"),
    ('{"qid": {qid}, "pred_relevant_windows": [], ' + OK_S + '}', "pred_relevant_windows", "empty list"),
    ('{"qid": {qid}, "pred_relevant_windows": [[0, 10]], ' + OK_S + '}', "pred_relevant_windows[0]", "three finite"),
    ('{"qid": {qid}, "pred_relevant_windows": [[0, 1, 1], [0, "9", 1]], ' + OK_S + '}',
     "pred_relevant_windows[1]", 'found list [0, "9", 1]'),
    ('{"qid": {qid}, "pred_relevant_windows": [[0, 10, true]], ' + OK_S + '}', "pred_relevant_windows[0]", "three"),
    ('{"qid": {qid}, "pred_relevant_windows": [[0, 10, NaN]], ' + OK_S + '}', "pred_relevant_windows[0]", "NaN"),
    ('{"qid": {qid}, "pred_relevant_windows": [[10, 4, 0.5]], ' + OK_S + '}', "pred_relevant_windows[0]",
     "expected start <= end"),
    ('{"qid": {qid}, ' + OK_W + ', "pred_saliency_scores": 0.5}', "pred_saliency_scores", "expected a list"),
    ('{"qid": {qid}, ' + OK_W + ', "pred_saliency_scores": []}', "pred_saliency_scores", "empty list"),
    ('{"qid": {qid}, ' + OK_W + ', "pred_saliency_scores": [0.1, null]}', "pred_saliency_scores[1]", "found null"),
    ('{"qid": {qid}, ' + OK_W + ', "pred_saliency_scores": [Infinity]}', "pred_saliency_scores[0]", "finite"),
]


@pytest.mark.parametrize("line, field, message", BAD_SUBMISSION_LINES,
                         ids=[f"{i}-{f}" for i, (_, f, _) in enumerate(BAD_SUBMISSION_LINES)])
def test_load_submission_bad_line(tmp_path, excerpt_gt, line, field, message):
    path = write_submission(tmp_path, excerpt_gt, line)
    with pytest.raises(InputError) as exc:
        load_submission(path, excerpt_gt)
    text = str(exc.value)
    assert str(path) in text and f"{path}:3:" in text and message in text
    assert exc.value.line == 3 and exc.value.field == field
    if field:
        assert f"field '{field}'" in text


def test_load_submission_duplicate_qid(tmp_path, excerpt_gt):
    path = write_submission(tmp_path, excerpt_gt, json.dumps(pred(excerpt_gt[0].qid, [[0, 1, 1]])))
    with pytest.raises(InputError, match=rf"{path.name}:3: field 'qid':.*{excerpt_gt[0].qid}.*line 1"):
        load_submission(path, excerpt_gt)


def test_load_submission_missing_qids_listed_with_count(tmp_path, excerpt_gt):
    path = write_submission(tmp_path, excerpt_gt[:13])
    with pytest.raises(InputError) as exc:
        load_submission(path, excerpt_gt)
    text = str(exc.value)
    missing = [s.qid for s in excerpt_gt[13:]]
    assert text.startswith(f"{path}: field 'qid':")
    assert "7 ground-truth qid(s) missing" in text and "(7 in all)" in text
    assert all(str(q) in text for q in missing[:5]) and str(missing[5]) not in text


def test_load_submission_extra_qid_names_line(tmp_path, excerpt_gt):
    path = write_submission(tmp_path, excerpt_gt, json.dumps(pred(123456789, [[0, 1, 1]])))
    with pytest.raises(InputError) as exc:
        load_submission(path, excerpt_gt)
    text = str(exc.value)
    assert f"{path}:3: field 'qid':" in text and "not in the ground truth: 123456789" in text
    assert f"missing from the submission: {excerpt_gt[2].qid}" in text


def test_load_submission_missing_file(tmp_path, excerpt_gt):
    with pytest.raises(InputError, match="nope.jsonl: cannot read file"):
        load_submission(tmp_path / "nope.jsonl", excerpt_gt)
