"""Every figure renders from a small fixture (ledger, checkpoint, two tiny videos) with the expected
axes, lines and labels; the pooling attention and layer similarity on known answers."""
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from r2bench.reports import records as rec
from r2bench.reports.figures import fig7, fig8, fig9, qualitative, tradeoff
from r2bench.reports.figures.sources import FigureSkipped, Sources
from r2bench.bench.suites import get_suite
from r2bench.bench.suites.ablations import KS, STRATEGIES, fig7_row
from r2bench.reports.tables import common
from tests.reports_fixtures import SuiteDir, vectors

FPS = 0.5


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    monkeypatch.setattr(common, "N_RESAMPLES", 1000)


def _write_video(path: Path, colour, seconds: int = 16, write_fps: int = 2, size: int = 64):
    import imageio_ffmpeg
    frames = np.full((seconds * write_fps, size, size, 3), 110, dtype=np.uint8)
    for i, frame in enumerate(frames):
        x = 4 + (i * 2) % (size - 20)
        frame[20:36, x:x + 16] = colour
    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=write_fps, codec="libx264", pix_fmt_in="rgb24",
                                         pix_fmt_out="yuv420p", macro_block_size=16, ffmpeg_log_level="error",
                                         output_params=["-crf", "16", "-preset", "veryfast", "-threads", "1"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained-run folder: R²-Tuning (K = 2, random tiny CLIP) with checkpoint, predictions and
    per-query values, on a two-video dataset with two queries on the first video."""
    from r2bench.datasets.registry import DatasetSpec, Preset
    from r2bench.methods.backbone import Backbone
    from r2bench.methods.registry import build_model, get_method
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("figrun")
    (root / "videos").mkdir()
    _write_video(root / "videos" / "v0.mp4", (220, 40, 40))
    _write_video(root / "videos" / "v1.mp4", (40, 40, 220))
    anns = [dict(qid=0, vid="v0", query="a red square moving right", duration=16, relevant_windows=[[4, 10]],
                 relevant_clip_ids=[2, 3, 4], saliency_scores=[[2, 3, 4], [4, 4, 3], [1, 2, 2]]),
            dict(qid=1, vid="v0", query="the grey background", duration=16, relevant_windows=[[0, 6]],
                 relevant_clip_ids=[0, 1, 2], saliency_scores=[[1, 1, 2], [2, 2, 2], [3, 2, 1]]),
            dict(qid=2, vid="v1", query="a blue square", duration=16, relevant_windows=[[8, 14]],
                 relevant_clip_ids=[4, 5, 6], saliency_scores=[[4, 4, 4], [3, 3, 4], [2, 2, 2]])]
    (root / "val.jsonl").write_text("".join(json.dumps(a) + "\n" for a in anns))
    spec = DatasetSpec(name="synthetic", title="Synthetic", format="qvhighlights", metric="qvhighlights",
                       tasks={"mr", "hd"}, fps=FPS, clip_seconds=2.0, annotation_files={"val": "val.jsonl"},
                       eval_split="val", train_split="val", preset=Preset(train={}, head={})).bind(root, root / "videos")

    suite_dir = root / "suite"
    run_id = "table5-r2_tuning-synthetic-s0-fixture"
    run_dir = suite_dir / "runs" / run_id
    run_dir.mkdir(parents=True)
    torch.manual_seed(0)
    cfg = get_method("r2_tuning").make_config({"k": 2, "dropout": 0.0})
    model = build_model("r2_tuning", Backbone("R2Bench-Tiny"), dataclasses.asdict(cfg))
    save_file({k: v.contiguous() for k, v in model.learnable_state_dict().items()}, run_dir / "checkpoint.safetensors")
    preds = [dict(qid=a["qid"], query=a["query"], vid=a["vid"], pred_relevant_windows=[[4, 10, 0.9], [0, 16, 0.3]],
                  pred_saliency_scores=[0.1 * i for i in range(8)]) for a in anns]
    (run_dir / "val_preds.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    pd.DataFrame({"qid": [0, 1, 2], "MR-full-mAP": [90.0, 10.0, 50.0]}).to_csv(run_dir / "per_query.csv", index=False)
    record = dict(run_id=run_id, suite="table5", row="L_video + L_layer", method="r2_tuning", status="ok",
                  dataset="synthetic", dataset_version=spec.version, seed=0, backbone="R2Bench-Tiny",
                  weights="random-init", config=dataclasses.asdict(cfg), predictions=f"runs/{run_id}/val_preds.jsonl",
                  per_query=f"runs/{run_id}/per_query.csv", _suite_dir=str(suite_dir))
    return SimpleNamespace(record=record, sources=Sources(specs={"synthetic": spec}), model=model, root=root)


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


# ---------------------------------------------------------------- fig8: pooling attention

def test_attention_maps_are_distributions_over_the_patch_grid(run):
    from r2bench.reports.figures import runs
    model = runs.load_model(run.record, run.sources)
    samples = fig8.pick_video(runs.samples_by_qid(run.record, run.sources))
    assert [s.qid for s in samples] == [0, 1]                    # the video with two queries
    maps = fig8.attention_maps(model, runs.batch(model, run.record, run.sources, samples))
    assert len(maps) == 2 and maps[0].shape == (2, 8, 16)        # K steps; 2 queries, 8 clips, 4×4 patches
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 8), atol=1e-5)
    assert not torch.allclose(maps[0][0], maps[0][1])            # another query, another map


def test_attention_is_uniform_when_the_query_projection_is_zero(run):
    from r2bench.reports.figures import runs
    model = runs.load_model(run.record, run.sources)
    with torch.no_grad():
        model.head.blocks[0].w_q.weight.zero_()
        model.head.blocks[0].w_q.bias.zero_()
    samples = fig8.pick_video(runs.samples_by_qid(run.record, run.sources))
    maps = fig8.attention_maps(model, runs.batch(model, run.record, run.sources, samples))
    assert torch.allclose(maps[1], torch.full_like(maps[1], 1 / 16), atol=1e-6)


def test_fig8_rows_are_query_by_layer_and_columns_frames(run, tmp_path):
    fig = fig8.figure(run.record, run.sources)
    assert len(fig.axes) == 2 * 2 * 4
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["Q1 · layer 6", "Q1 · layer 5", "Q2 · layer 6", "Q2 · layer 5"]   # reversed: last layer first
    assert all(ax.get_title().startswith("t = ") for ax in fig.axes[:4])
    assert '"a red square moving right"' in fig._suptitle.get_text()
    paths = fig8.render(run.record, tmp_path, run.sources)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"%PDF"


def test_fig8_without_checkpoint_is_skipped_with_the_reason(run):
    record = {**run.record, "run_id": "no-such-run"}
    with pytest.raises(FigureSkipped, match="has no checkpoint"):
        fig8.figure(record, run.sources)


def test_weights_that_do_not_match_the_record_are_not_used(run, tmp_path):
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not these weights")
    with pytest.raises(FigureSkipped, match="weights tiny.safetensors#00aa not found"):
        fig8.figure({**run.record, "weights": "tiny.safetensors#00aa"}, Sources(weights=(str(other),),
                                                                                specs=run.sources.specs))


# ---------------------------------------------------------------- fig9: layer similarity

def test_layer_similarity_on_a_known_answer():
    e = torch.eye(3)
    out = SimpleNamespace(layer_cls=[e[0].expand(1, 4, 3), e[1].expand(1, 4, 3)], layer_queries=[e[0][None], e[1][None]])
    model = lambda batch: out
    batch = dict(saliency=torch.tensor([[0.0, 1.0, 1.0, 0.0]]), video_mask=torch.ones(1, 4, dtype=torch.bool))
    assert np.allclose(fig9.layer_similarity(model, [batch]), np.eye(2))


def test_fig9_matrix_from_a_run_and_panels(run, tmp_path):
    matrix, layers = fig9.similarity_for(run.record, run.sources)
    assert matrix.shape == (2, 2) and layers == ["5", "6"] and np.all(np.abs(matrix) <= 1 + 1e-6)
    fig = fig9.figure([("w/o L_video, w/o L_layer", matrix, layers), ("L_video + L_layer", matrix, layers)])
    heatmaps = fig.axes[:2]
    assert [ax.get_title() for ax in heatmaps] == ["(a) w/o L_video, w/o L_layer", "(b) L_video + L_layer"]
    assert heatmaps[0].get_xlabel() == "video layer" and heatmaps[0].get_ylabel() == "text layer"
    assert [t.get_text() for t in heatmaps[0].get_xticklabels()] == ["5", "6"]
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "cosine similarity"   # one shared colour bar
    assert len(fig9.render([("a", run.record)], tmp_path, run.sources)) == 2


def test_fig9_skips_runs_without_layers(run):
    with pytest.raises(FigureSkipped, match="one feature per query"):
        fig9.similarity_for({**run.record, "config": {**run.record["config"], "layer_mode": "mean"}}, run.sources)


# ---------------------------------------------------------------- qualitative

def test_qualitative_picks_best_and_worst_queries(run, tmp_path):
    from r2bench.reports.figures import runs
    chosen = qualitative.select(run.record, runs.samples_by_qid(run.record, run.sources), n_best=1, n_worst=1)
    assert chosen == [("0", "success", 90.0, "MR AP"), ("1", "failure", 10.0, "MR AP")]
    out = qualitative.render(run.record, tmp_path, run.sources)
    assert [c.split(":")[0] for c, _ in out] == ["success", "success", "failure"]
    assert all(p.is_file() for _, paths in out for p in paths)


def test_qualitative_figure_has_frames_windows_and_saliency(run):
    from r2bench.reports.figures import runs
    sample = runs.samples_by_qid(run.record, run.sources)["0"]
    frames = runs.display_frames(run.record, run.sources, "v0", size=32)
    pred = rec.predictions(run.record)[0]
    fig = qualitative.figure(sample, pred, frames, FPS, "success", 90.0, "MR AP", row="R2")
    strip = [ax for ax in fig.axes if ax.get_title().endswith(" s")]
    assert len(strip) == 8 and "7 s" in [ax.get_title() for ax in strip]     # the window's centre frame is shown
    assert any(ax.get_ylabel() == "annotator score" for ax in fig.axes)
    assert any(ax.get_ylabel() == "predicted saliency" for ax in fig.axes)
    assert 'success (MR AP 90.0), qid 0: "a red square moving right"' in fig._suptitle.get_text()
    assert qualitative.strip_frames(30, 0.5, [(10, 16)]) == [0, 5, 6, 10, 14, 19, 24, 29]   # 6: the window centre


def test_top1_iou():
    assert qualitative.top1_iou([[0, 10, 1.0]], [(5, 15)]) == pytest.approx(5 / 15)
    assert qualitative.top1_iou([], [(0, 1)]) == 0.0


# ---------------------------------------------------------------- trade-off

def test_tradeoff_bubbles_area_colour_and_labels(tmp_path):
    s = SuiteDir(tmp_path / "t9", "table9")
    s.add("w/o Tuning", "frozen", values=vectors(12), category="no-tuning", memory_gib=4.0, params_M=2.7)
    s.add("R²-Tuning", "r2_tuning", values=vectors(12, shift=3), memory_gib=9.0, params_M=2.7)
    s.add("Full-Tuning", "full", values=vectors(12), category="full", memory_gib=55.0, params_M=147.0)
    records = rec.load_records(s.root)
    panels = tradeoff.panels_for(records, get_suite("table9").layout(), with_paper=True)
    assert [len(p) for _, p in panels] == [10, 3]
    fig = tradeoff.figure(panels)
    paper_ax, ours_ax = fig.axes
    assert ours_ax.get_xlabel().startswith("peak training memory (GiB)") and ours_ax.get_ylabel() == "MR mAP"
    assert sorted(t.get_text() for t in ours_ax.texts) == ["Full-Tuning", "R²-Tuning", "w/o Tuning"]
    assert len(paper_ax.texts) == 10
    from matplotlib.collections import PathCollection
    sizes = {tuple(c.get_facecolor()[0][:3]): c.get_sizes() for c in ours_ax.collections
             if isinstance(c, PathCollection)}
    assert len(sizes) == 2                                                     # METL vs PETL colours
    petl, metl = sorted(sizes.values(), key=lambda v: v.max(), reverse=True)
    assert petl.max() / metl.max() == pytest.approx(147.0 / 2.7)              # area ∝ parameters
    ours = panels[1][1].set_index("name")
    assert ours.loc["R²-Tuning", "low"] < ours.loc["R²-Tuning", "map"] < ours.loc["R²-Tuning", "high"]
    assert len(tradeoff.render(records, get_suite("table9").layout(), tmp_path, with_paper=True)) == 2


def test_tradeoff_of_a_paper_scale_ledger_uses_the_papers_map(tmp_path):
    s = SuiteDir(tmp_path / "ps", "table9")
    s.add("R²-Tuning", "r2_tuning", dataset="paper-scale", weights="random-init", memory_gib=8.3)
    panels = tradeoff.panels_for(rec.load_records(s.root), get_suite("table9").layout())
    title, points = panels[0]
    assert "the paper's MR mAP" in title and points.loc[0, "map"] == 47.59 and points.loc[0, "memory"] == 8.3


# ---------------------------------------------------------------- fig7

def test_fig7_one_line_per_strategy_from_k1_to_k4(tmp_path):
    s = SuiteDir(tmp_path / "fig7", "fig7")
    s.add("K=1 (all strategies)", values=vectors(16), config={"k": 1})
    for i, strategy in enumerate(STRATEGIES):
        for k in (2, 3, 4):
            cfg = {"k": k, **{"Single": {"layer_mode": "single"}, "Mean": {"layer_mode": "mean"},
                              "Forward": {"reverse": False}, "Reversed": {}}[strategy]}
            s.add(f"{strategy} K={k}", values=vectors(16, shift=i + k, seed=k), config=cfg)
    data = fig7.points(rec.load_records(s.root), get_suite("fig7").layout(), tuple(STRATEGIES), KS, fig7_row)
    assert len(data) == 16 and set(data["strategy"]) == set(STRATEGIES)
    k1 = data[data["k"] == 1]["mean"]
    assert k1.nunique() == 1                                   # every line starts at the one K = 1 run
    fig = fig7.figure(data)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "K (last layers used)" and ax.get_ylabel() == "MR mAP"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(STRATEGIES)
    assert len(ax.containers) == 4                             # one errorbar container per strategy
    for container, strategy in zip(ax.containers, STRATEGIES):
        x, y = container.lines[0].get_data()
        assert np.round(x).tolist() == [1, 2, 3, 4]
        expected = data[data["strategy"] == strategy].sort_values("k")["mean"].to_numpy()
        assert np.allclose(y, expected)
    assert "bootstrap" in ax.get_title()
    assert len(fig7.render(rec.load_records(s.root), tmp_path, get_suite("fig7").layout(), tuple(STRATEGIES), KS,
                           fig7_row)) == 2


def test_fig7_without_metrics_is_skipped():
    with pytest.raises(FigureSkipped, match="no fig7 run"):
        fig7.figure(fig7.points([], get_suite("fig7").layout(), tuple(STRATEGIES), KS, fig7_row))
    assert get_suite("fig7").reference == "Reversed K=4" and get_suite("table5").reference == "L_video + L_layer"


def test_tradeoff_is_skipped_when_no_row_differs_in_memory_or_size(tmp_path):
    s = SuiteDir(tmp_path / "t10", "table10")
    s.add("self→cross", values=vectors(12))
    s.add("cross→self", values=vectors(12, shift=1))
    with pytest.raises(FigureSkipped, match="nothing to trade off"):
        tradeoff.panels_for(rec.load_records(s.root), get_suite("table10").layout())
