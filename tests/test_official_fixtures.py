"""The ``official`` protocol against the golden fixtures made with the authors' public code
(../shared/data/official_fixtures; skipped when ../shared is absent), and the public configs'
training length.

The fixture cases are not copied into tests/fixtures: every case needs the same 5.7 MB
weights file (2,836,242 float16 values, incompressible), above the 3 MB a committed fixture
may take, so these tests run where ../shared is mounted."""
import json
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset

from r2bench.bench.train import TrainConfig, training_items
from r2bench.datasets.registry import get_dataset
from r2bench.core.io import SHARED_DIR
from r2bench.methods.check_official import check_case, main

FIXTURES = SHARED_DIR / "data" / "official_fixtures"
CASES = sorted(p for p in FIXTURES.iterdir() if (p / "meta.json").is_file()) if FIXTURES.is_dir() else []
needs_fixtures = pytest.mark.skipif(not CASES, reason=f"no official fixture cases under {FIXTURES}")


def case(name: str):
    path = FIXTURES / name
    if not (path / "meta.json").is_file():
        pytest.skip(f"fixture case {name} not found under {FIXTURES}")
    return path


@pytest.mark.shared
@needs_fixtures
@pytest.mark.parametrize("case_dir", CASES, ids=[p.name for p in CASES])
def test_the_official_protocol_matches_every_tensor_of_the_case(case_dir):
    result = check_case(case_dir)
    assert result["ok"], f"{case_dir.name}: outside 1e-4: " + json.dumps(
        {n: result["tensors"].get(n) or result["batched"].get(n) for n in result["failing"]})
    assert result["max_abs_diff"] < 1e-4
    if result["kind"] == "eval":   # the whole padded batch gives each sample's numbers too
        assert result["batched"] and all(e["ok"] for e in result["batched"].values())


# a switch flipped to its paper value is caught by the fixture that exercises it (so the
# comparison can fail); the other switches are checked against hand cases in tests/test_head.py
@pytest.mark.shared
@pytest.mark.parametrize("name, field, value, caught", [
    ("loss_padded_batch", "relu_h", False, "saliency_cos"),
    ("qvhighlights_preset", "nms_keep_suppressed", False, "s0.windows"),
    ("charades_preset", "soft_nms_thresholded", True, "s0.windows"),
    ("loss_equal_length", "saliency_loss", "within_video", "loss.saliency"),
    ("loss_padded_batch", "pyramid_padding_train", False, "mask.l1"),
])
def test_a_switch_to_the_paper_value_is_caught(name, field, value, caught):
    result = check_case(case(name), {field: value}, batched=False)
    assert not result["ok"] and caught in result["failing"]


@pytest.mark.shared
def test_the_command_prints_json_and_exits_by_the_result(capsys):
    path = case("loss_padded_batch")
    assert main([str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["case"] == "loss_padded_batch" and "loss.total" in report["tensors"]
    assert main([str(path), "--set", "saliency_loss=within_video"]) == 1
    assert json.loads(capsys.readouterr().out)["failing"] == ["loss.saliency", "loss.total"]


def test_a_folder_that_is_not_a_case_is_refused(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "not a fixture case" in capsys.readouterr().err


# ---- training length as the public configs define it -----------------------------------------
class _Items(Dataset):
    def __init__(self, durations):
        self.samples = [SimpleNamespace(duration=d) for d in durations]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return i


def test_an_epoch_is_repeat_passes_over_the_videos_long_enough_to_train_on():
    data = _Items([30.0, 4.0, 150.0, 5.0])
    once = training_items(data, repeat=1)
    assert once is data
    items = training_items(data, repeat=4, min_seconds=5.0)   # public code: duration < 5 s dropped
    assert len(items) == 12 and sorted(set(items[i] for i in range(len(items)))) == [0, 2, 3]
    with pytest.raises(ValueError, match="min_train_seconds"):
        training_items(data, repeat=1, min_seconds=500.0)


def test_presets_count_epochs_and_round_windows_as_the_public_configs():
    spec = get_dataset("qvhighlights")
    cfg = TrainConfig(**spec.preset.train)
    assert (cfg.repeat, cfg.epochs, cfg.lr_drop_epoch, cfg.warmup_iters) == (4, 30, 20, 500)
    assert cfg.repeat * cfg.epochs == 120 and cfg.repeat * cfg.lr_drop_epoch == 80   # passes
    units = {name: get_dataset(name).preset.head.get("window_unit")
             for name in ("qvhighlights", "charades_sta", "tacos", "ego4d_nlq")}
    assert units == {"qvhighlights": 2.0, "charades_sta": 0.1, "tacos": None, "ego4d_nlq": None}
