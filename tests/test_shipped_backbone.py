"""The shipped tiny CLIP (``methods/weights/R2Bench-Tiny-v3.safetensors.xz``) is the backbone its
documentation describes (docs/benchmark.md, "Version 3"): its per-layer probes reproduce the
recorded ``methods/weights/R2Bench-Tiny-v3.probe.json`` (shipped beside the weights, shown in the report), and a regenerated backbone
(``python -m r2bench.datasets.synthetic.tiny_clip --ship``'s recipe, pretrained again) probes
within the stated tolerance of it.

Tolerances: the slow test probes the shipped weights exactly as the recorded file was made
(n = 3000, seed 0), so only floating-point differences between machines separate the two: 1
point. The default test probes 600 scenes and checks what docs/benchmark.md states of the
backbone (a 600-scene ridge is weaker, so its numbers are not the recorded ones). A regenerated backbone is a new pretraining run (other CPUs, other summation orders):
5 points per attribute and layer, the spread seen between candidates of one recipe in
docs/measurements/benchmark/backbone_exploration.md.
"""
import json

import pytest
import torch

from r2bench.datasets.synthetic import probe, tiny_clip
from r2bench.methods.backbone import Backbone

RECORDED = tiny_clip.SHIPPED_PROBE
ATTRIBUTES = ("colour", "shape", "half", "side")   # what the thresholds name


def recorded() -> dict:
    return json.loads(RECORDED.read_text())


def assert_close(result: dict, reference: dict, tolerance: float) -> None:
    for attr in ATTRIBUTES:
        got, want = result["tokens"][attr], reference["tokens"][attr]
        assert len(got) == len(want) == 6
        worst = max(abs(a - b) for a, b in zip(got, want))
        assert worst <= tolerance, f"{attr}: {[round(x, 3) for x in got]} vs recorded {want} (tolerance {tolerance})"


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_shipped_backbone_probes_as_documented(tmp_path, monkeypatch, one_thread):
    """A quick probe (600 scenes). Fewer fitting scenes give a weaker ridge (shape reads 40-45 %
    here against 55 % at 3000), so only what the documentation states is checked."""
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))
    weights = tiny_clip.ensure_tiny_clip(progress=False)
    result = probe.run_probes(Backbone(tiny_clip.MODEL_NAME, str(weights)), n=600, seed=0)
    # what docs/benchmark.md says of it: colour read, shape weak, position kept to the last layer
    last = {a: result["tokens"][a][-1] for a in ATTRIBUTES}
    assert last["colour"] > 0.9 and last["shape"] < 0.8 and last["half"] > 0.9 and last["side"] > 0.9


@pytest.mark.slow
def test_the_shipped_backbone_probes_as_recorded(tmp_path, monkeypatch, one_thread):
    """The recorded probe exactly as it was made (3000 scenes; about 2 min)."""
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))
    reference = recorded()
    weights = tiny_clip.ensure_tiny_clip(progress=False)
    result = probe.run_probes(Backbone(tiny_clip.MODEL_NAME, str(weights)), n=reference["n"], seed=0)
    assert_close(result, reference, 0.01)


@pytest.mark.slow
def test_a_regenerated_backbone_probes_within_tolerance(tmp_path, monkeypatch, one_thread):
    """Pretrains the shipped recipe again (3000 steps, about 20 CPU-min)."""
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))
    path, _ = tiny_clip.pretrain(0, tiny_clip.DEFAULT_STEPS, tmp_path / "again.safetensors", "cpu",
                                 progress=False, recipe=tiny_clip.Recipe())
    reference = recorded()
    result = probe.run_probes(Backbone(tiny_clip.MODEL_NAME, str(path)), n=reference["n"], seed=0)
    assert_close(result, reference, 0.05)
