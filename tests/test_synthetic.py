"""datasets.synthetic: determinism, decodable videos, valid QVHighlights annotations, reuse."""
import json
import os

import numpy as np
import pytest

from r2bench.datasets.synthetic import generator as S
from r2bench.datasets.video import read_frames, video_duration

TINY = dict(n_train=3, n_val=2, n_test=2, duration=16, write_fps=1, frame_size=32, progress=False)


def _annotations(root):
    return {split: [json.loads(line) for line in (root / "annotations" / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "val", "test")}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return S.generate(tmp_path_factory.mktemp("syn") / "a", seed=3, **TINY)


def test_same_seed_same_data_different_seed_different(bench, tmp_path):
    again = S.generate(tmp_path / "b", seed=3, **TINY)
    for split in ("train", "val", "test"):
        assert (bench / "annotations" / f"{split}.jsonl").read_bytes() == \
            (again / "annotations" / f"{split}.jsonl").read_bytes()
    for video in sorted((bench / "videos").iterdir()):
        np.testing.assert_array_equal(read_frames(video, 1, 32), read_frames(again / "videos" / video.name, 1, 32))
    other = S.generate(tmp_path / "c", seed=4, **TINY)
    assert _annotations(other) != _annotations(bench)
    assert not np.array_equal(read_frames(other / "videos" / "syn00000.mp4", 1, 32),
                              read_frames(bench / "videos" / "syn00000.mp4", 1, 32))


def test_decoded_video_matches_rendered_frames(bench):
    path = bench / "videos" / "syn00001.mp4"
    assert video_duration(path) == pytest.approx(16)
    decoded = read_frames(path, fps=1, size=32).astype(int)
    scene, _ = S.video_content(3, 1, 16, 32)
    rendered = S.video_frames(scene, 3, 1, 16, 1, 32).astype(int)
    assert decoded.shape == rendered.shape == (16, 32, 32, 3)
    assert np.abs(decoded - rendered).mean() < 4
    # colours survive: pixels inside a shape (3x3 neighbourhood of one colour) keep that colour
    clean = np.stack([S.render(scene, 32, float(k)) for k in range(16)]).astype(int)
    same = np.ones(clean.shape[:3], bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= (np.roll(clean, (dy, dx), axis=(1, 2)) == clean).all(-1)
    checked = 0
    for colour in S.COLOURS.values():
        inside = same & (clean == colour).all(-1)
        inside[:, [0, -1]] = inside[:, :, [0, -1]] = False
        checked += inside.sum()
        assert (np.abs(decoded[inside] - colour).max(-1) < 25).all()
    assert checked > 100


def test_annotations_are_valid_qvhighlights(bench):
    anns = _annotations(bench)
    qids, vids_by_split = set(), {}
    for split, rows in anns.items():
        vids_by_split[split] = {r["vid"] for r in rows}
        for r in rows:
            assert set(r) == {"qid", "query", "duration", "vid", "relevant_windows", "relevant_clip_ids",
                              "saliency_scores"}
            assert r["qid"] not in qids and r["query"] and r["duration"] == 16
            qids.add(r["qid"])
            assert (bench / "videos" / f"{r['vid']}.mp4").is_file()
            windows = r["relevant_windows"]
            assert 1 <= len(windows) <= 2
            for s, e in windows:
                assert 0 <= s < e <= 16 and s % 2 == 0 and e % 2 == 0 and 4 <= e - s <= 24
            clips = [c for s, e in windows for c in range(s // 2, e // 2)]
            assert r["relevant_clip_ids"] == sorted(clips)
            assert len(r["saliency_scores"]) == len(clips)
            assert all(len(row) == 3 and all(1 <= v <= 4 for v in row) for row in r["saliency_scores"])
    assert not (vids_by_split["train"] & vids_by_split["val"]) and not (vids_by_split["val"] & vids_by_split["test"])
    assert not (vids_by_split["train"] & vids_by_split["test"])
    per_video = {}
    for rows in anns.values():
        for r in rows:
            per_video[r["vid"]] = per_video.get(r["vid"], 0) + 1
    assert len(per_video) == 7 and set(per_video.values()) <= set(range(1, S.MAX_QUERIES_PER_VIDEO + 1))


def test_annotation_reader_accepts_the_files(bench):
    annotations = pytest.importorskip("r2bench.datasets.formats.qvhighlights")
    for split in ("train", "val", "test"):
        samples = annotations.read_jsonl(bench / "annotations" / f"{split}.jsonl")
        assert samples and all(len(s.saliency) == len(s.clip_ids) for s in samples)


def test_queries_name_exactly_one_object_and_mix_granularities():
    coarse = fine = 0
    for index in range(150):
        scene, anns = S.video_content(0, index, 60, 64)
        for ann in anns:
            core = ann["query"][ann["query"].index("a "):]
            sets = [s for level in S.LEVELS for s in level]
            matches = {id(o) for o in scene.objects for s in sets if S.describe(o, s) == core}
            assert len(matches) == 1, ann["query"]
            coarse += core.count(" ") == 2          # "a red circle"
            fine += "half" in core and ("moving" in core or "still" in core)
    assert coarse > 50 and fine > 0


def test_every_query_target_is_windowed_and_videos_hold_several_queries():
    counts = []
    for index in range(100):
        scene, anns = S.video_content(1, index, 60, 64)
        counts.append(len(anns))
        assert len({a["query"][a["query"].index("a "):] for a in anns}) == len(anns)   # distinct targets
    assert max(counts) == S.MAX_QUERIES_PER_VIDEO and min(counts) >= 1 and np.mean(counts) > 1.8


def test_pretraining_captions_name_only_coarse_attributes():
    rng = np.random.default_rng(0)
    fine_words = {"small", "large", "upper", "lower", "left", "right", "up", "down", "still", "moving", "half"}
    for _ in range(200):
        scene = S.random_scene(rng)
        caption = S.scene_caption(scene, rng)
        assert not fine_words & set(caption.replace(",", "").split()), caption
        assert 1 <= len(scene.objects) <= 4
    scene = S.Scene((S.Obj("small", "red", "circle", "left", "upper", 0.2, 0.2),
                     S.Obj("large", "red", "circle", "still", "lower", 0.7, 0.7),
                     S.Obj("small", "blue", "square", "up", "lower", 0.4, 0.7)), (120, 120, 120))
    assert S.scene_caption(scene) == "a blue square and two red circles"
    # a twin that differs only in size or position gets the same caption
    twin = S.Scene((S.Obj("large", "blue", "square", "down", "upper", 0.8, 0.3),
                    S.Obj("large", "red", "circle", "still", "upper", 0.1, 0.2),
                    S.Obj("small", "red", "circle", "left", "lower", 0.5, 0.8)), (90, 90, 90))
    assert S.scene_caption(twin) == S.scene_caption(scene)


def test_renderer_and_captions():
    rng = np.random.default_rng(0)
    scene = S.random_scene(rng)
    image = S.render(scene, 48, rng=rng)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(S.render(scene, 48), S.render(scene, 48))
    obj = S.Obj("small", "red", "circle", "left", "upper", 0.5, 0.2)
    assert S.describe(obj, S.ATTRIBUTES) == "a small red circle moving left in the upper half"
    assert S.describe(obj, ("colour", "shape")) == "a red circle"


def test_reuse_is_idempotent_and_repairs(bench):
    manifest = bench / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert S.generate(bench, seed=3, **TINY) == bench
    assert manifest.stat().st_mtime_ns == before
    (bench / "videos" / "syn00002.mp4").unlink()
    assert S.generate(bench, seed=3, **TINY) == bench
    assert (bench / "videos" / "syn00002.mp4").is_file()


def test_default_root_under_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))
    root = S.default_root(**{k: v for k, v in TINY.items() if k != "progress"})
    assert root.parent == tmp_path / "synthetic"
    assert root != S.default_root() and S.default_root() == S.default_root(seed=0)
    assert S.generate(**TINY) == root and (root / "manifest.json").is_file()


def test_crash_leaves_nothing_half_made(tmp_path, monkeypatch):
    calls = []

    def failing(path, frames, fps):
        calls.append(path)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        path.write_bytes(b"x")

    monkeypatch.setattr(S, "_write_video", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        S.generate(tmp_path / "d", seed=0, **TINY)
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        S.generate(tmp_path / "mine", **TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_presets_and_version():
    from r2bench.datasets.synthetic import presets as P
    assert set(P.SIZES) == set(P.PRESETS) == set(P.SIZE_NAMES) == {"small", "default", "large"}
    vals = [P.SIZES[s]["n_val"] for s in P.SIZE_NAMES]
    assert vals == sorted(vals) and len(set(vals)) == 3
    from r2bench.datasets.synthetic.tiny_clip import TINY_CLIP_VERSION
    assert P.benchmark_version() == f"synthetic-g{S.GENERATOR_VERSION}c{TINY_CLIP_VERSION}-default"
    assert P.benchmark_version("small").endswith("-small")
    with pytest.raises(ValueError, match="unknown benchmark size 'huge'"):
        P.benchmark_version("huge")
    for size in P.SIZE_NAMES:
        S._config(seed=0, write_fps=2, frame_size=64, **P.SIZES[size])        # valid generator arguments
        assert {"epochs", "batch_size", "lr"} <= set(P.PRESETS[size]["train"])
