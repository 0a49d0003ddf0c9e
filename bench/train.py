"""The training loop and inference, one function each, readable top to bottom.

AdamW (weight decay 1e-4), linear warm-up, LR × 0.1 at ``lr_drop_epoch``, gradient clipping,
FP16 autocast on CUDA. A seed makes CPU runs repeat exactly. Checkpoints hold only the
learnable parameters, as safetensors.

An *epoch* is what the public configs call one: one shuffled pass over the training set
repeated ``repeat`` times (nncore's RepeatDataset; QVHighlights: 4, so 30 epochs are 120
passes and the LR drop at epoch 20 comes after 80). ``warmup_iters`` counts iterations
(batches), ``lr_drop_epoch`` epochs, as in paper Table 8. See docs/protocols.md.
"""
from __future__ import annotations

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as save_safetensors
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from datasets.io import atomic_write
from datasets.vtg import VTGDataset, collate
from methods.model import TransferModel


@dataclass
class TrainConfig:
    epochs: int = 30            # epochs of ``repeat`` passes each (see the module docstring)
    repeat: int = 1             # passes over the training set per epoch (QVHighlights: 4)
    batch_size: int = 32
    eval_batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    lr_drop_epoch: int | None = 20
    grad_clip: float = 35.0
    amp: bool = True            # FP16 autocast, CUDA only
    seed: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else
                [x.to(device) for x in v] if k == "windows" else v) for k, v in batch.items()}


def autocast(device: torch.device, enabled: bool):
    return torch.autocast("cuda", dtype=torch.float16) if enabled and device.type == "cuda" else nullcontext()


def make_loader(dataset: VTGDataset, batch_size: int, shuffle: bool, seed: int,
                items: Dataset | None = None) -> DataLoader:
    """Batches of ``items`` (default: ``dataset``; e.g. a repeated or filtered view of it)."""
    return DataLoader(dataset if items is None else items, batch_size=batch_size, shuffle=shuffle,
                      collate_fn=partial(collate, fps=dataset.fps),
                      generator=torch.Generator().manual_seed(seed), num_workers=0)


def training_items(dataset: VTGDataset, repeat: int, min_seconds: float = 0.0) -> Dataset:
    """What one epoch iterates: the videos of at least ``min_seconds`` (the public code drops
    shorter ones from training), the whole set ``repeat`` times (shuffled together)."""
    keep = [i for i, s in enumerate(dataset.samples) if s.duration >= min_seconds]
    if not keep:
        raise ValueError(f"no training video lasts at least {min_seconds} s (min_train_seconds)")
    items = dataset if len(keep) == len(dataset) else Subset(dataset, keep)
    return items if repeat == 1 else ConcatDataset([items] * repeat)


def learnable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train(model: TransferModel, dataset: VTGDataset, cfg: TrainConfig, device: torch.device,
          progress: bool = True) -> dict:
    """Train ``model`` in place; returns seconds spent, videos seen and the last losses."""
    seed_everything(cfg.seed)
    items = training_items(dataset, cfg.repeat, getattr(model.head.cfg, "min_train_seconds", 0.0))
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, items=items)
    optimizer = torch.optim.AdamW(learnable(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    iters_per_epoch = len(loader)

    def lr_factor(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup_iters) if cfg.warmup_iters else 1.0
        dropped = cfg.lr_drop_epoch is not None and it >= cfg.lr_drop_epoch * iters_per_epoch
        return warm * (0.1 if dropped else 1.0)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    sampler = torch.Generator().manual_seed(cfg.seed)   # the saliency loss's positive-clip draws
    model.to(device).train()
    start, seen, losses = time.perf_counter(), 0, {}
    bar = tqdm(total=cfg.epochs * iters_per_epoch, desc="training", disable=not progress)
    for epoch in range(cfg.epochs):
        for batch in loader:
            batch = to_device(batch, device)
            with autocast(device, cfg.amp):
                out = model(batch)
                losses = model.loss(out, batch, generator=sampler)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(learnable(model), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += len(batch["qid"])
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses['total'].item():.3f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return dict(seconds=time.perf_counter() - start, videos=seen,
                losses={k: v.item() for k, v in losses.items()})


@torch.no_grad()
def predict(model: TransferModel, dataset: VTGDataset, batch_size: int, device: torch.device,
            amp: bool = True, progress: bool = True) -> tuple[list[dict], float]:
    """Moment-DETR submission lines for every sample, and the seconds it took."""
    model.to(device).eval()
    start, lines = time.perf_counter(), []
    for batch in tqdm(make_loader(dataset, batch_size, shuffle=False, seed=0), desc="evaluating",
                      disable=not progress):
        batch = to_device(batch, device)
        with autocast(device, amp):
            lines += model.predict(model(batch), batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return lines, time.perf_counter() - start


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """The learnable parameters only, as safetensors, written atomically."""
    tensors = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    return atomic_write(path, save_safetensors(tensors))
