"""Backbone/weights consistency: does a local CLIP checkpoint fit the open_clip config it is
about to be loaded into?

A checkpoint holds no activation function, and open_clip's ``ViT-B-32`` config uses
``nn.GELU`` while OpenAI's CLIP was trained with QuickGELU (``ViT-B-32-quickgelu``). Loading
OpenAI weights into ``ViT-B-32`` succeeds, every parameter count agrees, and every feature is
wrong. :func:`check_checkpoint` reads what the file says about itself and refuses a config
that disagrees, naming the configs that fit.

What a file says (``CheckpointInfo``), read without touching tensor data (the safetensors
header; a torch zip's pickled state with memory-mapped storages; a TorchScript archive's
``data.pkl``, interpreted by :func:`_pickled_tensors`, which imports and calls nothing: tensor
records become shapes, anything else is refused):
* shapes: vision width, layers, patch size, image size; text width and layers;
* its activation, when known. Plain state dicts use OpenAI's parameter names whether they hold
  OpenAI's weights or open_clip's own (LAION, DataComp: nn.GELU), so names of parameters say
  nothing; these do, in this order:
  - the file's own word: safetensors metadata ``quick_gelu`` / ``activation``, or entries
    ``quick_gelu`` / ``activation`` beside the ``state_dict`` a torch pickle wraps;
  - a TorchScript archive: OpenAI's release format, so QuickGELU;
  - OpenAI's release model saved as a state dict: its ``input_resolution``,
    ``context_length`` and ``vocab_size`` entries (no open_clip model has them);
  - OpenAI's release precision: projections in fp16 beside LayerNorms and embeddings in
    fp32 (the release's ``convert_weights``; a model cast with ``.half()`` has fp16 LayerNorms);
  - a file or folder name containing ``quickgelu`` or ``openai`` (open_clip's and timm's
    naming of OpenAI-style weights).
  Otherwise the activation is unknown and only shapes are checked; loaded into a GELU config
  that OpenAI also released weights for (``ViT-B-32``), such a file gets a one-line warning
  naming the QuickGELU config, in case it is OpenAI's.

:func:`load_weights` then reads the file once, whole (PyTorch's known warnings about these
loads silenced there, not elsewhere), and loads it strictly: a file that does not fit is one
line naming the file, its first offending keys and what to do.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from pickletools import genops   # a tokeniser of pickles: it builds no object and imports nothing
from typing import NamedTuple

import open_clip
import torch

log = logging.getLogger(__name__)

SHAPE_FIELDS = ("vision_width", "vision_layers", "patch_size", "image_size", "text_width", "text_layers")
_VISION_BLOCK = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.")
_TEXT_BLOCK = re.compile(r"^(?:text\.)?transformer\.resblocks\.(\d+)\.")
_QUICK_GELU_NAME = re.compile(r"quick[-_]?gelu|openai", re.IGNORECASE)
# what OpenAI's release model holds beside its parameters (clip.model.build_model and open_clip's
# loader drop them); no open_clip model has them
OPENAI_ATTRIBUTES = ("input_resolution", "context_length", "vocab_size")
# OpenAI's release stores these in fp16 (its convert_weights) and these in fp32
_OPENAI_HALF = ("visual.conv1.weight", "visual.proj", "text_projection")
_OPENAI_FULL = ("visual.ln_pre.weight", "ln_final.weight", "positional_embedding", "token_embedding.weight")


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
    """Check a safetensors file: its header and sizes always; if its metadata carries
    :data:`CHECKSUM_KEY` (the files this project writes do), every tensor is read and must match
    it. A file without a checksum has nothing to compare its bytes with, so its tensors are not
    read here (:func:`load_weights` reads them once). Returns the metadata; raises
    ``ValueError`` naming the file when it is unreadable or its weights were changed."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:      # header, offsets and the file's length
            metadata = dict(f.metadata() or {})
        expected = metadata.get(CHECKSUM_KEY)
        tensors = load(path.read_bytes()) if expected is not None else None
    except (OSError, SafetensorError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
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


class TensorRecord(NamedTuple):
    """What a checkpoint says of one tensor without reading it."""
    shape: tuple[int, ...]
    dtype: str                       # "float16", "float32", … ("" when unknown)


# ---- TorchScript archives: the pickled state, interpreted without importing or calling anything

_STORAGE_DTYPES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
                   "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                   "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
_TENSOR_BUILDERS = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
                    ("torch._utils", "_rebuild_parameter")}
_PASS_THROUGH = {("torch.jit._pickle", "restore_type_tag"), ("torch.jit._pickle", "build_intlist"),
                 ("torch.jit._pickle", "build_floatlist"), ("torch.jit._pickle", "build_boollist"),
                 ("torch.jit._pickle", "build_tensorlist"), ("torch.jit._pickle", "build_doublelist")}
_VALUES = {"BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4", "BINFLOAT", "FLOAT", "BINUNICODE",
           "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BINSTRING",
           "SHORT_BINSTRING", "STRING"}


class _Global(NamedTuple):
    module: str
    name: str


class _Object:
    """An instance of a TorchScript class (``__torch__.…``): its attributes, nothing else."""

    def __init__(self, cls: _Global):
        self.cls, self.state = cls, None


class _Storage(NamedTuple):
    dtype: str


class RefusedPickle(ValueError):
    """A pickle asked for something a TorchScript archive's state never needs."""


def _pickled_tensors(data: bytes) -> dict[str, TensorRecord]:
    """``name → TensorRecord`` of every tensor attribute in a TorchScript archive's ``data.pkl``
    (dotted module paths, as ``state_dict`` names them; tensor attributes that are neither
    parameters nor buffers, e.g. an attention mask, come along). The pickle is interpreted
    opcode by opcode: classes are names, storages are their dtypes, tensor records their
    shapes; any other global called or built, or an opcode outside TorchScript's pickles, is
    refused (``RefusedPickle``). Nothing is imported, called or read beyond ``data``."""
    stack: list = []
    marks: list[int] = []
    memo: dict = {}

    def pop_mark() -> list:
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def call(fn, args):
        if not isinstance(fn, _Global) or not isinstance(args, tuple):
            raise RefusedPickle(f"refused a call of {fn!r}")
        if (fn.module, fn.name) in _TENSOR_BUILDERS:
            if fn.name == "_rebuild_parameter":
                return args[0]
            storage, size = args[0], args[2]
            if not isinstance(storage, _Storage) or not all(isinstance(n, int) for n in size):
                raise RefusedPickle("a tensor record without a storage or shape")
            return TensorRecord(tuple(size), storage.dtype)
        if (fn.module, fn.name) in _PASS_THROUGH:
            return args[0] if args else None
        if (fn.module, fn.name) == ("collections", "OrderedDict") and not args:
            return {}
        raise RefusedPickle(f"refused global '{fn.module}.{fn.name}' (not in a TorchScript archive's state)")

    for op, arg, _ in genops(data):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            break
        if name in _VALUES:
            stack.append(arg)
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(_Global(module, attr))
        elif name == "MARK":
            marks.append(len(stack))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif name in ("SETITEM", "SETITEMS"):
            items = [stack.pop(-2), stack.pop()] if name == "SETITEM" else pop_mark()
            if not isinstance(stack[-1], dict):
                raise RefusedPickle("items set on something not a dict")
            stack[-1].update(zip(items[::2], items[1::2]))
        elif name in ("APPEND", "APPENDS"):
            items = [stack.pop()] if name == "APPEND" else pop_mark()
            if not isinstance(stack[-1], list):
                raise RefusedPickle("items appended to something not a list")
            stack[-1].extend(items)
        elif name == "BINPERSID":
            pid = stack.pop()
            if not (isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "storage" and isinstance(pid[1], _Global)
                    and pid[1].module == "torch" and pid[1].name in _STORAGE_DTYPES):
                raise RefusedPickle(f"refused persistent id {pid!r}")
            stack.append(_Storage(_STORAGE_DTYPES[pid[1].name]))
        elif name == "REDUCE":
            args = stack.pop()
            stack.append(call(stack.pop(), args))
        elif name == "NEWOBJ":
            args, cls = stack.pop(), stack.pop()
            if not (isinstance(cls, _Global) and cls.module.startswith("__torch__") and args == ()):
                raise RefusedPickle(f"refused an instance of {cls!r}")
            stack.append(_Object(cls))
        elif name == "BUILD":
            state = stack.pop()
            if not isinstance(stack[-1], _Object) or stack[-1].state is not None:
                raise RefusedPickle("refused to set the state of something not a TorchScript object")
            stack[-1].state = state
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        else:
            raise RefusedPickle(f"refused pickle opcode {name}")
    if len(stack) != 1 or not isinstance(stack[0], _Object):
        raise RefusedPickle("the pickle does not hold a TorchScript module")
    found: dict[str, TensorRecord] = {}
    seen: set[int] = set()

    def walk(obj: _Object, prefix: str) -> None:
        if id(obj) in seen or not isinstance(obj.state, dict):
            return
        seen.add(id(obj))
        for key, value in obj.state.items():
            if isinstance(value, TensorRecord):
                found[prefix + str(key)] = value
            elif isinstance(value, _Object):
                walk(value, f"{prefix}{key}.")

    walk(stack[0], "")
    return found


def _torchscript_tensors(path: Path) -> dict[str, TensorRecord]:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(names) != 1:
            raise ValueError("a TorchScript archive without one data.pkl")
        return _pickled_tensors(z.read(names[0]))


@contextmanager
def _known_load_warnings_silenced():
    """The warning PyTorch prints on every load of a file we read through ``torch.jit.load`` on
    purpose: its deprecation notice (OpenAI's release files are TorchScript archives, and
    ``torch.jit.load`` is their reader). ``torch.load``'s "dispatching to torch.jit.load" no
    longer arises: archives are never handed to ``torch.load``. Other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
        yield


def _torch_load(path: Path, mmap: bool):
    """``torch.load`` with weights_only=True (tensors and containers only), memory-mapped where
    the file allows it (zip format: no tensor data read until used)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError:
        if not mmap:
            raise
        return torch.load(path, map_location="cpu", weights_only=True)   # legacy (non-zip) pickles


def _unwrap(obj) -> tuple[dict, dict[str, str]]:
    """A loaded checkpoint → (its state dict, the words it says about itself beside it)."""
    said = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        said = {k: str(obj[k]) for k in ("quick_gelu", "activation") if isinstance(obj.get(k), (str, bool, int))}
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        return {}, said
    return {k.removeprefix("module."): v for k, v in obj.items() if torch.is_tensor(v)}, said


def _dtype_name(dtype) -> str:
    text = str(dtype).removeprefix("torch.")
    return {"F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16", "I64": "int64",
            "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}.get(text, text)


def _tensors(path: Path, fmt: str) -> tuple[dict[str, TensorRecord], dict[str, str]]:
    """Parameter name → TensorRecord, and what the file says about itself (metadata), reading
    no tensor data."""
    if fmt == "safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return ({k: TensorRecord(tuple(f.get_slice(k).get_shape()), _dtype_name(f.get_slice(k).get_dtype()))
                     for k in f.keys()}, dict(f.metadata() or {}))
    if fmt == "torchscript":
        return _torchscript_tensors(path), {}
    state, said = _unwrap(_torch_load(path, mmap=True))
    return {k: TensorRecord(tuple(v.shape), _dtype_name(v.dtype)) for k, v in state.items()}, said


def _activation(path: Path, fmt: str, metadata: dict[str, str], tensors: dict[str, TensorRecord]
                ) -> tuple[bool | None, str]:
    if "quick_gelu" in metadata:
        return metadata["quick_gelu"].strip().lower() in ("1", "true", "yes"), "the file's own 'quick_gelu' entry"
    if "activation" in metadata:
        return (metadata["activation"].replace("_", "").replace("-", "").lower() == "quickgelu",
                "the file's own 'activation' entry")
    if fmt == "torchscript":
        return True, "a TorchScript archive, OpenAI's release format for CLIP (trained with QuickGELU)"
    attributes = [k for k in OPENAI_ATTRIBUTES if k in tensors]
    if attributes:
        return True, (f"its {', '.join(map(repr, attributes))} entries: a state dict of OpenAI's release model "
                      f"(trained with QuickGELU)")
    dtypes = {k: tensors[k].dtype for k in _OPENAI_HALF + _OPENAI_FULL if k in tensors}
    if any(dtypes.get(k) == "float16" for k in _OPENAI_HALF) and any(dtypes.get(k) == "float32" for k in _OPENAI_FULL):
        return True, ("OpenAI's release precision, fp16 projections beside fp32 LayerNorms and embeddings (not "
                      "OpenAI's? say so in the file: an 'activation' entry)")
    for part in (path.name, path.parent.name):
        if _QUICK_GELU_NAME.search(part):
            return True, f"its name '{part}' (OpenAI-style weights are QuickGELU)"
    return None, ""


@lru_cache(maxsize=16)
def _inspect(path: str, size: int, mtime: float) -> CheckpointInfo:
    p = Path(path)
    fmt = "safetensors" if p.suffix == ".safetensors" else "torchscript" if is_torchscript(p) else "pickle"
    tensors, metadata = _tensors(p, fmt)
    shapes = {k: t.shape for k, t in tensors.items()}
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
    quick_gelu, source = _activation(p, fmt, metadata, tensors)
    return CheckpointInfo(path=path, format=fmt, quick_gelu=quick_gelu, activation_source=source, **facts)


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """What a checkpoint file says about its architecture (memoised per path, size and mtime);
    no tensor data is read."""
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


_WARNED: set[tuple[str, str]] = set()     # (weights, config) warned about once per process


def _openai_release_config(name: str) -> str | None:
    """For a GELU config that OpenAI also released weights of (open_clip's 'openai' tag, e.g.
    ``ViT-B-32``), its registered QuickGELU twin (``ViT-B-32-quickgelu``)."""
    try:
        released = "openai" in open_clip.list_pretrained_tags_by_model(name)
    except Exception:       # an open_clip without the tag listing: nothing to say
        return None
    twin = f"{name}-quickgelu"
    return twin if released and twin in open_clip.list_models() else None


def check_checkpoint(name: str, weights: str | os.PathLike) -> CheckpointInfo:
    """Refuse a checkpoint that does not fit the open_clip config ``name`` (BackboneError saying
    what to pass instead); return what the file says about itself. Weights that do not say
    their activation, loaded into a GELU config that OpenAI also released weights for, get a
    one-line warning naming the QuickGELU config."""
    from r2bench.methods.backbone import BackboneError   # defined there; imported late (backbone imports us)
    try:
        info = inspect_checkpoint(weights)
    except Exception as e:     # torch/safetensors/zip/pickle errors of a damaged file: name the file, not their advice
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
    twin = _openai_release_config(name) if facts is not None and info.quick_gelu is None and not facts["quick_gelu"] else None
    if twin is not None and (str(weights), name) not in _WARNED:
        _WARNED.add((str(weights), name))
        log.warning("CLIP weights '%s' do not say their activation; %s uses nn.GELU, right for open_clip's own "
                    "(LAION, DataComp) weights: if these are OpenAI's, pass the backbone config '%s'", weights, name, twin)
    return info


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, read whole, once: safetensors; a TorchScript archive (OpenAI's
    release format) through ``torch.jit.load`` (TorchScript deserialisation, no pickled Python);
    anything else through ``torch.load(weights_only=True)``. A wrapping ``state_dict`` and
    ``module.`` prefixes are removed, and so are OpenAI's non-parameter entries
    (:data:`OPENAI_ATTRIBUTES`). PyTorch's known warnings about these loads are silenced here."""
    path = Path(path)
    fmt = inspect_checkpoint(path).format
    with _known_load_warnings_silenced():
        if fmt == "safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        elif fmt == "torchscript":
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = _torch_load(path, mmap=True)
    state, _ = _unwrap(state)
    return {k: v for k, v in state.items() if k not in OPENAI_ATTRIBUTES}


def _as_open_clip(model: torch.nn.Module, state: dict) -> dict:
    """The adjustments open_clip's own checkpoint loader makes before a strict load: text keys
    under ``text.`` for its custom-text models, a scalar ``logit_scale`` shaped as the model's,
    position embeddings resized to the model's (the shape check allows only what it can resize)."""
    from open_clip import model as oc
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = oc.convert_to_custom_text_state_dict(state)
    for name in ("logit_scale", "logit_bias"):
        own = getattr(model, name, None)
        if name in state and own is not None and own.ndim != state[name].ndim:
            state[name] = state[name].reshape(own.shape)
    if getattr(model, "logit_bias", None) is not None and "logit_bias" not in state and "logit_scale" in state:
        state["logit_bias"] = torch.zeros_like(state["logit_scale"])
    oc.resize_pos_embed(state, model)
    if hasattr(oc, "resize_text_pos_embed"):
        oc.resize_text_pos_embed(state, model)
    return state


def _first(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" … ({len(names)} in all)" if len(names) > n else "")


def load_weights(model: torch.nn.Module, name: str, weights: str | os.PathLike) -> None:
    """Load the checkpoint ``weights`` into ``model`` (open_clip config ``name``) strictly. A
    file whose keys or shapes do not match is one ``BackboneError`` line: the file, the first
    few missing, unexpected and mis-shaped keys, and what to do."""
    from r2bench.methods.backbone import BackboneError
    state = _as_open_clip(model, read_state_dict(weights))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (checkpoint {tuple(state[k].shape)}, config {tuple(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = ([f"missing {_first(missing)}"] if missing else []) + \
                   ([f"unexpected {_first(unexpected)}"] if unexpected else []) + \
                   ([f"other shapes: {_first(shapes, 2)}"] if shapes else [])
        hint = ("pass a whole CLIP's weights (both towers, as open_clip or OpenAI save them) of this "
                "architecture, or add a config that matches the file to methods/model_configs/")
        raise BackboneError(f"CLIP weights '{weights}' do not load into open_clip config '{name}': "
                            + "; ".join(problems) + f" — {hint}")
    model.load_state_dict(state, strict=True)
