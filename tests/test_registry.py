"""datasets.registry: the specs and their Table 8 presets, overrides, binding to files and videos,
adding a dataset without touching the harness, and ``python -m datasets``."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from r2bench.bench.train import TrainConfig
from r2bench.datasets.__main__ import main as summary_main
from r2bench.core.errors import InputError
from r2bench.core.io import REPO_ROOT
from r2bench.datasets.registry import (DATASETS, TRAIN_KEYS, DatasetSpec, Preset, get_dataset, parse_overrides,
                               register_dataset, synthetic_dataset)
from r2bench.methods.head.config import HeadConfig

FIXTURES = Path(__file__).parent / "fixtures"


def test_registered_datasets_and_unknown_name():
    assert set(DATASETS) == {"qvhighlights", "charades_sta", "tacos", "ego4d_nlq", "youtube_highlights", "tvsum",
                             "synthetic", "synthetic_mr", "synthetic_hd_binary", "synthetic_hd_graded"}
    with pytest.raises(KeyError, match="unknown dataset 'qvh'; known: charades_sta, ego4d_nlq, qvhighlights"):
        get_dataset("qvh")


# (fps, batch, lr, epochs, warm-up, LR drop, dropout, saliency weight, NMS): ../shared/spec/R2_TUNING.md, Table 8
TABLE8 = {
    "qvhighlights": (0.5, 128, 5e-4, 30, 500, 20, 0.5, 0.1, "hard"),
    "ego4d_nlq": (0.5, 32, 2.5e-4, 30, 500, 20, 0.3, 0.1, "linear"),
    "charades_sta": (1.0, 32, 2.5e-4, 50, 500, 30, 0.35, 0.01, "linear"),
    "tacos": (0.5, 32, 2.5e-4, 100, 500, 50, 0.5, 0.05, "linear"),
    "youtube_highlights": (None, 4, 5e-4, 200, 50, None, 0.5, 0.1, "none"),
    "tvsum": (0.5, 4, 5e-4, 500, 50, None, 0.5, 0.1, "none"),
}


@pytest.mark.parametrize("name", sorted(TABLE8))
def test_presets_are_table_8(name):
    spec = get_dataset(name)
    t, h = spec.preset.train, spec.preset.head
    got = (spec.fps, t["batch_size"], t["lr"], t["epochs"], t["warmup_iters"], t["lr_drop_epoch"], h["dropout"],
           h["saliency_weight"], h["nms"])
    assert got == TABLE8[name]
    grounding = "mr" in spec.tasks
    assert h["strides"] == ((1, 2, 4, 8) if grounding else (1,)) and h["use_tef"] is grounding
    assert t.get("repeat", 1) == (4 if name == "qvhighlights" else 1)     # the public QVHighlights RepeatDataset
    assert spec.per_domain is (not grounding) and len(spec.domains) == {"youtube_highlights": 6, "tvsum": 10}.get(name, 0)


def test_presets_fit_train_and_head_configs():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields == set(TRAIN_KEYS)
    for spec in DATASETS.values():
        assert set(spec.preset.train) <= set(TRAIN_KEYS)
        HeadConfig(**spec.preset.head)
        assert spec.metric and spec.format and spec.tasks <= {"mr", "hd"}


def test_parse_overrides_values_and_errors():
    assert parse_overrides(["train.lr=1e-4", "head.dropout=0.3", "head.strides=1,2", "head.nms=linear",
                            "train.lr_drop_epoch=none", "train.amp=false", "head.use_tef=False"]) == {
        "train": {"lr": 1e-4, "lr_drop_epoch": None, "amp": False},
        "head": {"dropout": 0.3, "strides": (1, 2), "nms": "linear", "use_tef": False}}
    cases = [
        (["train.lrr=1"], "train.lrr", "unknown train setting (did you mean 'train.lr'?); known: accumulate, amp, batch_size"),
        (["head.dropot=0.1"], "head.dropot", "did you mean 'head.dropout'?"),
        (["model.k=2"], "model.k", "unknown section 'model': expected 'train' or 'head'"),
        (["lr=1e-4"], "lr", "expected SECTION.KEY=VALUE"),
        (["train.lr"], "train.lr", "expected SECTION.KEY=VALUE"),
        (["train.epochs=1.5"], "train.epochs", "expected int, found 1.5"),
        (["train.amp=1"], "train.amp", "expected bool, found 1"),
        (["train.lr_drop_epoch=soon"], "train.lr_drop_epoch", "expected int or null, found 'soon'"),
    ]
    for items, field, message in cases:
        with pytest.raises(InputError) as exc:
            parse_overrides(items)
        assert exc.value.field == field and message in str(exc.value), str(exc.value)
    # callers may declare their own train keys
    assert parse_overrides(["train.accumulate=2"], train_keys=["accumulate"]) == {"train": {"accumulate": 2}, "head": {}}


def test_with_overrides_is_a_new_spec_and_checks_the_head():
    spec = get_dataset("charades_sta")
    changed = spec.with_overrides(["train.lr=1e-4", "head.dropout=0.2"])
    assert changed.preset.train["lr"] == 1e-4 and changed.preset.head["dropout"] == 0.2
    assert changed.preset.train["epochs"] == 50 and changed.preset.head["nms"] == "linear"
    assert spec.preset.train["lr"] == 2.5e-4 and get_dataset("charades_sta") is spec
    with pytest.raises(InputError, match=r"field 'head': nms must be one of"):
        spec.with_overrides(["head.nms=soft"])
    with pytest.raises(TypeError):
        spec.preset.train["lr"] = 1.0                    # presets are read-only


def test_bind_folder_mapping_and_missing_files(tmp_path):
    spec = get_dataset("tacos")
    (tmp_path / "ann").mkdir()
    data = spec.bind(tmp_path / "ann", tmp_path)
    assert data.annotation_file("test") == tmp_path / "ann" / "tacos_test_release.jsonl"
    with pytest.raises(InputError) as exc:
        data.check()
    assert "tacos_train_release.jsonl" in str(exc.value) and "pass --annotations" in str(exc.value)
    data = spec.bind({"test": FIXTURES / "tacos_test_excerpt.jsonl"}, tmp_path)
    assert len(data.samples("test")) == 10 and data.check(["test"]) is data
    with pytest.raises(InputError, match="field 'split': dataset 'tacos' has no split 'dev'"):
        data.samples("dev")
    with pytest.raises(InputError, match="found a file"):
        spec.bind(FIXTURES / "tacos_test_excerpt.jsonl")
    with pytest.raises(InputError, match="annotation folder not found"):
        spec.bind(tmp_path / "nowhere")
    with pytest.raises(InputError, match="field 'video_dir': TACoS video folder not found"):
        spec.bind({"test": FIXTURES / "tacos_test_excerpt.jsonl"}, tmp_path / "novideos").check(["test"])


def test_video_path_extensions_naming_and_escapes(tmp_path):
    (tmp_path / "s30-d52-cam-002.avi").write_bytes(b"x")
    (tmp_path / "clip.mkv").write_bytes(b"x")
    assert get_dataset("tacos").bind(video_dir=tmp_path).video_path("s30-d52") == tmp_path / "s30-d52-cam-002.avi"
    data = get_dataset("charades_sta").bind(video_dir=tmp_path)
    assert data.video_path("clip") == tmp_path / "clip.mkv"
    with pytest.raises(InputError) as exc:
        data.video_path("nope")
    assert str(tmp_path / "nope.mp4") in str(exc.value) and "field 'vid'" in str(exc.value)
    assert "tried .mp4, .mkv, .avi" in str(exc.value)
    for bad in ("/etc/passwd", "../clip", "a/../../clip", ""):
        with pytest.raises(InputError) as exc:
            data.video_path(bad)
        assert exc.value.field == "vid" and "inside the video folder" in str(exc.value), bad
    with pytest.raises(InputError, match="field 'video_dir'"):
        get_dataset("charades_sta").bind().video_path("clip")


def test_frame_rate_per_video_for_youtube():
    data = get_dataset("youtube_highlights").bind({"val": FIXTURES / "youtube_highlights_val_excerpt.jsonl"})
    s = data.samples("val")[0]
    assert data.fps is None and data.frame_rate(s.vid) == pytest.approx(s.num_clips / s.duration)
    with pytest.raises(InputError, match="per-video frame rate is unknown"):
        data.frame_rate("not-a-video")
    assert get_dataset("tvsum").bind().frame_rate("anything") == 0.5


def test_adding_a_dataset_is_one_spec(tmp_path):
    (tmp_path / "mine_val.jsonl").write_text((FIXTURES / "charades_sta_test_excerpt.jsonl").read_text())
    spec = DatasetSpec(name="my_grounding", title="Mine", format="grounding", metric="grounding", tasks={"mr"},
                       fps=1.0, clip_seconds=1.0, annotation_files={"train": "mine_val.jsonl", "val": "mine_val.jsonl"},
                       annotation_dir=tmp_path, preset=Preset(train=dict(lr=1e-4), head=dict(nms="linear")))
    register_dataset(spec)
    try:
        data = get_dataset("my_grounding").bind()
        assert len(data.samples("val")) == 12 and data.check(videos=False) is data
        with pytest.raises(ValueError, match="registered twice"):
            register_dataset(spec)
    finally:
        DATASETS.pop("my_grounding")
    with pytest.raises(ValueError, match="split 'val' has no annotation file"):
        DatasetSpec(name="x", title="X", format="grounding", metric="grounding", tasks={"mr"}, fps=1, clip_seconds=1,
                    annotation_files={"train": "a.jsonl"})
    bad_head = DatasetSpec(name="x", title="X", format="grounding", metric="grounding", tasks={"mr"}, fps=1,
                           clip_seconds=1, annotation_files={"train": "a", "val": "b"},
                           preset=Preset(head=dict(nms="soft")))
    with pytest.raises(InputError, match="nms must be one of"):
        bad_head.with_overrides([])


def test_synthetic_is_generated_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))
    data = synthetic_dataset(n_train=2, n_val=1, n_test=1, duration=8, progress=False)
    assert data.name == "synthetic" and data.spec.metric == "qvhighlights"
    samples = data.samples("val")
    assert samples and data.video_path(samples[0].vid).is_file()
    assert data.video_dir.parent.parent == tmp_path / "synthetic"


# --------------------------------------------------------------------------- python -m datasets

def test_summary_of_a_test_split_says_what_is_missing(capsys):
    assert summary_main(["--dataset", "qvhighlights", str(FIXTURES / "qvhighlights_test_excerpt.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["num_queries"], out["num_videos"]) == (8, 8)
    assert out["missing"] == {"relevant_windows (moment retrieval)": 8, "saliency labels (highlight detection)": 8}
    assert out["evaluable"] is False and out["duration_s"]["max"] == 150.0


def test_summary_of_labelled_files(capsys, tmp_path):
    assert summary_main(["--dataset", "charades_sta", str(FIXTURES / "charades_sta_test_excerpt.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["num_queries"], out["num_videos"], out["missing"], out["evaluable"]) == (12, 6, {}, True)
    assert out["windows_per_query"] == {"min": 1.0, "median": 1.0, "mean": 1.0, "max": 1.0}
    assert out["clamped_window_ends"] == 0
    assert summary_main(["--dataset", "tvsum", str(FIXTURES / "tvsum_val_excerpt.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["annotators"] == [20] and out["domains"] == {"VU": 1, "BK": 1, "BT": 1}
    assert out["clips_per_video"]["max"] == 74 and out["duration_s"]["max"] == 148.0
    clamp = tmp_path / "c.jsonl"
    clamp.write_text(json.dumps({"qid": 1, "vid": "v", "query": "q", "duration": 10, "relevant_windows": [[2, 10.5]]}))
    assert summary_main(["--dataset", "charades_sta", str(clamp)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["clamped_window_ends"] == 1 and "clamped 1 ground-truth" in captured.err


def test_summary_cli_runs_as_a_module_and_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": 1, "vid": "v", "query": "q", "duration": 10, "relevant_windows": [[5, 2]]}\n')
    proc = subprocess.run([sys.executable, "-m", "r2bench.datasets", "--dataset", "tacos", str(bad)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{bad}:1: field 'relevant_windows[0]': expected start < end" in proc.stderr


def test_run_all_takes_datasets_and_preset_overrides_from_the_registry(tmp_path, caplog):
    from r2bench import cli
    from r2bench.bench import orchestrate
    assert set(cli.parse_run_args([]).__dict__) >= {"dataset", "set"}
    assert cli.run_main(["--dataset", "tvsum", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--dataset tvsum needs --video-dir" in caplog.text
    assert cli.run_main(["--set", "train.lrr=1", "--out", str(tmp_path), "--quiet"]) == 2
    assert "did you mean 'train.lr'?" in caplog.text
    assert not (tmp_path / "table9").exists()
