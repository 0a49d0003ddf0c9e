"""Every class of bad input in one place (issue 10, "bad input"): each ends in a clear
message naming the file, the line and the field — or, where the input is usable, in a
warning that says what was changed. Nothing here trains; the whole file runs in seconds.

Classes (the test of each): malformed JSON line, missing field, window end < start, window
past the duration (slightly: clamped with a warning; grossly: an error), empty query, query
longer than the tokenizer's context, duplicate qid, non-UTF-8 bytes, empty file, missing /
zero-byte / truncated video, a video much shorter than its annotated duration, prediction
qids that do not match the ground truth, NaN scores, a saliency list of the wrong length, a
``vid`` that escapes the video folder.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch

from r2bench.bench.metrics.qvhighlights import load_submission
from r2bench.core.errors import InputError
from r2bench.datasets.formats import ClampWarning
from r2bench.datasets.formats.qvhighlights import read_jsonl
from r2bench.datasets.registry import get_dataset
from r2bench.datasets.video import read_frames
from r2bench.datasets.vtg import SHORT_VIDEO_ERROR_CLIPS, VTGDataset, warn_long_queries

GOOD = {"qid": 1, "query": "a dog runs", "duration": 20, "vid": "v1",
        "relevant_clip_ids": [2, 3], "saliency_scores": [[1, 2, 3], [4, 0, 2]], "relevant_windows": [[4, 8]]}


def annotations(tmp_path, *lines: str | dict, name="train.jsonl") -> Path:
    """A file whose line 1 is GOOD and whose following lines are ``lines``."""
    path = tmp_path / name
    text = [json.dumps(GOOD)] + [json.dumps(x) if isinstance(x, dict) else x for x in lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def second(**changes) -> dict:
    out = {**GOOD, "qid": 2, **changes}
    return {k: v for k, v in out.items() if v is not None}


def refused(path, line, field, message, **kw):
    with pytest.raises(InputError) as e:
        read_jsonl(path, **kw)
    text = str(e.value)
    assert (e.value.line, e.value.field) == (line, field), text
    where = f"{path}:{line}: " + (f"field '{field}': " if field else "")
    assert text.startswith(where) and message in text, text


# ---- annotation files -----------------------------------------------------------------------
def test_malformed_json_line(tmp_path):
    refused(annotations(tmp_path, '{"qid": 2, "query": '), 2, None, "malformed JSON")


def test_missing_field(tmp_path):
    refused(annotations(tmp_path, {k: v for k, v in second().items() if k != "duration"}),
            2, "duration", "missing required field")


def test_window_end_before_start(tmp_path):
    refused(annotations(tmp_path, second(relevant_windows=[[8, 4]])), 2, "relevant_windows[0]", "start")


def test_window_slightly_past_the_duration_is_clamped_with_a_warning(tmp_path):
    path = annotations(tmp_path, second(relevant_windows=[[10, 21]]))       # 1 s past, clips are 2 s
    with pytest.warns(ClampWarning) as w:
        samples = read_jsonl(path)
    assert samples[1].windows == ((10.0, 20.0),)
    assert f"{path}:" in str(w[0].message) and "first on line 2, field 'relevant_windows[0]'" in str(w[0].message)


def test_window_grossly_past_the_duration_is_an_error(tmp_path):
    refused(annotations(tmp_path, second(relevant_windows=[[10, 30]])), 2, "relevant_windows[0]", "duration")


def test_empty_query(tmp_path):
    refused(annotations(tmp_path, second(query="   ")), 2, "query", "non-empty text")


def test_duplicate_qid(tmp_path):
    refused(annotations(tmp_path, second(qid=1)), 2, "qid", "unique qids")


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"qid": 2, "query": "caf\xe9"}\n')
    refused(path, 2, None, "expected UTF-8 text")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match=rf"{path}: expected at least one annotation line, found none"):
        read_jsonl(path)


def test_query_longer_than_the_context_is_cut_with_a_warning_naming_its_line(tmp_path, caplog):
    from r2bench.methods.backbone import Backbone
    backbone = Backbone("R2Bench-Tiny", None)
    long_query = " ".join(["a red square moves left"] * 20)                   # ~100 tokens > 32
    samples = read_jsonl(annotations(tmp_path, second(query=long_query)))
    assert backbone.count_tokens(long_query) > backbone.context_length
    with caplog.at_level(logging.WARNING):
        assert warn_long_queries(samples, backbone, "train") == 1
    assert f"{tmp_path / 'train.jsonl'}:2" in caplog.text and "cut" in caplog.text
    assert backbone.tokenize([long_query]).shape[1] == backbone.context_length     # cut, as announced


# ---- videos ---------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [None, b"", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64],
                         ids=["missing", "zero-byte", "truncated"])
def test_missing_zero_byte_or_truncated_video(tmp_path, content):
    path = tmp_path / "v.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_frames(path, 0.5, 32)
    assert e.value.field == "video" and str(e.value).startswith(f"{path}: field 'video':"), str(e.value)


def _short_video_dataset(tmp_path, clips: int):
    samples = read_jsonl(annotations(tmp_path))                              # duration 20 s: 10 clips of 2 s
    return VTGDataset(samples, lambda vid: torch.zeros(clips, 4), lambda qs: torch.zeros(len(qs), 8, dtype=torch.long),
                      fps=0.5, source="features", video_name=lambda vid: f"/videos/{vid}.mp4")


def test_a_video_much_shorter_than_annotated_is_an_error_naming_the_line(tmp_path):
    ds = _short_video_dataset(tmp_path, clips=10 - SHORT_VIDEO_ERROR_CLIPS - 1)
    with pytest.raises(InputError) as e:
        ds[0]
    assert (Path(e.value.path), e.value.line, e.value.field) == (tmp_path / "train.jsonl", 1, "duration")
    assert "/videos/v1.mp4 holds 4 clips" in str(e.value)


def test_a_video_slightly_shorter_than_annotated_warns_once(tmp_path, caplog):
    ds = _short_video_dataset(tmp_path, clips=8)
    with caplog.at_level(logging.WARNING):
        item, _ = ds[0], ds[0]
    assert item["video"].shape[0] == 8 and item["saliency"].shape[0] == 8
    assert caplog.text.count("2 clips shorter than annotated") == 1 and "/videos/v1.mp4" in caplog.text


def test_a_vid_that_escapes_the_video_folder_is_refused(tmp_path):
    (tmp_path / "outside.mp4").write_bytes(b"x")
    videos = tmp_path / "videos"
    videos.mkdir()
    data = get_dataset("qvhighlights").bind(tmp_path, videos)
    for vid in ("../outside", str(tmp_path / "outside"), "a/../../outside"):
        with pytest.raises(InputError) as e:
            data.video_path(vid)
        assert e.value.field == "vid" and "absolute or with '..'" in str(e.value)


# ---- prediction files -----------------------------------------------------------------------
@pytest.fixture
def truth(tmp_path):
    return read_jsonl(annotations(tmp_path, second(), name="val.jsonl"))


def predictions(tmp_path, *objs) -> Path:
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(o, allow_nan=True) + "\n" for o in objs))
    return path


def pred(qid, windows=((4, 8, 0.9),), saliency=(0.1,) * 10):
    return {"qid": qid, "pred_relevant_windows": [list(w) for w in windows], "pred_saliency_scores": list(saliency)}


def test_prediction_qids_that_do_not_match_the_ground_truth(tmp_path, truth):
    path = predictions(tmp_path, pred(1), pred(3))
    with pytest.raises(InputError) as e:
        load_submission(path, truth)
    assert e.value.field == "qid" and str(path) in str(e.value) and "2" in str(e.value)


def test_nan_scores(tmp_path, truth):
    path = predictions(tmp_path, pred(1), pred(2, windows=[(4, 8, float("nan"))]))
    with pytest.raises(InputError) as e:
        load_submission(path, truth)
    assert (e.value.line, e.value.field) == (2, "pred_relevant_windows[0]") and "finite" in str(e.value)
    path = predictions(tmp_path, pred(1), pred(2, saliency=[0.1] * 9 + [float("nan")]))
    with pytest.raises(InputError) as e:
        load_submission(path, truth)
    assert (e.value.line, e.value.field) == (2, "pred_saliency_scores[9]") and "finite" in str(e.value)


def test_a_saliency_list_of_the_wrong_length(tmp_path, truth):
    path = predictions(tmp_path, pred(1), pred(2, saliency=[0.1] * 3))
    with pytest.raises(InputError) as e:
        load_submission(path, truth)
    assert (e.value.line, e.value.field) == (2, "pred_saliency_scores") and "per clip" in str(e.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_submission(predictions(tmp_path, pred(1), pred(2)), truth)) == 2     # the right length is fine
