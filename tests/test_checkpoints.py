"""Backbone/weights consistency: the activation matters, and a checkpoint that does not fit the
chosen open_clip config is refused with a message naming the config to pass instead."""
import json
import time
import warnings
import zipfile

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from r2bench.methods.backbone import Backbone, BackboneError, check_backbone
from r2bench.methods import checkpoints
from r2bench.methods.checkpoints import (OPENAI_ATTRIBUTES, CheckpointInfo, check_checkpoint, fitting_configs,
                                         inspect_checkpoint)
from tests.realformat import openai_clip, openai_torchscript_archive


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_torchscript(state: dict, path) -> None:
    """A TorchScript archive holding ``state`` under its dotted names: the layout of OpenAI's
    CLIP release files (a scripted model), without scripting a whole CLIP."""
    root = _Holder()
    for name, tensor in state.items():
        *parents, leaf = name.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, _Holder())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(tensor.clone(), requires_grad=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit is deprecated, OpenAI's files are not
        torch.jit.save(torch.jit.script(root), str(path))


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """The tiny CLIP's weights as a plain safetensors file and as an OpenAI-style TorchScript
    archive (its QuickGELU twin config, R2Bench-Tiny-quickgelu, ships in methods/model_configs)."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    tiny = Backbone("R2Bench-Tiny")
    state = {k: v.contiguous() for k, v in tiny.clip.state_dict().items()}
    save_file(state, str(root / "tiny.safetensors"))
    save_torchscript(state, root / "tiny_jit.pt")
    assert open_clip.get_model_config("R2Bench-Tiny-quickgelu")["quick_gelu"] is True
    return dict(tiny=tiny, state=state, plain=root / "tiny.safetensors", jit=root / "tiny_jit.pt", root=root)


def test_an_openai_style_checkpoint_loads_into_the_quickgelu_config_and_the_activation_matters(tiny_files):
    """Loaded into the QuickGELU config, the weights are the file's; the same weights under the
    GELU config give other features, so the check below is not vacuous."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # torch.load: "dispatching to torch.jit.load"
        quick = Backbone("R2Bench-Tiny-quickgelu", tiny_files["jit"])
    gelu = tiny_files["tiny"]                          # same weights, nn.GELU
    for name, value in quick.clip.state_dict().items():
        torch.testing.assert_close(value, tiny_files["state"][name], msg=name)
    assert isinstance(quick.clip.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    assert isinstance(gelu.clip.visual.transformer.resblocks[0].mlp.gelu, nn.GELU)
    images = torch.randn(2, 3, gelu.image_size, gelu.image_size, generator=torch.Generator().manual_seed(1))
    ids = gelu.tokenize(["a red circle"])
    with torch.no_grad():
        a, b = (m.video_tokens(images, m.taps(4))["block"] for m in (gelu, quick))
        ta, tb = (m.text_tokens(ids, m.taps(1))[0]["block"] for m in (gelu, quick))
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-3          # already at the first tapped block
    assert (a - b).abs().max() > 1e-2 and (ta - tb).abs().max() > 1e-3


def test_checkpoint_facts_are_read_from_the_file(tiny_files):
    plain, jit = inspect_checkpoint(tiny_files["plain"]), inspect_checkpoint(tiny_files["jit"])
    for info in (plain, jit):
        assert (info.vision_width, info.vision_layers, info.patch_size, info.image_size,
                info.text_width, info.text_layers) == (128, 6, 16, 64, 128, 6)
    assert plain.format == "safetensors" and plain.quick_gelu is None
    assert jit.format == "torchscript" and jit.quick_gelu is True and "TorchScript" in jit.activation_source


def test_an_openai_style_checkpoint_is_refused_with_a_gelu_config(tiny_files):
    with pytest.raises(BackboneError, match=r"needs QuickGELU.*uses nn.GELU.*'R2Bench-Tiny-quickgelu'"):
        check_backbone("R2Bench-Tiny", tiny_files["jit"])
    with pytest.raises(BackboneError, match="R2Bench-Tiny-quickgelu"):
        Backbone("R2Bench-Tiny", tiny_files["jit"])


def test_a_checkpoint_of_another_architecture_is_refused_with_the_fitting_config(tiny_files):
    with pytest.raises(BackboneError, match=r"vision width: checkpoint 128, config 768.*patch size: checkpoint 16, "
                                            r"config 32.*pass the backbone config 'R2Bench-Tiny'"):
        check_backbone("ViT-B-32", tiny_files["plain"])


def test_openai_vit_b_32_weights_point_to_the_quickgelu_config():
    """What the OpenAI ViT-B/32 file says about itself (TorchScript, 768 × 12, patch 32, …)
    fits ViT-B-32-quickgelu and not ViT-B-32."""
    info = CheckpointInfo("ViT-B-32.pt", "torchscript", 768, 12, 32, 224, 512, 12, True, "a TorchScript archive")
    assert "ViT-B-32-quickgelu" in fitting_configs(info) and "ViT-B-32" not in fitting_configs(info)


def test_names_and_metadata_state_the_activation(tmp_path, tiny_files):
    named = tmp_path / "vit_b_32-quickgelu-tiny.safetensors"
    named.write_bytes(tiny_files["plain"].read_bytes())
    assert inspect_checkpoint(named).quick_gelu is True
    tagged = tmp_path / "tiny_tagged.safetensors"
    save_file(tiny_files["state"], str(tagged), metadata={"quick_gelu": "false"})
    assert inspect_checkpoint(tagged).quick_gelu is False
    assert check_checkpoint("R2Bench-Tiny", tagged).quick_gelu is False


# ---- OpenAI's weights in other formats than the release's TorchScript archive

@pytest.fixture(scope="module")
def openai_tiny(tmp_path_factory):
    """A tiny CLIP in OpenAI's release format (tests/realformat.py), its release model's state
    dict (the three OpenAI attributes, fp16 projections) and the same without the attributes."""
    root = tmp_path_factory.mktemp("openai")
    archive = openai_torchscript_archive(root / "tiny-release.pt", "R2Bench-Tiny-quickgelu")
    state = openai_clip("R2Bench-Tiny-quickgelu").state_dict()
    dumped = root / "dumped.pt"
    torch.save(dict(state), dumped)                     # torch.jit.load(release).state_dict(), saved
    weights = {k: v.contiguous() for k, v in state.items() if k not in OPENAI_ATTRIBUTES}
    save_file(weights, str(root / "converted.safetensors"))
    save_file(weights, str(root / "said_gelu.safetensors"), metadata={"activation": "gelu"})
    torch.save(dict(state_dict=weights, activation="gelu"), root / "said_gelu.pt")
    return dict(archive=archive, dumped=dumped, converted=root / "converted.safetensors",
                said_gelu=root / "said_gelu.safetensors", said_gelu_pt=root / "said_gelu.pt", weights=weights)


def test_a_dumped_openai_state_dict_is_refused_with_a_gelu_config_and_loads_with_quickgelu(openai_tiny):
    """OpenAI's release model saved as a plain state dict: its input_resolution / context_length /
    vocab_size entries say whose it is; one line names the config to pass."""
    with pytest.raises(BackboneError) as e:
        check_backbone("R2Bench-Tiny", openai_tiny["dumped"])
    message = str(e.value)
    assert "\n" not in message and "'input_resolution'" in message and "pass the backbone config 'R2Bench-Tiny-quickgelu'" in message
    loaded = Backbone("R2Bench-Tiny-quickgelu", openai_tiny["dumped"])   # the three entries are not parameters
    for name, value in loaded.clip.state_dict().items():
        assert torch.equal(value, openai_tiny["weights"][name].float()), name


def test_openai_release_precision_says_quickgelu_unless_the_file_says_otherwise(openai_tiny):
    """Converted to safetensors without the attributes, the release's fp16 projections beside
    fp32 LayerNorms still say it; a file that names its activation is believed."""
    info = inspect_checkpoint(openai_tiny["converted"])
    assert info.quick_gelu is True and "fp16 projections" in info.activation_source
    with pytest.raises(BackboneError, match=r"needs QuickGELU.*'R2Bench-Tiny-quickgelu'"):
        check_backbone("R2Bench-Tiny", openai_tiny["converted"])
    for path in (openai_tiny["said_gelu"], openai_tiny["said_gelu_pt"]):
        assert inspect_checkpoint(path).quick_gelu is False
        check_backbone("R2Bench-Tiny", path)
        with pytest.raises(BackboneError, match="needs nn.GELU"):
            check_backbone("R2Bench-Tiny-quickgelu", path)


def test_open_clip_style_weights_that_do_not_say_their_activation_still_load(tiny_files):
    """The same names in fp32 (open_clip's own weights, LAION's): nothing to go by, so they load."""
    assert inspect_checkpoint(tiny_files["plain"]).quick_gelu is None
    check_backbone("R2Bench-Tiny", tiny_files["plain"])
    assert checkpoints._openai_release_config("ViT-B-32") == "ViT-B-32-quickgelu"   # such a file there: a warning
    assert checkpoints._openai_release_config("R2Bench-Tiny") is None


def test_inspecting_a_torchscript_archive_loads_none_of_it(openai_tiny, monkeypatch):
    """Architecture and activation come from the archive's pickled state alone: no torch.jit.load."""
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("the archive was loaded to be inspected"))
    checkpoints._inspect.cache_clear()
    start = time.perf_counter()
    info = inspect_checkpoint(openai_tiny["archive"])
    assert time.perf_counter() - start < 1.0
    assert (info.format, info.quick_gelu, info.vision_width, info.vision_layers, info.patch_size, info.image_size,
            info.text_width, info.text_layers) == ("torchscript", True, 128, 6, 16, 64, 128, 6)


def _zip_archive(path, pickled: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data.pkl", pickled)
        z.writestr("model/constants.pkl", b"\x80\x02).")
        z.writestr("model/code/__torch__/m.py", "")


def test_a_crafted_pickle_in_a_torchscript_archive_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    evil = b"\x80\x02cposix\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode() \
        + b"\x85R."
    for name, content in (("call.pt", evil), ("object.pt", b"\x80\x02cbuiltins\ndict\n)\x81}b.")):
        _zip_archive(tmp_path / name, content)
        with pytest.raises(BackboneError, match="not a readable checkpoint.*RefusedPickle"):
            check_backbone("R2Bench-Tiny", tmp_path / name)
    assert not marker.exists()


def test_a_checkpoint_that_does_not_load_strictly_is_one_line_naming_the_file_and_keys(tiny_files):
    """Missing, unexpected and mis-shaped keys the architecture check cannot see (here the
    embedding width): one line, the file, the first keys, what to do; no traceback of open_clip's."""
    state = dict(tiny_files["state"])
    del state["visual.ln_post.bias"]
    state["visual.extra.weight"] = torch.zeros(3)
    state["text_projection"] = torch.zeros(128, 64)
    bad = tiny_files["root"] / "bad.safetensors"
    save_file(state, str(bad))
    check_backbone("R2Bench-Tiny", bad)                  # widths, layers, patch: all fit
    with pytest.raises(BackboneError) as e:
        Backbone("R2Bench-Tiny", bad)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"CLIP weights '{bad}' do not load into open_clip config")
    assert "missing visual.ln_post.bias" in message and "unexpected visual.extra.weight" in message
    assert "text_projection (checkpoint (128, 64), config (128, 128))" in message and "both towers" in message
    assert e.value.__cause__ is None and e.value.__context__ is None


def test_an_openai_archive_is_loaded_once_without_torchs_warnings(openai_tiny, monkeypatch):
    calls = []
    real = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    checkpoints._inspect.cache_clear()
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Backbone("R2Bench-Tiny-quickgelu", openai_tiny["archive"])
        assert warnings.filters[1:] == filters         # only the load silenced them, not this process
    assert len(calls) == 1
    assert [str(w.message) for w in seen if "torch" in str(w.filename) or "open_clip" in str(w.filename)] == []


def test_weights_that_do_not_say_their_activation_warn_once_where_openai_released_that_config(
        tiny_files, monkeypatch, caplog):
    """ViT-B-32 (OpenAI released weights of it): a file without a word about its activation loads
    with one warning naming ViT-B-32-quickgelu. Played here on the tiny config."""
    monkeypatch.setattr(checkpoints, "_openai_release_config",
                        lambda name: "R2Bench-Tiny-quickgelu" if name == "R2Bench-Tiny" else None)
    monkeypatch.setattr(checkpoints, "_WARNED", set())
    with caplog.at_level("WARNING", logger="r2bench.methods.checkpoints"):
        check_backbone("R2Bench-Tiny", tiny_files["plain"])
        check_backbone("R2Bench-Tiny", tiny_files["plain"])
    warned = [r.getMessage() for r in caplog.records if r.name == "r2bench.methods.checkpoints"]
    assert len(warned) == 1 and "do not say their activation" in warned[0] and "'R2Bench-Tiny-quickgelu'" in warned[0]
