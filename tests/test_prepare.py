"""datasets.prepare on a tiny video folder (synthetic videos, random-init tiny CLIP): resume after
an interruption, skipped videos reported, the cache a run reads, layouts, exit codes."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import r2bench.datasets.prepare as prep
from r2bench.datasets.registry import get_dataset
from r2bench.datasets.synthetic.generator import generate
from r2bench.datasets.vtg import feature_cache_for
from r2bench.methods.backbone import Backbone

LAYERS = [4, 5]   # the last two of R2Bench-Tiny's six blocks
ENCODE, DECODE = prep.encode_frames, prep._decode


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four 8-s synthetic videos, one annotation file naming them plus a missing and a broken one."""
    root = generate(tmp_path_factory.mktemp("bench") / "syn", n_train=4, n_val=0, n_test=0, duration=8,
                    progress=False)
    videos = root / "videos"
    (videos / "broken.mp4").write_bytes(b"this is not a video")
    lines = (root / "annotations" / "train.jsonl").read_text().splitlines()
    extra = []
    for i, vid in enumerate(("gone", "broken")):
        obj = json.loads(lines[0])
        extra.append(json.dumps({**obj, "qid": 1000 + i, "vid": vid}))
    ann = root / "annotations" / "with_missing.jsonl"
    ann.write_text("\n".join(lines + extra) + "\n")
    good = sorted({json.loads(line)["vid"] for line in lines})
    return SimpleNamespace(ann=ann, videos=videos, good=good)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return Backbone("R2Bench-Tiny", None)


def run(folder, backbone, cache, **kw):
    kw.setdefault("workers", 2)
    return prep.prepare("synthetic", folder.ann, folder.videos, backbone, backbone.taps(LAYERS), cache,
                        progress=False, **kw)


def counting(monkeypatch, fail_after: int | None = None) -> list:
    """Wrap encode_frames: count calls, raise KeyboardInterrupt on call ``fail_after + 1``."""
    calls = []

    def wrapped(*args, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt
        calls.append(args[1].shape[0])
        return ENCODE(*args, **kwargs)
    monkeypatch.setattr(prep, "encode_frames", wrapped)
    return calls


def test_interrupted_preparation_resumes_where_it_stopped(folder, backbone, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    counting(monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run(folder, backbone, cache)
    reports = list(cache.glob("*/prepare-synthetic-with_missing-2*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["status"] == "interrupted"
    first_report = reports[0].read_text()
    assert len(list(cache.glob("*/*.safetensors"))) == 2

    calls = counting(monkeypatch)
    report, path = run(folder, backbone, cache)
    assert len(calls) == 2 and calls == [4, 4]          # only the two videos not cached yet; 8 s at 0.5 fps
    assert (report.videos, report.already_cached, report.prepared) == (6, 2, 2)
    assert report.status == "incomplete" and path != reports[0]
    assert reports[0].read_text() == first_report          # a re-run never overwrites an earlier report
    summary = json.loads(next(cache.glob("*/prepare-synthetic-with_missing-summary.json")).read_text())
    assert [i["status"] for i in summary["invocations"]] == ["interrupted", "incomplete"]
    assert summary["cached"] == 4 and summary["prepared_in_all"] == 4 and summary["videos"] == 6
    assert {s["vid"] for s in summary["skipped_now"]} == {"gone", "broken"}
    skipped = {s["vid"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"gone", "broken"}
    assert "not found" in skipped["gone"] and "cannot decode" in skipped["broken"]
    assert json.loads(path.read_text())["skipped"] == report.skipped

    # the resumed cache holds what one uninterrupted run writes
    fresh, _ = run(folder, backbone, tmp_path / "fresh", workers=0)
    assert fresh.prepared == 4
    a = prep.FeatureCache(cache, report.key)
    b = prep.FeatureCache(tmp_path / "fresh", fresh.key)
    for vid in folder.good:
        torch.testing.assert_close(a.get(vid)["block"], b.get(vid)["block"], rtol=0, atol=0)
    assert a.get(folder.good[0])["block"].shape == (4, 2, 17, 128)     # (T, K, CLS + 4×4 patches, width)

    # nothing left to do; a truncated entry is noticed and rebuilt
    calls = counting(monkeypatch)
    assert run(folder, backbone, cache)[0].already_cached == 4 and calls == []
    entry = a.path_for(folder.good[1])
    entry.write_bytes(entry.read_bytes()[:-100])
    report, _ = run(folder, backbone, cache)
    assert calls == [4] and report.prepared == 1
    assert a.get(folder.good[1]) is not None


def crashing_decode(vid, path, fps, size):
    """Kills its decoding process on one video, as a decoder segfault would."""
    import os
    if vid == "syn00001":
        os._exit(1)
    return DECODE(vid, path, fps, size)


def test_a_decoder_crash_skips_that_video_only(folder, backbone, tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "_decode", crashing_decode)        # forked decoding processes inherit it
    report, _ = run(folder, backbone, tmp_path, workers=2)
    skipped = {s["vid"]: s["reason"] for s in report.skipped}
    assert skipped.keys() == {"gone", "broken", "syn00001"}
    assert skipped["syn00001"] == "the decoding process crashed on this video"
    assert report.prepared == 3


def test_a_run_reads_the_cache_that_prepare_fills(folder, backbone, tmp_path):
    report, _ = run(folder, backbone, tmp_path, workers=0)
    dataset = get_dataset("synthetic").bind({"train": folder.ann}, folder.videos)
    cache = feature_cache_for(dataset, SimpleNamespace(backbone=backbone, video_taps=backbone.taps(2)), tmp_path)
    assert cache.dir == Path(report.cache_dir)
    assert all(cache.get(v) is not None for v in folder.good)


def test_cls_pooled_layout(folder, backbone, tmp_path):
    full, _ = run(folder, backbone, tmp_path, workers=0)
    pooled, _ = run(folder, backbone, tmp_path, workers=0, layout="cls-pooled")
    assert pooled.key == {**full.key, "layout": "cls-pooled"} and pooled.cache_dir != full.cache_dir
    vid = folder.good[0]
    x = prep.FeatureCache(tmp_path, full.key).get(vid)["block"].float()
    y = prep.FeatureCache(tmp_path, pooled.key).get(vid)["block"].float()
    assert y.shape == (4, 2, 2, 128)
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])
    torch.testing.assert_close(y[:, :, 1], x[:, :, 1:].mean(dim=2), atol=2e-3, rtol=2e-3)   # fp16 on disk
    assert pooled.bytes_written < full.bytes_written / 4


def test_command_line_exit_codes(folder, tmp_path, capsys, caplog):
    base = ["--dataset", "synthetic", "--annotations", str(folder.ann), "--video-dir", str(folder.videos),
            "--backbone", "R2Bench-Tiny", "--k", "2", "--workers", "0", "--cache-dir", str(tmp_path), "--quiet"]
    assert prep.main(base + ["--random-init"]) == 1                   # two videos skipped
    assert "gone" in caplog.text and "broken" in caplog.text
    assert prep.main(base + ["--random-init", "--allow-missing"]) == 0
    assert prep.main(base) == 2 and "--weights" in caplog.text        # no weights, no --random-init
    assert prep.main(base + ["--weights", str(tmp_path / "none.pt")]) == 2
    assert prep.main(base + ["--random-init", "--layers", "9"]) == 2 and "block indices in 0..5" in caplog.text
    assert prep.main(base + ["--random-init", "--points", "ffn"]) == 2 and "tap points must be among" in caplog.text
    assert prep.main(base + ["--random-init", "--allow-missing", "--layers", "all", "--points", "block", "mlp"]) == 0
    (key,) = [json.loads(p.read_text()) for p in tmp_path.glob("*/key.json") if "mlp" in p.read_text()]
    assert key["taps"] == {"layers": [0, 1, 2, 3, 4, 5], "points": ["block", "mlp"]}
