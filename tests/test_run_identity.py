"""Run ids cover everything that changes a result, and nothing else."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from r2bench.bench.ledger import Ledger
from r2bench.bench.run import RunContext, RunSpec, make_run_id, run_identity
from r2bench.datasets.registry import DatasetSpec, Preset


@pytest.fixture
def dataset(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    for split in ("train", "val"):
        (ann / f"{split}.jsonl").write_text('{"qid": 1}\n')
    spec = DatasetSpec(name="toy", title="Toy", format="qvhighlights", metric="qvhighlights", tasks={"mr", "hd"},
                       fps=0.5, clip_seconds=2.0, annotation_files={s: f"{s}.jsonl" for s in ("train", "val")},
                       preset=Preset(train=dict(epochs=2, batch_size=4), head=dict(dropout=0.1)))
    return spec.bind(ann, tmp_path / "videos")


def run_id(dataset, spec=RunSpec("r2_tuning"), **kw):
    kw.setdefault("backbone", "R2Bench-Tiny")
    kw.setdefault("weights", None)
    ctx = RunContext("table9", dataset, device=torch.device("cpu"), out_dir=Path("."), **kw)
    return make_run_id("table9", run_identity(spec, ctx))


def test_run_id_is_readable_and_stable(dataset):
    a = run_id(dataset, RunSpec("r2_tuning", {"k": 2, "dropout": 0.2}))
    assert a.startswith("table9-r2_tuning-toy-s0-")
    assert a == run_id(dataset, RunSpec("r2_tuning", {"dropout": 0.2, "k": 2}))


def test_run_id_changes_with_everything_that_changes_the_result(dataset, tmp_path):
    w1, w2 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"x": torch.zeros(2)}, str(w1))
    save_file({"x": torch.ones(2)}, str(w2))
    base = run_id(dataset, weights=str(w1))
    variants = {
        "other weights": run_id(dataset, weights=str(w2)),
        "random init": run_id(dataset),
        "other backbone": run_id(dataset, backbone="ViT-B-32", weights=str(w1)),
        "seed": run_id(dataset, weights=str(w1), seed=1),
        "method override": run_id(dataset, RunSpec("r2_tuning", {"k": 2}), weights=str(w1)),
        "training override": run_id(dataset, weights=str(w1), train_overrides={"epochs": 3}),
    }
    (dataset.files["val"]).write_text('{"qid": 2}\n')
    changed = dataset.spec.bind(dataset.files["val"].parent, dataset.video_dir)
    variants["annotations"] = run_id(changed, weights=str(w1))
    assert len(set(variants.values()) | {base}) == len(variants) + 1, variants


def test_bad_overrides_are_refused_before_anything_runs(dataset):
    with pytest.raises(ValueError, match="no config field"):
        run_id(dataset, RunSpec("r2_tuning", {"num_layerz": 2}))
    with pytest.raises(ValueError, match="epochs"):
        run_id(dataset, train_overrides={"epochs": -3})


def test_a_run_is_done_only_for_the_same_code_version(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append(dict(run_id="r", status="ok", code_version="v1"))
    assert ledger.done("r", "v1") and not ledger.done("r", "v2") and ledger.done("r")


def test_code_version_follows_the_code_not_the_commit_or_the_docs(tmp_path, monkeypatch):
    from r2bench.bench import provenance
    for pkg in provenance.CODE_PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "m.py").write_text("x = 1\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("a")
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", tmp_path)
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    version = provenance.code_version.__wrapped__        # uncached: the module caches it per process
    first = version()
    assert first.startswith("code-")
    (tmp_path / "docs" / "notes.md").write_text("b")           # a docs-only change keeps every finished run
    assert version() == first
    (tmp_path / provenance.CODE_PACKAGES[0] / "m.py").write_text("x = 2\n")
    assert version() != first
