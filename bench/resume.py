"""Epoch checkpoints, so an interrupted run (Ctrl-C, ``kill -9``, a Slurm time limit) goes on
from its last finished epoch instead of starting over.

One file per run, ``runs/<run_id>/resume.safetensors``, rewritten atomically at the end of
every epoch: the tensors (what the method learned, the optimizer's moments, the random
number generators' states) in safetensors, and everything else as JSON in its header
metadata — the epoch, the step, the optimizer's parameter groups, the LR schedule, the grad
scaler, the progress counters, the run id and code version it belongs to, and a checksum of
the tensors. No pickle. A file that is damaged (checksum), of another run or of other code
is refused with its path named, and the run starts over (:class:`ResumeRefused`).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from r2bench.core.io import atomic_write
from r2bench.methods.checkpoints import tensors_checksum

log = logging.getLogger(__name__)

FORMAT = "r2bench-resume-1"
RESUME_NAME = "resume.safetensors"


class ResumeRefused(ValueError):
    """An epoch checkpoint that cannot be used (damaged, another run's, other code)."""


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    return tensors, dict(numpy=[kind, int(pos), int(has_gauss), float(gauss)],
                         python=[py_version, list(py_state), py_gauss])


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, state, py_gauss = meta["python"]
    random.setstate((version, tuple(state), py_gauss))


def save_resume(path: Path, model, state, epoch: int, progress: dict, tag: dict) -> Path:
    """Write the epoch checkpoint of ``model`` and its :class:`bench.train.StepState` after
    ``epoch`` finished epochs; ``progress``: counters to carry on (seconds, videos);
    ``tag``: what the checkpoint must match to be used (run id, code version)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.learnable_state_dict().items()}
    opt = state.optimizer.state_dict()
    scalars = {}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    rng_tensors, rng_meta = _rng_state()
    tensors.update(rng_tensors)
    meta = dict(format=FORMAT, tag=tag, epoch=epoch, step=state.step, progress=progress,
                param_groups=opt["param_groups"], optimizer_scalars=scalars,
                scheduler=state.scheduler.state_dict() if state.scheduler is not None else None,
                scaler=state.scaler.state_dict() if state.scaler.is_enabled() else None, rng=rng_meta)
    blob = save_safetensors(tensors, metadata={"resume": json.dumps(meta), "checksum": tensors_checksum(tensors)})
    return atomic_write(path, blob)


def read_resume(path: Path, tag: dict) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(tensors, metadata) of the epoch checkpoint at ``path``, None if there is none;
    :class:`ResumeRefused` naming the file if it cannot be used for ``tag``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        tensors = load_safetensors(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
        meta = json.loads(header["resume"])
    except (SafetensorError, ValueError, KeyError, TypeError) as e:
        raise ResumeRefused(f"{path}: unreadable epoch checkpoint ({type(e).__name__}: {e})") from None
    if header.get("checksum") != tensors_checksum(tensors):
        raise ResumeRefused(f"{path}: epoch checkpoint damaged (its tensors do not match their checksum)")
    if meta.get("format") != FORMAT:
        raise ResumeRefused(f"{path}: epoch checkpoint of format {meta.get('format')!r}, expected {FORMAT!r}")
    for key, value in tag.items():
        if meta["tag"].get(key) != value:
            raise ResumeRefused(f"{path}: epoch checkpoint made with {key} {meta['tag'].get(key)!r}, this run has "
                                f"{value!r}")
    return tensors, meta


def peek_epoch(path: Path) -> int | None:
    """The finished epochs an epoch checkpoint holds (header only), or None."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            return int(json.loads(json.loads(f.read(n))["__metadata__"]["resume"])["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def restore(tensors: dict[str, torch.Tensor], meta: dict, model, state) -> None:
    """Load an epoch checkpoint read by :func:`read_resume` into ``model`` and ``state``."""
    model.load_learnable_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, idx, key = name.split(".", 2)
            opt_state.setdefault(int(idx), {})[key] = value
    for name, value in meta["optimizer_scalars"].items():
        idx, key = name.split(".", 1)
        opt_state.setdefault(int(idx), {})[key] = value
    state.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    if meta["scheduler"] is not None and state.scheduler is not None:
        state.scheduler.load_state_dict(meta["scheduler"])
    if meta["scaler"] is not None and state.scaler.is_enabled():
        state.scaler.load_state_dict(meta["scaler"])
    state.step = meta["step"]
    _set_rng_state(tensors, meta["rng"])
