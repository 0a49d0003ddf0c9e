"""datasets.formats.qvhighlights: reading QVHighlights-format JSONL and rejecting every kind of bad field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2bench.core.io import SHARED_DIR
from r2bench.datasets.formats import ClampWarning
from r2bench.datasets.formats.qvhighlights import Sample, read_jsonl
from r2bench.core.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures"
QVH = SHARED_DIR / "data/annotations/qvhighlights"

GOOD = {"qid": 7, "query": "a dog runs", "duration": 20, "vid": "v1",
        "relevant_clip_ids": [2, 3], "saliency_scores": [[1, 2, 3], [4, 0, 2]], "relevant_windows": [[4, 8]]}


def test_excerpt_parses_into_samples():
    path = FIXTURES / "qvhighlights_val_excerpt.jsonl"
    samples = read_jsonl(path)
    assert len(samples) == 20
    first = samples[0]
    assert isinstance(first, Sample)
    assert (first.qid, first.vid, first.duration) == (2579, "NUsG9BgSes0_210.0_360.0", 150.0)
    assert first.query.startswith("A girl and her mother cooked")
    assert first.windows == ((82.0, 150.0),)
    assert first.clip_ids == tuple(range(41, 75)) and first.saliency[0] == (1, 1, 2)
    assert (first.clip_seconds, first.num_clips, first.domain) == (2, 75, None)
    assert first.source == f"{path}:1" and samples[19].source == f"{path}:20"
    assert first.raw == json.loads(path.read_text().splitlines()[0])
    assert samples[2].windows == ((56.0, 76.0), (96.0, 150.0))


def write_lines(tmp_path, *lines, name="ann.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_blank_lines_skipped_and_line_numbers_physical(tmp_path):
    path = write_lines(tmp_path, "", json.dumps(GOOD), "   ", json.dumps({**GOOD, "qid": "x-8"}))
    samples = read_jsonl(path)
    assert [s.qid for s in samples] == [7, "x-8"]
    assert [s.source for s in samples] == [f"{path}:2", f"{path}:4"]


def test_unlabelled_split(tmp_path):
    bare = {k: GOOD[k] for k in ("qid", "query", "duration", "vid")}
    path = write_lines(tmp_path, json.dumps(bare))
    (s,) = read_jsonl(path, require_labels=False)
    assert (s.windows, s.clip_ids, s.saliency) == ((), (), ())
    with pytest.raises(InputError, match=rf"{path.name}:1: field 'relevant_windows': missing required field"):
        read_jsonl(path)
    # labels that are present are still validated
    bad = write_lines(tmp_path, json.dumps({**bare, "relevant_windows": [[5, 1]]}), name="b.jsonl")
    with pytest.raises(InputError, match=r"b.jsonl:1: field 'relevant_windows\[0\]'"):
        read_jsonl(bad, require_labels=False)
    half = write_lines(tmp_path, json.dumps({**bare, "relevant_clip_ids": [1]}), name="c.jsonl")
    with pytest.raises(InputError, match=r"c.jsonl:1: field 'saliency_scores': missing required field"):
        read_jsonl(half, require_labels=False)


def with_(**changes) -> str:
    """GOOD with another qid (8) and ``changes`` applied; ``DROP`` removes a field."""
    obj = {**GOOD, "qid": 8, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not DROP})


DROP = object()
BAD_LINES = [  # (line 3 of the file, field, what the message must say)
    ('{"qid": 8, "query": ', None, "malformed JSON"),
    ('"just a string"', None, 'expected a JSON object, found string "just a string"'),
    (with_(qid=DROP), "qid", "missing required field"),
    (with_(vid=DROP), "vid", "missing required field"),
    (with_(query=DROP), "query", "missing required field"),
    (with_(duration=DROP), "duration", "missing required field"),
    (with_(relevant_windows=DROP), "relevant_windows", "missing required field"),
    (with_(relevant_clip_ids=DROP), "relevant_clip_ids", "missing required field"),
    (with_(saliency_scores=DROP), "saliency_scores", "missing required field"),
    (with_(qid=True), "qid", "expected an integer or a non-empty string, found boolean true"),
    (with_(qid=[1]), "qid", "found list [1]"),
    (with_(vid=12), "vid", "expected a string, found integer 12"),
    (with_(query=None), "query", "expected a string, found null"),
    (with_(query="  \t"), "query", "expected non-empty text"),
    (with_(query=""), "query", "expected non-empty text"),
    (with_(duration="150"), "duration", 'expected a finite number of seconds, found string "150"'),
    (with_(duration=0), "duration", "expected a duration > 0 seconds, found 0"),
    (with_(duration=-3.5), "duration", "found -3.5"),
    (with_(duration=float("nan")), "duration", "found number NaN"),
    (with_(relevant_windows="4-8"), "relevant_windows", "expected a list"),
    (with_(relevant_windows=[]), "relevant_windows", "expected at least one [start, end] window"),
    (with_(relevant_windows=[[4, 8], [1, 2, 3]]), "relevant_windows[1]", "two finite numbers, found list [1, 2, 3]"),
    (with_(relevant_windows=[["4", 8]]), "relevant_windows[0]", "two finite numbers"),
    (with_(relevant_windows=[[6, 6]]), "relevant_windows[0]", "expected start < end, found [6, 6]"),
    (with_(relevant_windows=[[7, 2]]), "relevant_windows[0]", "expected start < end, found [7, 2]"),
    (with_(relevant_windows=[[-2, 4]]), "relevant_windows[0]", "window inside [0, duration=20]"),
    (with_(relevant_windows=[[-2, 4]]), "relevant_windows[0]", "found [-2, 4]"),
    (with_(relevant_windows=[[10, 22.5]]), "relevant_windows[0]", "an end at most one clip, 2 s, past the duration "
                                                                   "is clamped), found [10, 22.5]"),
    (with_(relevant_windows=[[20, 21]]), "relevant_windows[0]", "found [20, 21]"),
    (with_(relevant_clip_ids=3), "relevant_clip_ids", "expected a list, found integer 3"),
    (with_(relevant_clip_ids=[2, 3.0]), "relevant_clip_ids[1]", "expected an integer clip id, found number 3.0"),
    (with_(relevant_clip_ids=[2, True]), "relevant_clip_ids[1]", "found boolean true"),
    (with_(relevant_clip_ids=[2, 10]), "relevant_clip_ids[1]", "clip id in [0, 10)"),
    (with_(relevant_clip_ids=[-1, 3]), "relevant_clip_ids[0]", "found -1"),
    (with_(relevant_clip_ids=[3, 3]), "relevant_clip_ids[1]", "unique clip ids, found 3 twice"),
    (with_(saliency_scores={"a": 1}), "saliency_scores", "expected a list, found object"),
    (with_(saliency_scores=[[1, 2, 3]]), "saliency_scores", "2 rows), found 1 rows"),
    (with_(relevant_clip_ids=[2]), "saliency_scores", "1 rows), found 2 rows"),
    (with_(saliency_scores=[[1, 2, 3], [4, 0]]), "saliency_scores[1]", "3 integers in 0..4"),
    (with_(saliency_scores=[[1, 2, 3], [4, 0, 5]]), "saliency_scores[1]", "found list [4, 0, 5]"),
    (with_(saliency_scores=[[1, 2, 3], [4, 0, -1]]), "saliency_scores[1]", "found list [4, 0, -1]"),
    (with_(saliency_scores=[[1, 2.5, 3], [4, 0, 1]]), "saliency_scores[0]", "3 integers"),
    (with_(saliency_scores=[[1, 2, 3], 4]), "saliency_scores[1]", "found integer 4"),
    (with_(qid=GOOD["qid"]), "qid", "expected unique qids, found 7 again (first on line 1)"),
]


@pytest.mark.parametrize("line, field, message", BAD_LINES, ids=[f"{i}-{f}" for i, (_, f, _) in enumerate(BAD_LINES)])
def test_bad_field_names_file_line_field(tmp_path, line, field, message):
    path = write_lines(tmp_path, json.dumps(GOOD), "", line, json.dumps({**GOOD, "qid": 99}))
    with pytest.raises(InputError) as exc:
        read_jsonl(path)
    text = str(exc.value)
    assert text.startswith(f"{path}:3:"), text
    assert (exc.value.line, exc.value.field) == (3, field)
    if field:
        assert f"field '{field}'" in text
    assert message in text, text


def test_window_ends_up_to_one_clip_past_the_duration_are_clamped_with_one_warning(tmp_path):
    lines = [json.dumps({**GOOD, "qid": 1, "relevant_windows": [[10, 21.5]]}),
             json.dumps({**GOOD, "qid": 2}),
             json.dumps({**GOOD, "qid": 3, "relevant_windows": [[0, 2], [12, 22]]})]
    path = write_lines(tmp_path, *lines)
    with pytest.warns(ClampWarning) as record:
        samples = read_jsonl(path)
    assert len(record) == 1 and record[0].message.count == 2
    assert "clamped 2 ground-truth window end(s)" in str(record[0].message)
    assert "first on line 1, field 'relevant_windows[0]'" in str(record[0].message)
    assert [s.windows for s in samples] == [((10.0, 20.0),), ((4.0, 8.0),), ((0.0, 2.0), (12.0, 20.0))]
    assert samples[0].raw["relevant_windows"] == [[10, 21.5]]          # the file's values are kept in raw


def test_invalid_utf8(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n{\"qid\": \"\xff\"}\n")
    with pytest.raises(InputError, match=r"bin.jsonl:2: expected UTF-8 text"):
        read_jsonl(path)


def test_unicode_line_separator_inside_query_is_not_a_line_break(tmp_path):
    path = write_lines(tmp_path, json.dumps({**GOOD, "query": "a\u2028b"}, ensure_ascii=False))
    assert read_jsonl(path)[0].query == "a\u2028b"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match=r"absent.jsonl: cannot read file"):
        read_jsonl(tmp_path / "absent.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match=r"empty.jsonl: expected at least one annotation line, found none"):
        read_jsonl(empty)


@pytest.mark.shared
@pytest.mark.skipif(not QVH.exists(), reason="needs ../shared")
def test_official_qvhighlights_files_validate():
    assert len(read_jsonl(QVH / "highlight_train_release.jsonl")) == 7218
    assert len(read_jsonl(QVH / "highlight_val_release.jsonl")) == 1550
    test = read_jsonl(QVH / "highlight_test_release.jsonl", require_labels=False)
    assert len(test) == 1542 and test[0].windows == ()
