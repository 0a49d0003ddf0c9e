"""Backbone/weights consistency: the activation matters, and a checkpoint that does not fit the
chosen open_clip config is refused with a message naming the config to pass instead."""
import json
import warnings

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from r2bench.methods.backbone import Backbone, BackboneError, check_backbone
from r2bench.methods.checkpoints import CheckpointInfo, check_checkpoint, fitting_configs, inspect_checkpoint


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
    archive, and a QuickGELU twin of the tiny config registered with open_clip."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    tiny = Backbone("R2Bench-Tiny")
    state = {k: v.contiguous() for k, v in tiny.clip.state_dict().items()}
    save_file(state, str(root / "tiny.safetensors"))
    save_torchscript(state, root / "tiny_jit.pt")
    cfg = open_clip.get_model_config("R2Bench-Tiny")
    (root / "configs").mkdir()
    (root / "configs" / "R2Bench-Tiny-quickgelu.json").write_text(json.dumps({**cfg, "quick_gelu": True}))
    open_clip.add_model_config(root / "configs")
    return dict(tiny=tiny, state=state, plain=root / "tiny.safetensors", jit=root / "tiny_jit.pt")


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
    assert check_checkpoint("R2Bench-Tiny", tagged) == {}
