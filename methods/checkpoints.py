"""Backbone/weights consistency: does a local CLIP checkpoint fit the open_clip config it is
about to be loaded into?

A checkpoint holds no activation function, and open_clip's ``ViT-B-32`` config uses
``nn.GELU`` while OpenAI's CLIP was trained with QuickGELU (``ViT-B-32-quickgelu``). Loading
OpenAI weights into ``ViT-B-32`` succeeds, every parameter count agrees, and every feature is
wrong. :func:`check_checkpoint` reads what the file says about itself and refuses a config
that disagrees, naming the configs that fit.

What a file says (``CheckpointInfo``):
* shapes (no tensor data read for safetensors or zip-format pickles): vision width, layers,
  patch size, image size; text width and layers;
* its activation, when known: a TorchScript archive is OpenAI's release format, so QuickGELU;
  a safetensors header may carry ``quick_gelu`` / ``activation`` metadata; a file or folder
  name containing ``quickgelu`` or ``openai`` (open_clip's and timm's naming of OpenAI-style
  weights) means QuickGELU. Otherwise the activation is unknown and only shapes are checked.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import open_clip
import torch

SHAPE_FIELDS = ("vision_width", "vision_layers", "patch_size", "image_size", "text_width", "text_layers")
_VISION_BLOCK = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.")
_TEXT_BLOCK = re.compile(r"^(?:text\.)?transformer\.resblocks\.(\d+)\.")
_QUICK_GELU_NAME = re.compile(r"quick[-_]?gelu|openai", re.IGNORECASE)


CHECKSUM_KEY = "weights_checksum"


def tensors_checksum(tensors) -> str:
    """blake2b over every tensor's name, dtype, shape and raw bytes (names in sorted order)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def safetensors_bytes(tensors, metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save`` with its header's keys in sorted order: the library writes the
    metadata map in an arbitrary order, so the same tensors and metadata could give other
    bytes from one process to the next. (The header keeps its length: only its order changes.)"""
    from safetensors.torch import save
    data = save(dict(tensors), metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(header) > n:          # never expected: keep the library's bytes rather than break the file
        return data
    return data[:8] + header.ljust(n, b" ") + data[8 + n:]


def verify_safetensors(path: str | os.PathLike) -> dict[str, str]:
    """Read a safetensors file whole; if its metadata carries :data:`CHECKSUM_KEY` (the files
    this project writes do), the tensors must match it. Returns the metadata; raises
    ``ValueError`` naming the file when it is unreadable or its weights were changed."""
    from safetensors import SafetensorError
    from safetensors.torch import load
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    except (OSError, SafetensorError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    metadata = header.get("__metadata__") or {}
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and tensors_checksum(tensors) != expected:
        raise ValueError(f"{path}: its weights do not match the checksum it was saved with (damaged or "
                         f"edited file; delete it, or re-create it)")
    return metadata


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    format: str                      # "torchscript" | "safetensors" | "pickle"
    vision_width: int | None = None
    vision_layers: int | None = None
    patch_size: int | None = None
    image_size: int | None = None
    text_width: int | None = None
    text_layers: int | None = None
    quick_gelu: bool | None = None   # None: the file does not say
    activation_source: str = ""      # why ``quick_gelu`` is believed


def is_torchscript(path: str | os.PathLike) -> bool:
    """A zip whose members include TorchScript code (``…/code/`` or ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in z.namelist())


def _shapes(path: Path, fmt: str) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Parameter name → shape, and the file's metadata (safetensors only)."""
    if fmt == "safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {})
    if fmt == "torchscript":
        # torch.load refuses TorchScript archives under weights_only=True; torch.jit.load is
        # their only reader (it runs no pickled Python, only TorchScript deserialisation).
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        # weights_only=True: unpickle tensors and containers only; mmap: read no tensor data.
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:   # legacy (non-zip) pickles cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        return {}, {}
    return {k.removeprefix("module."): tuple(v.shape) for k, v in state.items() if torch.is_tensor(v)}, {}


def _activation(path: Path, fmt: str, metadata: dict[str, str]) -> tuple[bool | None, str]:
    if fmt == "torchscript":
        return True, "a TorchScript archive, OpenAI's release format for CLIP (trained with QuickGELU)"
    if "quick_gelu" in metadata:
        return metadata["quick_gelu"].strip().lower() in ("1", "true", "yes"), "its safetensors metadata 'quick_gelu'"
    if "activation" in metadata:
        return metadata["activation"].replace("_", "").lower() == "quickgelu", "its safetensors metadata 'activation'"
    for part in (path.name, path.parent.name):
        if _QUICK_GELU_NAME.search(part):
            return True, f"its name '{part}' (OpenAI-style weights are QuickGELU)"
    return None, ""


@lru_cache(maxsize=16)
def _inspect(path: str, size: int, mtime: float) -> CheckpointInfo:
    p = Path(path)
    fmt = "safetensors" if p.suffix == ".safetensors" else "torchscript" if is_torchscript(p) else "pickle"
    shapes, metadata = _shapes(p, fmt)
    facts: dict = {}
    conv = shapes.get("visual.conv1.weight")
    if conv is not None and len(conv) == 4:
        facts.update(vision_width=conv[0], patch_size=conv[-1])
        pos = shapes.get("visual.positional_embedding")
        if pos is not None:
            facts["image_size"] = round((pos[0] - 1) ** 0.5) * conv[-1]
    vision_blocks = {int(m.group(1)) for k in shapes if (m := _VISION_BLOCK.match(k))}
    text_blocks = {int(m.group(1)) for k in shapes if (m := _TEXT_BLOCK.match(k))}
    if vision_blocks:
        facts["vision_layers"] = max(vision_blocks) + 1
    if text_blocks:
        facts["text_layers"] = max(text_blocks) + 1
    ln = shapes.get("ln_final.weight") or shapes.get("text.ln_final.weight")
    if ln is not None:
        facts["text_width"] = ln[0]
    quick_gelu, source = _activation(p, fmt, metadata)
    return CheckpointInfo(path=path, format=fmt, quick_gelu=quick_gelu, activation_source=source, **facts)


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """What a checkpoint file says about its architecture (memoised per path, size and mtime)."""
    st = os.stat(path)
    return _inspect(str(path), st.st_size, st.st_mtime)


def config_facts(name: str) -> dict | None:
    """The same facts for an open_clip config (None for configs with timm/HF towers)."""
    cfg = open_clip.get_model_config(name)
    if not cfg:
        return None
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in v or "hf_model_name" in t or not isinstance(v.get("layers"), int):
        return None
    image = v.get("image_size", 224)
    return dict(vision_width=v.get("width", 768), vision_layers=v["layers"], patch_size=v.get("patch_size"),
                image_size=image if isinstance(image, int) else image[0], text_width=t.get("width", 512),
                text_layers=t.get("layers", 12), quick_gelu=bool(cfg.get("quick_gelu", False)))


def _fits(info: CheckpointInfo, facts: dict) -> list[str]:
    """The ways ``info`` disagrees with ``facts`` (empty if it fits)."""
    problems = [f"{f.replace('_', ' ')}: checkpoint {getattr(info, f)}, config {facts[f]}"
                for f in SHAPE_FIELDS if getattr(info, f) is not None and getattr(info, f) != facts[f]]
    if info.quick_gelu is not None and info.quick_gelu != facts["quick_gelu"]:
        want, have = ("QuickGELU", "nn.GELU") if info.quick_gelu else ("nn.GELU", "QuickGELU")
        problems.insert(0, f"activation: the checkpoint needs {want} ({info.activation_source}), "
                           f"the config uses {have}")
    return problems


def fitting_configs(info: CheckpointInfo) -> list[str]:
    """open_clip config names whose architecture and activation fit the checkpoint."""
    return [m for m in open_clip.list_models() if (f := config_facts(m)) is not None and not _fits(info, f)]


def check_checkpoint(name: str, weights: str | os.PathLike) -> dict:
    """Refuse a checkpoint that does not fit the open_clip config ``name`` (BackboneError saying
    what to pass instead); return the ``open_clip.create_model`` keyword arguments that load it."""
    from r2bench.methods.backbone import BackboneError   # defined there; imported late (backbone imports us)
    try:
        info = inspect_checkpoint(weights)
    except Exception as e:     # torch/safetensors/zip errors of a damaged file: name the file, not their advice
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise BackboneError(f"CLIP weights '{weights}': not a readable checkpoint (damaged, truncated or not a "
                            f"checkpoint: {type(e).__name__}{': ' + first if first else ''}); re-create or "
                            f"re-download the file") from None
    facts = config_facts(name)
    problems = _fits(info, facts) if facts is not None else []
    if problems:
        fits = sorted(fitting_configs(info), key=lambda m: (not m.startswith(name), len(m), m))
        if fits:
            hint = f"pass the backbone config {fits[0]!r}" + (f" (also fitting: {', '.join(fits[1:5])})" if fits[1:] else "")
        elif len(problems) == 1 and info.quick_gelu is not None and info.quick_gelu != facts["quick_gelu"]:
            hint = (f"no registered config fits: add a copy of '{name}' with \"quick_gelu\": "
                    f"{str(info.quick_gelu).lower()} to methods/model_configs/")
        else:
            hint = "no registered open_clip config fits it: add one to methods/model_configs/"
        raise BackboneError(f"CLIP weights '{weights}' do not fit open_clip config '{name}': "
                            + "; ".join(problems) + f" — {hint} (run_all.py --backbone NAME)")
    # open_clip reads checkpoints with torch.load(weights_only=True), which refuses TorchScript
    # archives; weights_only=False makes torch.load hand the archive to torch.jit.load.
    return dict(weights_only=False) if info.format == "torchscript" else {}
