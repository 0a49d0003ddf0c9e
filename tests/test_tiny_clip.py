"""datasets.synthetic.tiny_clip: deterministic pretraining, atomic safetensors, open_clip round trip."""
import numpy as np
import open_clip
import pytest
import torch

from r2bench.datasets.synthetic import tiny_clip as T
from r2bench.methods.checkpoints import verify_safetensors

FAST = dict(steps=3, batch_size=8, n_heldout=16, progress=False)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads, and one thread stays fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained():
    return T.train(seed=0, **FAST)


def test_config_registers_and_builds():
    assert "R2Bench-Tiny" in open_clip.list_models()
    model = open_clip.create_model("R2Bench-Tiny")
    assert model.visual.image_size == (64, 64) and model.context_length == 32
    assert model.text_projection.shape == (128, 128)


def test_same_seed_bit_identical_checkpoint(trained, tmp_path):
    model, acc = trained
    again, acc_again = T.train(seed=0, **FAST)
    a = T.save(model, tmp_path / "a.safetensors", {"seed": "0"})
    b = T.save(again, tmp_path / "b.safetensors", {"seed": "0"})
    assert a.read_bytes() == b.read_bytes() and acc == acc_again
    other, _ = T.train(seed=1, **FAST)
    assert not torch.equal(other.visual.conv1.weight, model.visual.conv1.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]  # no temp files


def test_open_clip_loads_checkpoint_with_same_outputs(trained, tmp_path):
    model, _ = trained
    path = T.save(model, tmp_path / "tiny.safetensors", {})
    loaded = open_clip.create_model("R2Bench-Tiny", pretrained=str(path)).eval()
    images, captions = T.sample_pairs(np.random.default_rng(5), 6)
    x, tokens = T.normalize(images), T.tokenize(captions)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(x), model.encode_image(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens), rtol=0, atol=0)
    assert T.load_tiny_clip(path).logit_scale.item() == model.logit_scale.item()


def test_trimmed_text_encoding_matches_open_clip(trained):
    model, _ = trained
    tokens = T.tokenize(["a red circle", "we see a small blue square in the lower half"])
    with torch.no_grad():
        torch.testing.assert_close(T._encode_text_trimmed(model, tokens), model.encode_text(tokens),
                                   rtol=1e-5, atol=1e-5)


def test_pairs_and_accuracy_are_well_formed(trained):
    images, captions = T.sample_pairs(np.random.default_rng(0), 5)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8 and all(captions)
    assert T.tokenize(captions).shape == (5, 32)
    acc = T.retrieval_accuracy(trained[0], seed=0, n=32)
    assert set(acc) == {"i2t", "i2t_chance", "t2i", "t2i_chance"}
    assert all(0 <= v <= 1 for v in acc.values()) and 0 < acc["i2t_chance"] < 0.2


def test_cli_writes_checkpoint_and_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(T, "N_HELDOUT", 16)
    monkeypatch.setattr(T, "BATCH_SIZE", 8)
    out = tmp_path / "cli.safetensors"
    T.main(["--steps", "2", "--seed", "3", "--out", str(out)])
    text = capsys.readouterr().out
    assert out.is_file() and "image->text" in text and "text->image" in text and "chance" in text


def test_ensure_expands_the_shipped_weights_once_and_refuses_other_seeds(monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("ensure_tiny_clip must never pretrain")

    monkeypatch.setattr(T, "train", no_training)
    path = T.ensure_tiny_clip(seed=0)
    assert path == T.shipped_path(0) and path.name == f"R2Bench-Tiny-v{T.TINY_CLIP_VERSION}-s0.safetensors"
    mtime = path.stat().st_mtime_ns
    assert T.ensure_tiny_clip(seed=0) == path and path.stat().st_mtime_ns == mtime       # reused
    T.save(T.create_model(), path, {"model": "R2Bench-Tiny", "seed": "0", "steps": "7"})  # not the shipped file
    assert T.ensure_tiny_clip(seed=0) == path and verify_safetensors(path).get("shipped")
    with pytest.raises(ValueError, match="ships the tiny CLIP of pretraining seed 0.*--seed 2 --out"):
        T.ensure_tiny_clip(seed=2)


def test_ridge_probe_finds_linear_signal_and_not_noise():
    from r2bench.datasets.synthetic.probe import ridge_accuracy
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 100))
    y = (x[:, :3].sum(1) > 0).astype(int)                    # a linear function of 3 of 100 features
    assert ridge_accuracy(x, y, 360, 120) > 0.9
    noise = rng.integers(0, 2, size=600)                      # labels unrelated to the features
    assert ridge_accuracy(x, noise, 360, 120) < 0.65
    three = x[:, :3].argmax(1)                                # three classes, linearly separable
    assert ridge_accuracy(x, three, 360, 120) > 0.7


def test_probe_scenes_and_table(trained):
    from r2bench.datasets.synthetic import probe
    from r2bench.methods.backbone import Backbone
    frames, labels = probe.probe_scenes(40, seed=1)
    assert frames.shape == (40, 2, 64, 64, 3) and frames.dtype == np.uint8
    assert set(labels) == set(probe.PROBE_ATTRIBUTES) and all(len(v) == 40 for v in labels.values())
    assert labels["size"].max() == 1 and labels["motion"].max() <= 4 and set(labels["side"]) == {0, 1}
    change = np.abs(frames[:, 0].astype(int) - frames[:, 1]).max(axis=(1, 2, 3))
    moving = labels["motion"] != 4                            # a moving object is elsewhere 2 s later
    assert (change[~moving] < 60).all() and (change[moving] > 60).mean() > 0.9
    path = T.save(trained[0], T.checkpoint_path(0, 3), {})
    result = probe.run_probes(Backbone(T.MODEL_NAME, path), n=60)
    table = probe.format_table(result)
    assert table.count("\n") == 1 + 2 * len(probe.PROBE_ATTRIBUTES) and "layer 6" in table
    assert all(len(v) == 6 and all(0 <= a <= 1 for a in v) for v in result["tokens"].values())
