"""The training recipe, read top to bottom: optimizer from config, one training step, the loop,
inference and checkpoints.

* Optimizer: AdamW over the method's parameter groups (``TransferModel.param_groups``: each
  group may scale the learning rate or set its own weight decay), weight decay 1e-4.
* Schedule: linear warm-up over ``warmup_iters`` iterations, then LR × 0.1 from epoch
  ``lr_drop_epoch`` on.
* An **epoch** is one pass over the training set repeated ``repeat`` times (the public
  QVHighlights config repeats it 4×, so its 30 epochs are 120 passes and its LR drop at epoch 20
  is pass 80); warm-up counts iterations, the LR drop counts epochs, as in the paper's Table 8.
* :func:`train_step` — forward, the five losses, backward, gradient clipping (35), optimizer
  step, FP16 autocast on CUDA — is the one step used by training *and* by the memory and
  throughput measurements (``bench.run``), so the memory column measures what the suite trains.
* A seed makes CPU runs repeat exactly. Checkpoints hold only what a method learns
  (``TransferModel.learnable_state_dict``), as safetensors.
"""
from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from datasets.io import atomic_write
from datasets.vtg import VTGDataset, collate
from methods.model import TransferModel


@dataclass
class TrainConfig:
    """The training preset (paper Table 8); datasets set their own values."""

    epochs: int = 30
    batch_size: int = 32
    eval_batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    lr_drop_epoch: int | None = 20
    grad_clip: float = 35.0
    amp: bool = True            # FP16 autocast, CUDA only
    repeat: int = 1             # passes over the training set per epoch
    seed: int = 0

    def __post_init__(self):
        positive = dict(epochs=self.epochs, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                        repeat=self.repeat)
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"training setting {name} must be an integer ≥ 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"training setting lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0 or self.warmup_iters < 0 or self.grad_clip <= 0:
            raise ValueError("weight_decay and warmup_iters must be ≥ 0 and grad_clip > 0, got "
                             f"{self.weight_decay}, {self.warmup_iters}, {self.grad_clip}")
        if self.lr_drop_epoch is not None and self.lr_drop_epoch < 0:
            raise ValueError(f"lr_drop_epoch must be ≥ 0 or None, got {self.lr_drop_epoch}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class NonFiniteLoss(FloatingPointError):
    """A loss turned NaN or infinite; carries the step and every loss term."""

    def __init__(self, step: int, epoch: int, losses: dict[str, float]):
        self.step, self.epoch, self.losses = step, epoch, losses
        terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        super().__init__(f"non-finite loss at step {step} (epoch {epoch}): {terms}")


# ---- the pieces -----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    def move(v):
        if torch.is_tensor(v):
            return v.to(device, non_blocking=True)
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        if isinstance(v, list) and v and torch.is_tensor(v[0]):
            return [x.to(device) for x in v]
        return v
    return {k: move(v) for k, v in batch.items()}


def autocast_for(device: torch.device, enabled: bool) -> Callable:
    """FP16 autocast on CUDA when enabled; nothing elsewhere (CPU training stays fp32)."""
    if enabled and device.type == "cuda":
        return partial(torch.autocast, "cuda", dtype=torch.float16)
    return nullcontext


def make_loader(dataset: VTGDataset, batch_size: int, shuffle: bool, seed: int, repeat: int = 1) -> DataLoader:
    """Batches in a seeded order; ``repeat`` > 1 chains that many shuffled passes into one epoch."""
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, num_samples=len(dataset) * repeat, generator=generator) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=partial(collate, fps=dataset.fps),
                      num_workers=0)


def build_optimizer(model: TransferModel, cfg: TrainConfig, **kwargs) -> torch.optim.AdamW:
    """AdamW over the model's parameter groups; every learnable parameter must be in exactly one."""
    groups = model.param_groups()
    learnable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups for p in g.params]
    if len(grouped) != len(set(grouped)) or set(grouped) != learnable:
        raise ValueError(f"parameter groups {[g.name for g in groups]} must hold every learnable parameter once "
                         f"({len(learnable)} learnable, {len(grouped)} grouped, {len(set(grouped))} distinct)")
    return torch.optim.AdamW(
        [dict(params=g.params, lr=cfg.lr * g.lr_scale, name=g.name,
              weight_decay=cfg.weight_decay if g.weight_decay is None else g.weight_decay) for g in groups if g.params],
        lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def lr_factor(cfg: TrainConfig, iters_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_iters`` iterations, × 0.1 from epoch ``lr_drop_epoch`` on."""
    def factor(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup_iters) if cfg.warmup_iters else 1.0
        dropped = cfg.lr_drop_epoch is not None and it >= cfg.lr_drop_epoch * iters_per_epoch
        return warm * (0.1 if dropped else 1.0)
    return factor


@dataclass
class StepState:
    """Everything one training step updates besides the model."""

    optimizer: torch.optim.Optimizer
    grad_clip: float
    autocast: Callable = nullcontext
    scaler: torch.amp.GradScaler = field(default_factory=lambda: torch.amp.GradScaler("cuda", enabled=False))
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    generator: torch.Generator | None = None      # the saliency loss's positive-clip draws
    step: int = 0


def make_step_state(model: TransferModel, cfg: TrainConfig, device: torch.device, iters_per_epoch: int | None = None,
                    autocast: Callable | None = None) -> StepState:
    """Optimizer (+ schedule when ``iters_per_epoch`` is given), grad scaler and autocast for ``device``."""
    optimizer = build_optimizer(model, cfg)
    scheduler = (torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, iters_per_epoch))
                 if iters_per_epoch else None)
    return StepState(optimizer, cfg.grad_clip, autocast or autocast_for(device, cfg.amp),
                     torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda"), scheduler,
                     torch.Generator().manual_seed(cfg.seed))


def train_step(model: TransferModel, batch: dict, state: StepState) -> dict[str, torch.Tensor]:
    """One optimisation step: forward, losses, backward, clipping, optimizer (and schedule) step."""
    with state.autocast():
        out = model(batch)
        losses = model.loss(out, batch, generator=state.generator)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(losses["total"]).backward()
    state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_([p for g in state.optimizer.param_groups for p in g["params"]], state.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.scheduler is not None:
        state.scheduler.step()
    state.step += 1
    return losses


# ---- the loop -------------------------------------------------------------------------------
def train(model: TransferModel, dataset: VTGDataset, cfg: TrainConfig, device: torch.device,
          progress: bool = True) -> dict:
    """Train ``model`` in place; returns seconds spent, videos seen and the last losses.
    A non-finite loss stops training at once (:class:`NonFiniteLoss`)."""
    seed_everything(cfg.seed)
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, repeat=cfg.repeat)
    model.to(device).train()
    state = make_step_state(model, cfg, device, iters_per_epoch=len(loader))
    start, seen, losses = time.perf_counter(), 0, {}
    bar = tqdm(total=cfg.epochs * len(loader), desc="training", disable=not progress)
    for epoch in range(cfg.epochs):
        for batch in loader:
            losses = {k: v.detach() for k, v in train_step(model, to_device(batch, device), state).items()}
            total = losses["total"].item()
            if not math.isfinite(total):
                raise NonFiniteLoss(state.step, epoch + 1, {k: v.item() for k, v in losses.items()})
            seen += len(batch["qid"])
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{total:.3f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return dict(seconds=time.perf_counter() - start, videos=seen, steps=state.step,
                losses={k: v.item() for k, v in losses.items()})


@torch.no_grad()
def predict(model: TransferModel, dataset: VTGDataset, batch_size: int, device: torch.device,
            amp: bool = True, progress: bool = True) -> tuple[list[dict], float]:
    """Moment-DETR submission lines for every sample, and the seconds it took."""
    model.to(device).eval()
    autocast = autocast_for(device, amp)
    start, lines = time.perf_counter(), []
    for batch in tqdm(make_loader(dataset, batch_size, shuffle=False, seed=0), desc="evaluating",
                      disable=not progress):
        batch = to_device(batch, device)
        with autocast():
            lines += model.predict(model(batch), batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return lines, time.perf_counter() - start


# ---- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(model: TransferModel, path: Path) -> Path:
    """What the method learned (``learnable_state_dict``), as safetensors, written atomically."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.learnable_state_dict().items()}
    return atomic_write(path, save_safetensors(tensors))


def load_checkpoint(model: TransferModel, path: str | Path) -> None:
    """Load a checkpoint written by :func:`save_checkpoint`; a damaged or foreign file is an
    error naming it."""
    path = Path(path)
    try:
        tensors = load_safetensors(path.read_bytes())
    except (OSError, SafetensorError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    try:
        model.load_learnable_state_dict(tensors)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
