"""The readers of Charades-STA / TACoS / Ego4D-NLQ, YouTube Highlights and TVSum: committed
excerpts, the full public files (when ../shared is present), clamping, malformed records."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2bench.core.errors import InputError
from r2bench.datasets.formats import READERS, ClampWarning, get_reader
from r2bench.core.io import SHARED_DIR
from r2bench.datasets.registry import get_dataset

FIXTURES = Path(__file__).parent / "fixtures"
ANN = SHARED_DIR / "data" / "annotations"
needs_shared = pytest.mark.skipif(not ANN.is_dir(), reason="needs ../shared")


def write_lines(tmp_path, *objs, name="ann.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8")
    return path


def test_readers_registered_by_format():
    assert set(READERS) == {"qvhighlights", "grounding", "youtube_highlights", "tvsum"}
    with pytest.raises(KeyError, match="unknown annotation format 'nope'; known: grounding, qvhighlights"):
        get_reader("nope")


# --------------------------------------------------------------------------- excerpts

def test_charades_excerpt():
    samples = get_dataset("charades_sta").read(FIXTURES / "charades_sta_test_excerpt.jsonl")
    assert len(samples) == 12 and len({s.vid for s in samples}) == 6
    s = samples[0]
    assert (s.qid, s.vid, s.query, s.duration) == (12404, "3MSZA", "person turn a light on.", 30.96)
    assert s.windows == ((24.3, 30.4),) and (s.clip_ids, s.saliency) == ((), ())
    assert (s.clip_seconds, s.num_clips, s.domain) == (1.0, 30, None)      # 1-s clips: floor(30.96)


def test_tacos_excerpt():
    samples = get_dataset("tacos").read(FIXTURES / "tacos_test_excerpt.jsonl")
    assert len(samples) == 10 and {s.vid for s in samples} == {"s30-d52"}
    s = samples[1]
    assert s.qid == "s30-d52_1" and s.windows == ((12.27891156462585, 24.89795918367347),)
    assert (s.clip_seconds, s.num_clips) == (2.0, 124)                     # 249.86 s in 2-s clips


def test_ego4d_fixture():
    samples = get_dataset("ego4d_nlq").read(FIXTURES / "ego4d_nlq_val_fixture.jsonl")
    assert [s.qid for s in samples][:2] == ["clip-a_0", "clip-a_1"] and len(samples) == 6
    assert samples[3].duration == 472.53 and samples[3].windows == ((300.0, 340.0),)
    assert samples[5].windows == ((116.0, 120.0),) and samples[5].num_clips == 60


def test_youtube_excerpt():
    samples = get_dataset("youtube_highlights").read(FIXTURES / "youtube_highlights_val_excerpt.jsonl")
    assert len(samples) == 12
    assert sorted({s.domain for s in samples}) == ["dog", "gymnastics", "parkour", "skating", "skiing", "surfing"]
    for s in samples:
        labels = [row[0] for row in s.raw["label"]]
        assert s.num_clips == len(labels) == len(s.saliency) and s.clip_ids == tuple(range(len(labels)))
        assert [row[0] for row in s.saliency] == labels and s.windows == ()
        assert s.clip_seconds == pytest.approx(s.duration / len(labels))
        assert s.qid == s.vid and s.query == s.domain


def test_tvsum_excerpt_duration_counts_clips():
    samples = get_dataset("tvsum").read(FIXTURES / "tvsum_val_excerpt.jsonl")
    assert [(s.vid, s.domain, s.num_clips) for s in samples] == [
        ("sTEELN-vY30", "VU", 74), ("Se3oxnaPsz0", "BK", 69), ("JgHubY5Vw3Y", "BT", 71)]
    s = samples[0]
    assert s.duration == 148.0 and s.clip_seconds == 2.0                    # 74 clips of 2 s
    assert len(s.saliency) == 74 and all(len(row) == 20 for row in s.saliency)
    assert s.saliency[0][:3] == (5.0, 3.0, 2.0) and s.query == "BBC - Train crash 2013"


def test_qvhighlights_test_split_has_no_ground_truth():
    data = get_dataset("qvhighlights").bind({"test": FIXTURES / "qvhighlights_test_excerpt.jsonl"})
    samples = data.samples("test")             # the test split is read without requiring labels
    assert len(samples) == 8 and all(s.windows == () and s.saliency == () for s in samples)
    with pytest.raises(InputError, match="qvhighlights_test_excerpt.jsonl:1: field 'relevant_windows'"):
        get_dataset("qvhighlights").read(FIXTURES / "qvhighlights_test_excerpt.jsonl")


# --------------------------------------------------------------------------- full public files

@pytest.mark.shared
@needs_shared
@pytest.mark.parametrize("dataset, split, queries, videos", [
    ("qvhighlights", "val", 1550, 1519),
    ("qvhighlights", "train", 7218, 7100),
    ("qvhighlights", "test", 1542, 1529),
    ("charades_sta", "test", 3720, 1334),
    ("charades_sta", "train", 12404, 5336),
    ("tacos", "test", 4001, 25),
    ("tacos", "train", 9790, 75),
    ("tacos", "val", 4436, 27),
    ("tvsum", "val", 10, 10),
    ("tvsum", "train", 40, 40),
    ("youtube_highlights", "val", 152, 152),
    ("youtube_highlights", "train", 233, 233),
])
def test_full_public_files(recwarn, dataset, split, queries, videos):
    samples = get_dataset(dataset).bind().samples(split)
    assert (len(samples), len({s.vid for s in samples})) == (queries, videos)
    assert not [w for w in recwarn if issubclass(w.category, ClampWarning)]    # the releases are clean
    spec = get_dataset(dataset)
    if spec.domains:
        assert {s.domain for s in samples} == set(spec.domains)


# --------------------------------------------------------------------------- clamping

def test_grounding_clamps_ends_within_one_clip_and_counts_them(tmp_path):
    base = {"query": "a person opens a door.", "vid": "V1", "duration": 30.0}
    path = write_lines(tmp_path, {**base, "qid": 1, "relevant_windows": [[20.0, 30.6]]},
                       {**base, "qid": 2, "relevant_windows": [[2.0, 8.0]]},
                       {**base, "qid": 3, "relevant_windows": [[25.0, 31.0]]})
    with pytest.warns(ClampWarning) as record:
        samples = get_dataset("charades_sta").read(path)          # 1-s clips: up to 1 s past is clamped
    assert len(record) == 1 and record[0].message.count == 2
    assert "by at most 1 s" in str(record[0].message) and "one clip, 1 s" in str(record[0].message)
    assert [s.windows[0][1] for s in samples] == [30.0, 8.0, 30.0]
    gross = write_lines(tmp_path, {**base, "qid": 1, "relevant_windows": [[20.0, 31.2]]}, name="gross.jsonl")
    with pytest.raises(InputError, match=r"gross.jsonl:1: field 'relevant_windows\[0\]'.*found \[20.0, 31.2\]"):
        get_dataset("charades_sta").read(gross)
    # TACoS clips are 2 s: 31.2 on a 30-s video is within one clip there
    with pytest.warns(ClampWarning):
        assert get_dataset("tacos").read(gross)[0].windows == ((20.0, 30.0),)


# --------------------------------------------------------------------------- malformed records

GROUNDING = {"qid": 5, "query": "person sits down.", "duration": 30.5, "vid": "ABC12", "relevant_windows": [[1, 4]]}
YOUTUBE = {"qid": "v1", "vid": "v1", "query": "dog", "domain": "dog", "duration": 10.0,
           "label": [[0], [1], [1], [0]], "match": [-1, 1, 1, 0], "relevant_windows": None}
TVSUM = {"qid": "t1", "vid": "t1", "query": "a title", "domain": "VT", "duration": 3,
         "label": [[1.0, 2.0], [5.0, 3.0], [2.0, 2.0]], "relevant_windows": None}
D = object()   # drop the field


def edit(base, **changes):
    return {k: v for k, v in {**base, **changes}.items() if v is not D}


BAD = [  # (dataset, record, field, message)
    ("charades_sta", edit(GROUNDING, qid=D), "qid", "missing required field"),
    ("charades_sta", edit(GROUNDING, vid=""), "vid", "expected non-empty text"),
    ("charades_sta", edit(GROUNDING, duration="30"), "duration", "expected a finite number of seconds"),
    ("charades_sta", edit(GROUNDING, relevant_windows=D), "relevant_windows", "missing required field"),
    ("charades_sta", edit(GROUNDING, relevant_windows=[[4, 1]]), "relevant_windows[0]", "expected start < end"),
    ("charades_sta", edit(GROUNDING, relevant_windows=[[1, 4, 5]]), "relevant_windows[0]", "two finite numbers"),
    ("tacos", edit(GROUNDING, relevant_windows=[]), "relevant_windows", "at least one [start, end] window"),
    ("ego4d_nlq", edit(GROUNDING, query=7), "query", "expected a string, found integer 7"),
    ("youtube_highlights", edit(YOUTUBE, domain="cats"), "domain", "expected one of dog, gymnastics"),
    ("youtube_highlights", edit(YOUTUBE, domain=D), "domain", "missing required field"),
    ("youtube_highlights", edit(YOUTUBE, label=D), "label", "missing required field"),
    ("youtube_highlights", edit(YOUTUBE, label=[]), "label", "found an empty list"),
    ("youtube_highlights", edit(YOUTUBE, label=[[0], [2], [1], [0]]), "label[1]", "expected [0] or [1]"),
    ("youtube_highlights", edit(YOUTUBE, label=[[0], 1, [1], [0]]), "label[1]", "found integer 1"),
    ("youtube_highlights", edit(YOUTUBE, match=[-1, 1, 1]), "match", "one value per clip of 'label' (4), found 3"),
    ("youtube_highlights", edit(YOUTUBE, match=[1, 1, 1, 0]), "match[0]", "disagrees with label[0]=0"),
    ("youtube_highlights", edit(YOUTUBE, duration=0), "duration", "expected a duration > 0 seconds"),
    ("tvsum", edit(TVSUM, duration=6.0 + 0.5), "duration", "positive whole number of 2-s clips"),
    ("tvsum", edit(TVSUM, duration=4), "duration", "number of 'label' rows (3), found 4"),
    ("tvsum", edit(TVSUM, label=[[1.0, 2.0], [5.0, 6.0], [2.0, 2.0]]), "label[1]", "scores in 1..5"),
    ("tvsum", edit(TVSUM, label=[[1.0, 2.0], [5.0], [2.0, 2.0]]), "label[1]", "expected 2 scores (as in label[0]"),
    ("tvsum", edit(TVSUM, label=[[1.0, 2.0], [], [2.0, 2.0]]), "label[1]", "non-empty list"),
    ("tvsum", edit(TVSUM, domain="XX"), "domain", "expected one of VT, VU, GA"),
]


@pytest.mark.parametrize("dataset, record, field, message", BAD, ids=[f"{i}-{b[0]}-{b[2]}" for i, b in enumerate(BAD)])
def test_malformed_record_names_file_line_field(tmp_path, dataset, record, field, message):
    good = {"charades_sta": GROUNDING, "tacos": GROUNDING, "ego4d_nlq": GROUNDING,
            "youtube_highlights": YOUTUBE, "tvsum": TVSUM}[dataset]
    first = {**good, "qid": 1000 if isinstance(good["qid"], int) else "first", "vid": "first"}
    path = write_lines(tmp_path, first, "", record)
    with pytest.raises(InputError) as exc:
        get_dataset(dataset).read(path)
    text = str(exc.value)
    assert (exc.value.line, exc.value.field) == (3, field), text
    assert text.startswith(f"{path}:3: field '{field}':") and message in text, text


def test_duplicate_qid_and_bad_json(tmp_path):
    path = write_lines(tmp_path, GROUNDING, GROUNDING)
    with pytest.raises(InputError, match=r"ann.jsonl:2: field 'qid': expected unique qids, found 5 again \(first on line 1"):
        get_dataset("charades_sta").read(path)
    path = write_lines(tmp_path, YOUTUBE, "{oops", name="yt.jsonl")
    with pytest.raises(InputError, match=r"yt.jsonl:2: expected one JSON object per line, found malformed JSON"):
        get_dataset("youtube_highlights").read(path)


def test_valid_hand_written_records(tmp_path):
    (yt,) = get_dataset("youtube_highlights").read(write_lines(tmp_path, YOUTUBE))
    assert yt.saliency == ((0.0,), (1.0,), (1.0,), (0.0,)) and yt.clip_seconds == 2.5 and yt.num_clips == 4
    (tv,) = get_dataset("tvsum").read(write_lines(tmp_path, TVSUM, name="tv.jsonl"))
    assert tv.duration == 6.0 and tv.saliency[1] == (5.0, 3.0) and tv.domain == "VT"
