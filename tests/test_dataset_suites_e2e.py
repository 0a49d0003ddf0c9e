"""Slow (``pytest -m slow``): ``run_all.py --suite table3`` end to end on its synthetic
stand-in — one highlight-detection model per domain, the merged table, and the Predictor on
one of those runs."""
import json
from pathlib import Path

import pytest
import torch

from r2bench import cli

from r2bench.bench import orchestrate
from r2bench.datasets.registry import get_dataset
from r2bench.datasets.synthetic.tiny_clip import pretrain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table3(tmp_path_factory):
    root = tmp_path_factory.mktemp("table3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("R2BENCH_CACHE", str(root))
        weights, _ = pretrain(seed=0, steps=40, out=root / "tiny.safetensors", progress=False)
        rc = cli.run_main(["--suite", "table3", "--weights", str(weights), "--epochs", "3", "--out",
                           str(root / "out"), "--quiet", "--device", "cpu"])
        yield dict(rc=rc, out=root / "out" / "table3", root=root)


def test_table3_stand_in_runs_one_model_per_domain_and_renders_the_table(table3):
    assert table3["rc"] == 0
    records = [json.loads(s) for s in (table3["out"] / "ledger.jsonl").read_text().splitlines()]
    done = [r for r in records if r["status"] == "ok"]
    assert sorted(r["domain"] for r in done) == sorted(get_dataset("synthetic_hd_binary").domains)
    assert all(r["config"]["regression"] is False for r in done)
    for r in done:
        (domain_metric,) = [k for k in r["metrics"] if k.startswith("mAP-")]
        assert domain_metric == f"mAP-{r['domain']}" and 0 <= r["metrics"]["mAP"] <= 100
        line = json.loads(Path(r["predictions"]).read_text().splitlines()[0])
        assert "pred_relevant_windows" not in line and line["query"] == r["domain"]
    md = (table3["out"] / "table3.md").read_text()
    assert "Stand-in red" in md and "Stand-in Avg" in md and "76.1" in md      # ours beside the paper's


def test_predictor_matches_a_highlight_run(table3, monkeypatch):
    from r2bench.bench.predict import Predictor
    monkeypatch.setenv("R2BENCH_CACHE", str(table3["root"]))
    run = next(json.loads(s) for s in (table3["out"] / "ledger.jsonl").read_text().splitlines()
               if json.loads(s)["status"] == "ok")
    lines = [json.loads(s) for s in Path(run["predictions"]).read_text().splitlines()]
    data = get_dataset("synthetic_hd_binary").bind(progress=False)
    predictor = Predictor.from_run(Path(run["predictions"]).parent)
    assert predictor.fps is None                      # per-video frame rate: the caller gives it
    vid = lines[0]["vid"]
    predictor.encode_video(data.video_path(vid), fps=data.frame_rate(vid))
    (ours,) = predictor.predict([lines[0]["query"]])
    assert "pred_relevant_windows" not in ours
    assert torch.allclose(torch.tensor(ours["pred_saliency_scores"]), torch.tensor(lines[0]["pred_saliency_scores"]),
                          atol=2e-4)
