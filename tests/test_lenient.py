"""Strict vs ``--lenient`` prediction files: what the official evaluators accept that strict
validation refuses, scored as the official code does (values worked out by hand below), with one
logged warning per kind of deviation; what the official code itself fails on stays refused.

Official behaviour (``docs/metrics.md``): moment_detr ``standalone_eval/eval.py`` (QVHighlights),
R²-Tuning ``datasets/eval/evaluation.py`` (Charades-STA, TACoS, Ego4D-NLQ), the YouTube
Highlights / TVSum evaluators ``label[argsort(scores)]`` (R²-Tuning ``datasets/youtube.py``,
``datasets/tvsum.py``)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from r2bench.bench.metrics import evaluate, get_metric, load_submission
from r2bench.core.errors import InputError
from r2bench.datasets.formats.base import Sample
from r2bench.datasets.registry import get_dataset

FIXTURES = Path(__file__).parent / "fixtures"


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("r2bench")]


def load(path, gt, metric, lenient):
    return load_submission(path, gt, get_metric(metric), lenient=lenient)


def score(path, gt, metric, lenient=True):
    return evaluate(metric, load(path, gt, metric, lenient), gt, validate_lines=False)


# --------------------------------------------------------------------------- QVHighlights (moment_detr)

@pytest.fixture
def qv_gt(tmp_path):
    """q1: [0, 10], q2: [10, 20]; 20-s videos (10 clips); clip 0 (q1) / 5 (q2) rated 4 by all."""
    rows = [{"qid": 1, "vid": "a", "query": "x", "duration": 20, "relevant_windows": [[0, 10]],
             "relevant_clip_ids": [0], "saliency_scores": [[4, 4, 4]]},
            {"qid": 2, "vid": "b", "query": "y", "duration": 20, "relevant_windows": [[10, 20]],
             "relevant_clip_ids": [5], "saliency_scores": [[4, 4, 4]]}]
    return get_dataset("qvhighlights").read(write(tmp_path / "gt.jsonl", rows))


def one_hot(k, n=10):
    return [1.0 if i == k else 0.0 for i in range(n)]


def qv(qid, windows, saliency):
    return {"qid": qid, "pred_relevant_windows": windows, "pred_saliency_scores": saliency}


def test_qv_saliency_of_any_length(tmp_path, qv_gt, caplog):
    # q1: 3 scores for 10 clips; HIT@1: the top is clip 1 (0.5), not rated → miss. AP on (0, .5, .2)
    #     zero-padded to 10 clips: the positive clip 0 ties with the 7 padded zeros, so it is found
    #     only at threshold 0, with all 10 clips → precision 1/10 at recall 1 → AP 0.1 per annotator.
    # q2: 16 scores, top clip 12 (past the 10 clips) → HIT miss; AP on the first 10 (one-hot at 5) → 1.
    long_list = one_hot(5, 16)
    long_list[12] = 2.0
    sub = [qv(1, [[0, 10, 0.9]], [0.0, 0.5, 0.2]), qv(2, [[10, 20, 0.9]], long_list)]
    path = write(tmp_path / "p.jsonl", sub)
    with pytest.raises(InputError) as e:
        load(path, qv_gt, "qvhighlights", lenient=False)
    assert (e.value.line, e.value.field) == (1, "pred_saliency_scores") and str(path) in str(e.value)
    r = score(path, qv_gt, "qvhighlights")
    assert r.brief["HL-min-VeryGood-Hit1"] == 0.0            # q1: clip 1 is the top (0.5), q2: clip 12
    assert r.brief["HL-min-VeryGood-mAP"] == round(100 * (0.1 + 1) / 2, 2) == 55.0
    assert r.brief["MR-full-mAP"] == 100.0
    (message,) = warnings_of(caplog)
    assert "2 line(s) whose pred_saliency_scores are more than 4 clips away" in message
    assert "first on line 1, field 'pred_saliency_scores': 3 scores for 10 clips" in message
    assert "cut or zero-padded" in message


def test_qv_extra_keys_and_line_order_are_free_in_both_modes(tmp_path, qv_gt, caplog):
    base = [qv(1, [[0, 10, 0.9]], one_hot(0)), qv(2, [[10, 15, 0.9]], one_hot(3))]
    plain = score(write(tmp_path / "a.jsonl", base), qv_gt, "qvhighlights", lenient=False)
    shuffled = [dict(base[1], vid="b", query="y", extra={"anything": [1, 2]}), dict(base[0], note="n")]
    for lenient in (False, True):
        r = score(write(tmp_path / "b.jsonl", shuffled), qv_gt, "qvhighlights", lenient=lenient)
        assert json.dumps(r.brief) == json.dumps(plain.brief) and r.per_query.equals(plain.per_query)
    assert warnings_of(caplog) == []


def test_qv_repeated_qid_pools_windows_for_map_and_uses_the_last_line(tmp_path, qv_gt, caplog):
    # q1 on lines 1 and 3. mAP pools [50, 60, .9] (line 1) and [0, 10, .8] (line 3): FP then TP
    #   → precision (0, 1/2), recall (0, 1) → AP 1/2; q2 AP 1 → MR-full-mAP 75.
    # R1 uses the last line's first window [0, 10] → hit; q2 hit → 100.
    # HL uses the last line: top clip 0 (rated 4) → hit; line 1's top clip 3 would miss.
    sub = [qv(1, [[50, 60, 0.9]], one_hot(3)), qv(2, [[10, 20, 0.9]], one_hot(5)), qv(1, [[0, 10, 0.8]], one_hot(0))]
    path = write(tmp_path / "p.jsonl", sub)
    with pytest.raises(InputError, match=r"p.jsonl:3: field 'qid': expected one line per qid, found 1 again"):
        load(path, qv_gt, "qvhighlights", lenient=False)
    r = score(path, qv_gt, "qvhighlights")
    assert r.brief["MR-full-mAP"] == 75.0 and r.brief["MR-full-R1@0.5"] == 100.0
    assert r.brief["HL-min-VeryGood-Hit1"] == 100.0 and r.brief["HL-min-VeryGood-mAP"] == 100.0
    assert list(r.per_query.index) == [1, 2] and list(r.per_query["MR-full-mAP"]) == [50.0, 100.0]
    (message,) = warnings_of(caplog)
    assert "1 line(s) repeating a qid; first on line 3, field 'qid'" in message


def test_qv_first_line_without_saliency_skips_highlight_detection(tmp_path, qv_gt, caplog):
    sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.9]]}, qv(2, [[10, 20, 0.9]], [])]
    path = write(tmp_path / "p.jsonl", sub)
    with pytest.raises(InputError) as e:
        load(path, qv_gt, "qvhighlights", lenient=False)
    assert (e.value.line, e.value.field) == (1, "pred_saliency_scores") and "missing required field" in str(e.value)
    r = score(path, qv_gt, "qvhighlights")
    assert list(r.brief) == ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5",
                             "MR-full-mAP@0.75", "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP"]
    assert r.brief["MR-full-mAP"] == 100.0 and list(r.per_query.columns) == list(r.brief)
    assert not any(k.startswith("HL") for k in r.full)
    messages = warnings_of(caplog)
    assert any("line 1 without pred_saliency_scores" in m and "no HL metrics" in m for m in messages)
    # line 2's empty list is never read by the official code: ignored, with a warning of its own
    assert any("invalid field that the official evaluator does not read" in m for m in messages)


def test_qv_a_later_line_without_saliency_fails_as_officially(tmp_path, qv_gt):
    sub = [qv(1, [[0, 10, 0.9]], one_hot(0)), {"qid": 2, "pred_relevant_windows": [[10, 20, 0.9]]}]
    with pytest.raises(InputError) as e:
        load(write(tmp_path / "p.jsonl", sub), qv_gt, "qvhighlights", lenient=True)
    assert (e.value.line, e.value.field) == (2, "pred_saliency_scores")
    assert "official evaluator fails on this too" in str(e.value)


@pytest.mark.parametrize("bad, field, why", [
    ('"pred_relevant_windows": []', "pred_relevant_windows", "R1 reads the first window"),
    ('"pred_relevant_windows": [[0, 10]]', "pred_relevant_windows[0]", "three finite numbers"),
    ('"pred_relevant_windows": [[0, 10, NaN]]', "pred_relevant_windows[0]", "three finite numbers"),
    ('"pred_saliency_scores": []', "pred_saliency_scores", "argmax"),
])
def test_qv_what_the_official_code_fails_on_stays_refused(tmp_path, qv_gt, bad, field, why):
    good = {"pred_relevant_windows": '[[0, 10, 0.9]]', "pred_saliency_scores": json.dumps(one_hot(0))}
    key = bad.split('"')[1]
    good[key] = bad.split(": ", 1)[1]
    text = json.dumps(qv(1, [[0, 10, 0.9]], one_hot(0))) + "\n" + \
        '{"qid": 2, ' + ", ".join(f'"{k}": {v}' for k, v in good.items()) + "}\n"
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        load(path, qv_gt, "qvhighlights", lenient=True)
    assert (e.value.line, e.value.field) == (2, field) and why in str(e.value)


def test_qv_missing_or_extra_qids_refused_in_both_modes(tmp_path, qv_gt):
    path = write(tmp_path / "p.jsonl", [qv(1, [[0, 10, 0.9]], one_hot(0)), qv(3, [[0, 10, 0.9]], one_hot(0))])
    for lenient in (False, True):
        with pytest.raises(InputError, match="1 ground-truth qid.s. missing from the submission: 2; 1 qid.s. not in "
                                             "the ground truth: 3") as e:
            load(path, qv_gt, "qvhighlights", lenient=lenient)
        assert e.value.line == 2 and e.value.field == "qid"
    assert "asserts equal qid sets" in str(e.value)


# --------------------------------------------------------------------------- windows: negative, inverted, extra values

@pytest.fixture
def mr_gt(tmp_path):
    rows = [{"qid": i, "vid": "v", "query": "q", "duration": 30.0, "relevant_windows": [w]}
            for i, w in enumerate([[2.0, 5.2], [0.0, 10.0], [0.0, 10.0]], 1)]
    return get_dataset("charades_sta").read(write(tmp_path / "gt.jsonl", rows))


def test_windows_inverted_negative_and_with_extra_values(tmp_path, mr_gt, caplog):
    # q1 [5.2, 2.0] (end < start, length −3.2 = minus the ground truth's): no overlap → paired IoU 0
    #    (R1/mIoU miss); in mAP the usual IoU is 0 / (−3.2 + 3.2 − 0) = NaN, which the official
    #    ``tiou < t`` never rejects → a true positive at every t → AP 1.
    # q2 [−10, 10] against [0, 10], unclamped: inter 10, hull 20 → 0.5 (usual 10 / 20 = 0.5);
    #    mAP TP at 0.5 only → AP 1/10. Clamped to [0, 10] it would be IoU 1.
    # q3 [0, 10, 0.9, 123] → the first three values: IoU 1.
    # R1@0.3 = R1@0.5 = 2/3, R1@0.7 = 1/3, mIoU (0 + .5 + 1) / 3 = 50, mAP (1 + .1 + 1) / 3 = 70.
    sub = [{"qid": 1, "pred_relevant_windows": [[5.2, 2.0, 0.9]]},
           {"qid": 2, "pred_relevant_windows": [[-10.0, 10.0, 0.9]]},
           {"qid": 3, "pred_relevant_windows": [[0.0, 10.0, 0.9, 123]]}]
    path = write(tmp_path / "p.jsonl", sub)
    for lines, message in [(sub, "expected start <= end, found [5.2, 2.0]"),
                           (sub[1:], "expected times >= 0 s, found [-10.0, 10.0]"),
                           (sub[2:], "three finite numbers")]:
        line_no, field = 1, "pred_relevant_windows[0]"
        strict = write(tmp_path / "s.jsonl", lines)
        with pytest.raises(InputError) as e:
            load(strict, [s for s in mr_gt if s.qid in {x["qid"] for x in lines}], "grounding", lenient=False)
        assert (e.value.line, e.value.field) == (line_no, field) and message in str(e.value)
        assert str(strict) in str(e.value)
    r = score(path, mr_gt, "grounding")
    assert r.brief == {"MR-full-R1@0.3": 66.67, "MR-full-R1@0.5": 66.67, "MR-full-R1@0.7": 33.33,
                       "MR-full-mIoU": 50.0, "MR-full-R5@0.3": 66.67, "MR-full-R5@0.5": 66.67,
                       "MR-full-R5@0.7": 33.33, "MR-full-mAP": 70.0}
    messages = warnings_of(caplog)
    assert len(messages) == 3
    assert any("1 window(s) ending before they start; first on line 1, field 'pred_relevant_windows[0]'" in m
               for m in messages)
    assert any("1 window(s) with negative times; first on line 2" in m and "not clamped" in m for m in messages)
    assert any("more values than [start, end, score]; first on line 3" in m for m in messages)


def test_grounding_saliency_is_never_read_in_lenient_mode(tmp_path, mr_gt, caplog):
    sub = [{"qid": q, "pred_relevant_windows": [[0.0, 10.0, 0.9]], "pred_saliency_scores": [0.1] * n}
           for q, n in ((1, 30), (2, 300), (3, 0))]
    path = write(tmp_path / "p.jsonl", sub)
    with pytest.raises(InputError, match=r"p.jsonl:2: field 'pred_saliency_scores': expected one score per clip"):
        load(path, mr_gt, "grounding", lenient=False)
    r = score(path, mr_gt, "grounding")
    assert r.brief["MR-full-R1@0.7"] == 66.67
    (message,) = warnings_of(caplog)
    assert message.startswith(f"{path}: 2 line(s) with an invalid field that the official evaluator does not read; "
                              "first on line 2, field 'pred_saliency_scores'")


# --------------------------------------------------------------------------- YouTube Highlights / TVSum

def yt_sample(vid, labels, domain="dog") -> Sample:
    return Sample(qid=vid, vid=vid, query=domain, duration=2.0 * len(labels), windows=(),
                  clip_ids=tuple(range(len(labels))), saliency=tuple((y,) for y in labels), clip_seconds=2.0,
                  num_clips=len(labels), domain=domain, source="test", raw={})


def test_youtube_short_and_empty_score_lists(tmp_path, caplog):
    gt = [yt_sample("A", [0, 1, 1, 0, 0, 0, 0, 0, 1, 0]), yt_sample("B", [1, 0, 0, 0, 0, 0], "surfing"),
          yt_sample("C", [0, 1, 0, 0], "surfing")]
    # A: 3 scores for 10 clips: only clips 0-2 are ranked (label[argsort(scores)]): order 0, 2, 1
    #    → labels 0, 1, 1, P = 2 → 0 + .5 × (0 + .5) / 2 + .5 × (.5 + 2/3) / 2 = 0.416667
    # B: empty → nothing ranked → AP 0.   C: a full list, clip 1 first → AP 1.
    sub = [{"vid": "A", "pred_saliency_scores": [0.9, 0.1, 0.3]}, {"vid": "B", "pred_saliency_scores": []},
           {"vid": "C", "pred_saliency_scores": [0.1, 0.9, 0.2, 0.0], "pred_relevant_windows": []}]
    path = write(tmp_path / "p.jsonl", sub)
    with pytest.raises(InputError) as e:
        load(path, gt, "youtube_highlights", lenient=False)
    assert (e.value.line, e.value.field) == (1, "pred_saliency_scores")
    r = score(path, gt, "youtube_highlights")
    ap_a = .5 * .5 / 2 + .5 * (.5 + 2 / 3) / 2
    assert r.brief == {"mAP-dog": round(100 * ap_a, 2), "mAP-surfing": 50.0,
                       "mAP": round(100 * (ap_a + .5) / 2, 2)}
    assert r.brief["mAP-dog"] == 41.67
    messages = warnings_of(caplog)
    assert any("1 line(s) whose pred_saliency_scores are more than 4 clips shorter" in m and "first on line 1" in m
               for m in messages)
    assert any("1 line(s) with an empty pred_saliency_scores; first on line 2" in m for m in messages)
    assert any("not read; first on line 3, field 'pred_relevant_windows'" in m for m in messages)


def test_highlight_files_the_official_code_fails_on_stay_refused(tmp_path):
    gt = [yt_sample("A", [0, 1, 1, 0]), yt_sample("B", [1, 0, 0, 0])]
    too_long = [{"vid": "A", "pred_saliency_scores": [0.1] * 9}, {"vid": "B", "pred_saliency_scores": [0.1] * 4}]
    with pytest.raises(InputError, match=r"p.jsonl:1: field 'pred_saliency_scores': .* found 9 scores .*indexes past"):
        load(write(tmp_path / "p.jsonl", too_long), gt, "youtube_highlights", lenient=True)
    twice = [{"vid": "A", "pred_saliency_scores": [0.1] * 4}, {"vid": "A", "pred_saliency_scores": [0.1] * 4},
             {"vid": "B", "pred_saliency_scores": [0.1] * 4}]
    with pytest.raises(InputError, match=r"q.jsonl:2: field 'vid': expected one line per vid"):
        load(write(tmp_path / "q.jsonl", twice), gt, "youtube_highlights", lenient=True)
    missing = [{"vid": "A"}, {"vid": "B", "pred_saliency_scores": [0.1] * 4}]
    with pytest.raises(InputError, match=r"r.jsonl:1: field 'pred_saliency_scores': missing required field"):
        load(write(tmp_path / "r.jsonl", missing), gt, "youtube_highlights", lenient=True)


def test_tvsum_lenient_short_list_and_order(tmp_path, caplog):
    gt = get_dataset("tvsum").read(FIXTURES / "tvsum_val_excerpt.jsonl")
    sub = [{"vid": s.vid, "pred_saliency_scores": [sum(r) for r in s.saliency][:20]} for s in reversed(gt)]
    path = write(tmp_path / "p.jsonl", sub)
    with pytest.raises(InputError):
        load(path, gt, "tvsum", lenient=False)
    r = score(path, gt, "tvsum")
    assert r.brief == evaluate("tvsum", sub, gt, validate_lines=False).brief
    (message,) = warnings_of(caplog)
    assert f"{len(gt)} line(s) whose pred_saliency_scores are more than 4 clips shorter" in message


def test_in_memory_predictions_lenient_too(caplog):
    gt = [yt_sample("A", [0, 1, 1, 0, 0, 0, 0, 0, 1, 0])]
    sub = [{"vid": "A", "pred_saliency_scores": [0.9, 0.1, 0.3]}]
    with pytest.raises(InputError, match=r"<submission>:1: field 'pred_saliency_scores': .*found 3 scores.*--lenient"):
        evaluate("youtube_highlights", sub, gt)
    assert evaluate("youtube_highlights", sub, gt, lenient=True).brief["mAP"] == 41.67
    (message,) = warnings_of(caplog)
    assert message.startswith("<submission>: 1 line(s) whose pred_saliency_scores are more than 4 clips shorter")
