"""End to end on a small synthetic benchmark: train + evaluate beats trivial baselines, runs
repeat exactly, checkpoints are safetensors, a suite records failures, resumes after a crash."""
import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from r2bench import cli

from r2bench.bench import orchestrate
from r2bench.bench.ledger import Ledger
from r2bench.bench.metrics.qvhighlights import evaluate_qvhighlights
from r2bench.bench.run import RunContext, RunSpec, execute
from r2bench.datasets import vtg
from r2bench.core.errors import InputError
from r2bench.datasets.registry import synthetic_dataset
from r2bench.datasets.synthetic.tiny_clip import pretrain

SIZES = dict(n_train=48, n_val=24, n_test=4, duration=40)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A small synthetic benchmark and a briefly pretrained tiny CLIP, in a private cache."""
    root = tmp_path_factory.mktemp("r2bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("R2BENCH_CACHE", str(root))
        spec = synthetic_dataset(**SIZES)
        weights, _ = pretrain(seed=0, steps=60, out=root / "tiny.safetensors", progress=False)
        yield dict(root=root, spec=spec, weights=str(weights))


def context(env, name, **kw):
    kw.setdefault("train_overrides", dict(epochs=10, batch_size=8, warmup_iters=10, lr_drop_epoch=8))
    return RunContext(name, env["spec"], "R2Bench-Tiny", env["weights"], torch.device("cpu"),
                      env["root"] / "out" / name, progress=False, **kw)


def trivial_submissions(samples):
    """Whole-video windows, and random windows (seeded), in the submission format."""
    rng = random.Random(0)
    whole, rand = [], []
    for s in samples:
        base = dict(qid=s.qid, query=s.query, vid=s.vid, pred_saliency_scores=[0.0] * int(s.duration / 2))
        whole.append(dict(base, pred_relevant_windows=[[0.0, s.duration, 1.0]]))
        wins = []
        for _ in range(10):
            a, b = sorted(rng.uniform(0, s.duration) for _ in range(2))
            wins.append([a, b, rng.random()])
        rand.append(dict(base, pred_relevant_windows=sorted(wins, key=lambda w: -w[2])))
    return whole, rand


@pytest.fixture(scope="module")
def r2_run(env):
    return execute(RunSpec("r2_tuning"), context(env, "e2e"), "e2e-r2")


def test_training_beats_trivial_baselines(env, r2_run):
    samples = env["spec"].samples("val")
    gt = [s.raw for s in samples]
    whole, rand = (evaluate_qvhighlights(sub, gt)["brief"]["MR-full-mAP"] for sub in trivial_submissions(samples))
    ours = r2_run["metrics"]["MR-full-mAP"]
    assert ours > max(whole, rand) + 5, (ours, whole, rand)


def test_run_record_has_the_measurements(r2_run):
    assert r2_run["status"] == "ok" and r2_run["params"] == 2_836_242 and r2_run["params_M"] == 2.705
    assert r2_run["memory_source"] == "estimate" and 5 < r2_run["memory_gib"] < 15
    assert r2_run["train_videos_per_s"] > 0 and r2_run["infer_videos_per_s"] > 0 and r2_run["wall_s"] > 0
    assert r2_run["weights"].startswith("tiny.safetensors#")
    assert r2_run["benchmark_version"].startswith("synthetic-g") and r2_run["benchmark_version"].endswith("-default")
    per_query = pd.read_csv(r2_run["per_query"], index_col="qid")       # one row per val query, brief columns
    assert list(per_query.columns) == list(r2_run["metrics"]) and len(per_query) == r2_run["n_eval"]
    assert per_query["MR-full-mAP"].mean() == pytest.approx(r2_run["metrics"]["MR-full-mAP"], abs=0.006)
    lines = Path(r2_run["predictions"]).read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"}


def test_checkpoint_holds_the_learnable_parameters(env, r2_run):
    tensors = load_file(str(env["root"] / "out" / "e2e" / "runs" / "e2e-r2" / "checkpoint.safetensors"))
    assert sum(t.numel() for t in tensors.values()) == r2_run["params_run"]
    assert all(name.startswith("head.") for name in tensors)


def test_same_seed_same_numbers_on_cpu(env):
    quick = dict(epochs=1, batch_size=8, warmup_iters=2, lr_drop_epoch=None)
    a = execute(RunSpec("frozen"), context(env, "det-a", train_overrides=quick), "det")
    b = execute(RunSpec("frozen"), context(env, "det-b", train_overrides=quick), "det")
    assert a["final_losses"] == b["final_losses"]
    assert Path(a["predictions"]).read_text() == Path(b["predictions"]).read_text()


def test_missing_video_names_file_and_field(env):
    with pytest.raises(InputError, match=r"nope\.mp4.*field 'vid'"):
        env["spec"].video_path("nope")


def _bad_dataset(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    good = json.dumps(dict(qid=1, query="a red circle", duration=20, vid="v1", relevant_windows=[[2, 6]],
                           relevant_clip_ids=[1, 2], saliency_scores=[[2, 2, 2], [3, 3, 3]]))
    (ann / "highlight_train_release.jsonl").write_text(good + "\n" + "{not json\n")
    (ann / "highlight_val_release.jsonl").write_text(good + "\n")
    (tmp_path / "videos").mkdir()
    return ann, tmp_path / "videos"


def test_a_bad_annotation_line_is_refused_before_any_run_naming_file_and_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path / "cache"))
    ann, videos = _bad_dataset(tmp_path)
    code = cli.run_main(["--suite", "table9", "--dataset", "qvhighlights", "--annotations", str(ann), "--video-dir",
                         str(videos), "--backbone", "R2Bench-Tiny", "--out", str(tmp_path / "out"), "--quiet",
                         "--methods", "frozen", "r2_tuning"])
    assert code == 2                                      # every annotation line is read when the suite is planned
    assert "highlight_train_release.jsonl:2" in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "out" / "table9" / "ledger.jsonl").exists()      # nothing ran


def test_an_interrupted_suite_resumes_without_redoing_finished_runs(tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["--suite", "table9", "--paper-scale", "--out", str(out), "--quiet", "--methods", "frozen", "r2_tuning"]
    real = orchestrate.execute

    def crash_on_r2(spec, ctx, run_id):
        if spec.method == "r2_tuning":
            raise KeyboardInterrupt  # the machine dies mid-suite
        return real(spec, ctx, run_id)

    monkeypatch.setattr(orchestrate, "execute", crash_on_r2)
    assert cli.run_main(args) == 130           # interrupted: recorded, exit status 130
    ledger = Ledger(out / "table9_paper_scale")
    first, cut = ledger.records()
    assert first["method"] == "frozen" and first["status"] == "ok"
    assert cut["method"] == "r2_tuning" and cut["status"] == "interrupted"

    monkeypatch.setattr(orchestrate, "execute", real)
    assert cli.run_main(args) == 0
    records = ledger.records()
    assert [(r["method"], r["status"]) for r in records] == [("frozen", "ok"), ("r2_tuning", "ok")]
    assert records[0]["started"] == first["started"]  # not re-run
    assert records[1]["params"] == 2_836_242


@pytest.mark.parametrize("argv, message", [
    (["--weights", "openai"], "hub tag"),
    (["--dataset", "qvhighlights"], "needs --video-dir"),
    (["--dataset", "qvhighlights", "--size", "small"], "dataset 'qvhighlights' has no sizes"),
])
def test_bad_command_lines_stop_before_any_run(tmp_path, caplog, argv, message):
    assert cli.run_main([*argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert message in caplog.text
    assert not (tmp_path / "table9").exists()


def test_a_corrupt_cached_feature_is_rebuilt_when_read(env, r2_run):
    from r2bench.methods.backbone import Backbone
    from r2bench.methods.registry import build_model
    spec = env["spec"]
    model = build_model("r2_tuning", Backbone("R2Bench-Tiny", env["weights"]), spec.preset.head)
    cache = vtg.feature_cache_for(spec, model, env["root"] / "features")  # the run's cache (R2BENCH_CACHE)
    vid = spec.samples("val")[0].vid
    path = cache.path_for(vid)
    good = cache.get(vid)["block"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])          # a half-written entry
    video = vtg.cached_video_fn(cache, vtg.FrameSource(spec, model.backbone), model, torch.device("cpu"))(vid)
    assert cache.stats.rebuilt == 1
    torch.testing.assert_close(video["block"], good)
    assert cache.get(vid) is not None                                         # and stored again, whole


def _suite_lines(r2_run):
    """The suite's val predictions of the run, grouped by video (several queries each)."""
    by_vid = {}
    for line in Path(r2_run["predictions"]).read_text().splitlines():
        obj = json.loads(line)
        by_vid.setdefault(obj["vid"], []).append(obj)
    return by_vid


def test_predictor_returns_the_suites_windows(env, r2_run, monkeypatch):
    """The Predictor (video encoded once, every query from it) answers exactly as the suite's
    evaluation of the same checkpoint did, for every query of every validation video: the
    same features (the suite cached them with the model in train mode, the Predictor encodes
    in eval mode) and each query computed alone in both. Many of this model's windows tie to
    1e-6, so any difference in the last bits would reorder them."""
    from r2bench.bench.predict import Predictor
    predictor = Predictor.from_run(Path(r2_run["predictions"]).parent)
    by_vid = _suite_lines(r2_run)
    assert any(len(lines) > 1 for lines in by_vid.values()), "the benchmark should have videos with several queries"
    for vid, suite in by_vid.items():
        predictor.encode_video(env["spec"].video_path(vid))
        with monkeypatch.context() as m:       # answering queries must not run the image tower again
            m.setattr(predictor.backbone, "video_tokens", lambda *a, **k: pytest.fail("video encoded twice"))
            answers = predictor.predict([line["query"] for line in suite])
        assert answers == [{k: v for k, v in line.items() if k != "qid"} for line in suite], vid


def test_predict_command_prints_the_top_windows(env, r2_run, capsys):
    from r2bench.bench import predict
    vid, lines = next(iter(_suite_lines(r2_run).items()))
    rc = predict.main([str(Path(r2_run["predictions"]).parent), str(env["spec"].video_path(vid)),
                       "-q", lines[0]["query"], "--top", "2", "--device", "cpu"])
    assert rc == 0
    out = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert len(out) == 1 and len(out[0]["pred_relevant_windows"]) == 2
    assert out[0]["pred_relevant_windows"] == lines[0]["pred_relevant_windows"][:2]
    assert predict.main([str(env["root"]), "x.mp4", "-q", "a"]) == 2          # not a run folder
    assert "model card" in capsys.readouterr().err
