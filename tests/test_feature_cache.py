"""FeatureCache: hits/misses, fp16 storage, key → directory, corruption detection, atomic writes."""
from __future__ import annotations

import json
import logging

import pytest
import torch

import r2bench.datasets.features.cache as fc
from r2bench.datasets.features.cache import FeatureCache

KEY = {"backbone": "ViT-B-32", "weights": "abc123", "fps": 0.5, "layers": [9, 10, 11], "size": 224}


def feats(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "video": torch.randn(4, 3, 5, 8, generator=g),
        "text": torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64),
        "text_mask": torch.rand(2, 7, generator=g) > 0.3,
        "ids": torch.arange(6),
    }


def test_miss_then_hit_with_stats(tmp_path):
    cache = FeatureCache(tmp_path, KEY)
    assert cache.get("vid1") is None
    cache.put("vid1", feats())
    got = cache.get("vid1")
    assert got is not None and set(got) == set(feats())
    assert (cache.stats.hits, cache.stats.misses, cache.stats.rebuilt) == (1, 1, 0)


def test_floats_stored_fp16_others_kept(tmp_path):
    cache = FeatureCache(tmp_path, KEY)
    src = feats()
    cache.put("v", src)
    got = cache.get("v")
    assert got["video"].dtype == torch.float16 and got["text"].dtype == torch.float16
    assert got["text_mask"].dtype == torch.bool and torch.equal(got["text_mask"], src["text_mask"])
    assert got["ids"].dtype == torch.int64 and torch.equal(got["ids"], src["ids"])
    torch.testing.assert_close(got["video"].float(), src["video"], atol=2e-3, rtol=1e-3)


def test_reuse_across_instances_with_same_key(tmp_path):
    FeatureCache(tmp_path, KEY).put("v", feats())
    reordered = dict(reversed(list(KEY.items())))
    again = FeatureCache(tmp_path, reordered)
    assert again.dir == FeatureCache(tmp_path, KEY).dir
    assert again.get("v") is not None and again.stats.hits == 1


def test_different_key_gives_different_dir(tmp_path):
    a = FeatureCache(tmp_path, KEY)
    b = FeatureCache(tmp_path, {**KEY, "fps": 1.0})
    assert a.dir != b.dir and a.dir.parent == b.dir.parent == tmp_path
    a.put("v", feats())
    assert b.get("v") is None
    assert json.loads((b.dir / "key.json").read_text()) == {**KEY, "fps": 1.0}


def test_key_json_with_other_key_is_refused(tmp_path):
    cache = FeatureCache(tmp_path, KEY)
    (cache.dir / "key.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(RuntimeError, match="different key"):
        FeatureCache(tmp_path, KEY)


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip_last(data: bytes) -> bytes:  # last byte lies in the tensor data
    return data[:-1] + bytes([data[-1] ^ 0x01])


def _flip_header(data: bytes) -> bytes:  # inside the JSON header
    return data[:20] + bytes([data[20] ^ 0x55]) + data[21:]


@pytest.mark.parametrize("damage", [_truncate, _flip_last, _flip_header, lambda d: b""])
def test_corrupt_entry_detected_deleted_and_rebuilt(tmp_path, caplog, damage):
    cache = FeatureCache(tmp_path, KEY)
    cache.put("v", feats())
    path = cache.path_for("v")
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="r2bench.datasets.features.cache"):
        assert cache.get("v") is None
    assert cache.stats.rebuilt == 1 and not path.exists()
    assert str(path) in caplog.text
    calls = []
    got = cache.get_or_compute("v", lambda: calls.append(1) or feats())
    assert calls == [1] and got["video"].dtype == torch.float16
    assert cache.get("v") is not None and cache.stats.rebuilt == 1


def test_entry_of_another_video_is_rejected(tmp_path):
    cache = FeatureCache(tmp_path, KEY)
    cache.put("a", feats())
    cache.path_for("b").write_bytes(cache.path_for("a").read_bytes())
    assert cache.get("b") is None and cache.stats.rebuilt == 1


def test_get_or_compute_computes_once(tmp_path):
    cache = FeatureCache(tmp_path, KEY)
    calls = []

    def compute():
        calls.append(1)
        return feats()

    first = cache.get_or_compute("v", compute)
    second = cache.get_or_compute("v", compute)
    assert calls == [1]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_atomic_write_leaves_no_temp_files(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, KEY)
    for i in range(3):
        cache.put(f"v{i}", feats(i))
    names = sorted(p.name for p in cache.dir.iterdir())
    assert names == ["key.json", "v0.safetensors", "v1.safetensors", "v2.safetensors"]

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fc.os, "replace", failing_replace)
    with pytest.raises(OSError):
        cache.put("v0", feats(9))
    assert sorted(p.name for p in cache.dir.iterdir()) == names
    monkeypatch.undo()
    assert torch.equal(cache.get("v0")["ids"], feats(0)["ids"])


def test_video_ids_are_sanitised_without_collisions(tmp_path):
    cache = FeatureCache(tmp_path, KEY)
    vids = ["a/b c", "a_b_c", "../escape", "x" * 300, "-dash"]
    for i, vid in enumerate(vids):
        cache.put(vid, feats(i))
    files = [p for p in cache.dir.iterdir() if p.suffix == ".safetensors"]
    assert len(files) == len(vids) and all(p.parent == cache.dir for p in files)
    assert all(len(p.name) < 120 for p in files)
    for i, vid in enumerate(vids):
        assert torch.equal(cache.get(vid)["ids"], feats(i)["ids"])
