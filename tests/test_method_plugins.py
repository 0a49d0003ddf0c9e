"""Methods from outside the package: plugin files (``methods.registry.load_plugin``), installed
plugins (the ``r2bench.methods`` entry-point group), and ``r2bench check-method`` — the contract
run on a plugin, its exit codes and what it prints."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from r2bench import cli
from r2bench.core.io import REPO_ROOT
from r2bench.methods import contract, registry

EXAMPLES = REPO_ROOT / "examples"

HEADER = """
from dataclasses import dataclass

import torch
from torch import nn

from r2bench.methods import HeadConfig, LayerTokens, TransferModel, register


@dataclass
class ScaleConfig(HeadConfig):
    k: int = 1


class Scale(nn.Module):
    \"\"\"A learned per-channel gain on the frozen last layer (per frame: padding cannot leak).\"\"\"

    def __init__(self, width):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(width))

    def forward(self, tokens):
        video = tokens.video["block"]
        return LayerTokens({"block": MIX}, tokens.video_mask, tokens.text, tokens.text_mask)
"""
PER_FRAME = "video * self.gain"
# a METL neck that mixes every frame of the tensor, padded ones included: breaks "padding"
ACROSS_FRAMES = "video + (self.gain - 1) * video.mean(1, keepdim=True)"


def plugin(*names: str, mix: str = PER_FRAME) -> str:
    """A plugin file registering one method per name (each a per-channel gain, METL)."""
    text = HEADER.replace("MIX", mix)
    for i, name in enumerate(names):
        text += (f"\n\n@register({name!r}, label='Scale {i}', category='METL', config=ScaleConfig)\n"
                 f"def build_{i}(backbone, cfg):\n"
                 f"    return TransferModel(backbone, cfg, backbone_grad=False, neck=Scale(backbone.video_width))\n")
    return text


def write(tmp_path: Path, text: str, name: str = "plugin.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def clean_registry():
    """Whatever a test registers is gone afterwards (the contract test collects the registry)."""
    registry.registered()
    saved, loaded = dict(registry.REGISTRY), registry._loaded
    yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)
    registry._loaded = loaded


# ---- plugin files --------------------------------------------------------------------------------
def test_a_plugin_file_registers_its_methods_with_the_same_decorator(tmp_path, clean_registry):
    path = write(tmp_path, plugin("scale_a", "scale_b"))
    assert registry.load_plugin(path) == ["scale_a", "scale_b"]
    assert registry.registered()[-2:] == ["scale_a", "scale_b"]
    entry = registry.get_method("scale_a")
    assert str(path.resolve()) in entry.source and entry.category == "METL"
    contract.check_registration("scale_a")
    contract.check_meta_build("scale_a")


def test_a_name_that_exists_is_an_error_naming_both_and_registers_nothing(tmp_path, clean_registry):
    before = registry.registered()
    clash = write(tmp_path, plugin("fresh_one", "lst"), "clash.py")
    with pytest.raises(registry.PluginError) as e:
        registry.load_plugin(clash)
    message = str(e.value)
    assert "clash.py" in message and "'lst'" in message
    assert "r2bench.methods.tuners.lst" in message and str(clash.resolve()) in message      # both sources
    assert registry.registered() == before                                                  # fresh_one rolled back
    # the same file twice: the second load clashes with the first
    good = write(tmp_path, plugin("twice"), "twice.py")
    assert registry.load_plugin(good) == ["twice"]
    with pytest.raises(registry.PluginError, match="'twice' is registered twice: first by .*twice.py"):
        registry.load_plugin(good)


@pytest.mark.parametrize("text, cause", [("import no_such_module_anywhere\n", "ModuleNotFoundError"),
                                         ("def broken(:\n", "SyntaxError")])
def test_a_plugin_that_fails_on_import_is_an_error_naming_the_file(tmp_path, clean_registry, text, cause):
    path = write(tmp_path, plugin("half_done") + text, "bad.py")
    with pytest.raises(registry.PluginError, match=rf"bad\.py: {cause}"):
        registry.load_plugin(path)
    assert "half_done" not in registry.registered()
    with pytest.raises(registry.PluginError, match="no such file"):
        registry.load_plugin(tmp_path / "missing.py")


# ---- installed plugins: the entry-point group ------------------------------------------------------
class FakeEntryPoint:
    def __init__(self, name, value, load):
        self.name, self.value, self._load = name, value, load

    def load(self):
        return self._load()


def test_entry_points_load_once_when_the_registry_is_first_read_and_a_broken_one_only_warns(
        tmp_path, clean_registry, monkeypatch):
    installed = write(tmp_path, plugin("installed_scale"), "installed.py")
    calls = []

    def good():
        calls.append("good")
        return registry.load_plugin(installed)

    def broken():
        calls.append("broken")
        raise ImportError("a dependency of the plugin is missing")

    asked = []

    def entry_points(**kwargs):
        asked.append(kwargs)
        return [FakeEntryPoint("broken_one", "nowhere.module", broken),
                FakeEntryPoint("scale", "my_pkg.scale", good)]

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    registry._loaded = False
    with pytest.warns(RuntimeWarning, match="'broken_one' .*nowhere.module.* failed to load .*ImportError"):
        names = registry.registered()
    assert asked == [{"group": "r2bench.methods"}]
    assert "installed_scale" in names and "lst" in names
    registry.registered(), registry.get_method("installed_scale")
    assert calls == ["broken", "good"]                 # once, however often the registry is read


def test_unreadable_entry_point_metadata_is_a_warning(clean_registry, monkeypatch):
    def entry_points(**kwargs):
        raise OSError("metadata directory vanished")

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    registry._loaded = False
    with pytest.warns(RuntimeWarning, match="cannot read the 'r2bench.methods' entry points"):
        assert "lst" in registry.registered()


# ---- imports ----------------------------------------------------------------------------------------
def test_the_package_exports_what_a_method_file_needs_and_imports_lightly():
    code = ("import sys, r2bench.methods as m; assert 'torch' not in sys.modules, 'heavy'; "
            "from r2bench.methods import register, get_method, registered, build_model, load_plugin, HeadConfig, "
            "TransferModel, LayerTokens, ParamGroup, BlockHooks, TowerContext, Taps, Backbone, check_method, "
            "ContractError; import r2bench.methods.contract; "
            "leak = sorted(k for k in sys.modules if k.startswith(('r2bench.bench', 'r2bench.datasets'))); "
            "assert not leak, leak; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    import r2bench.methods as methods
    with pytest.raises(AttributeError):
        methods.no_such_name


# ---- r2bench check-method ---------------------------------------------------------------------------
def run_check_method(capsys, *argv):
    code = contract.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_method_passes_a_good_plugin_and_reports_its_size_and_memory(tmp_path, clean_registry, capsys,
                                                                            monkeypatch):
    import r2bench.bench.run as run
    monkeypatch.setattr(run, "paper_memory", lambda name, overrides, device: (1.25, "estimate"))
    path = write(tmp_path, plugin("scale_ok"))
    code, out, err = run_check_method(capsys, str(path), "scale_ok")
    assert code == 0, out + err
    for c in contract.CHECKS:
        assert f"PASS  {c.name}" in out
    width = 768   # the gain's one parameter per channel, at ViT-B/32
    assert f"{2_836_236 + width:,} = " in out and f"+{width:,}" in out
    assert "1.25 GiB (estimate: fake tensors" in out and "satisfies the method contract" in out


def test_check_method_names_the_broken_check_and_exits_non_zero(tmp_path, clean_registry, capsys):
    path = write(tmp_path, plugin("leaky", mix=ACROSS_FRAMES))
    code, out, err = run_check_method(capsys, str(path), "leaky", "--no-memory")
    assert code == 1
    assert "FAIL  padding" in out and "real frames' outputs change when padded frames are appended" in out
    assert "breaks the method contract: padding" in err
    assert "PASS  cached_features" in out and "learnable parameters at ViT-B-32" in out


def test_check_method_exit_2_on_a_file_it_cannot_load_or_a_name_it_does_not_register(tmp_path, clean_registry,
                                                                                     capsys):
    code, out, err = run_check_method(capsys, str(tmp_path / "nope.py"), "x")
    assert code == 2 and err.strip().count("\n") == 0 and "nope.py: no such file" in err
    path = write(tmp_path, plugin("scale_only"))
    code, out, err = run_check_method(capsys, str(path), "lst")
    assert code == 2 and "does not register a method 'lst'; it registers: scale_only" in err
    code, out, err = run_check_method(capsys, "no_such_method")
    assert code == 2 and "no registered method 'no_such_method'; registered: frozen, full" in err


def test_the_r2bench_command_dispatches_check_method(tmp_path, capsys):
    assert cli.main(["check-method", str(tmp_path / "nope.py"), "x"]) == 2
    assert "nope.py: no such file" in capsys.readouterr().err


def test_the_example_plugin_satisfies_the_contract(clean_registry, capsys):
    code, out, err = run_check_method(capsys, str(EXAMPLES / "my_method.py"), "my_temporal_adapter", "--no-memory")
    assert code == 0, out + err
