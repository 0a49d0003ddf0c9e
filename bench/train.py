"""The training recipe, read top to bottom: optimizer from config, one training step, the loop,
inference and checkpoints.

* Optimizer: AdamW over the method's parameter groups (``TransferModel.param_groups``: each
  group may scale the learning rate or set its own weight decay), weight decay 1e-4.
* Schedule: linear warm-up over ``warmup_iters`` iterations, then LR × 0.1 from epoch
  ``lr_drop_epoch`` on.
* An **epoch** is what the public configs call one: one shuffled pass over the training set
  repeated ``repeat`` times (nncore's RepeatDataset; QVHighlights: 4, so 30 epochs are 120
  passes and the LR drop at epoch 20 comes after 80); ``warmup_iters`` counts iterations
  (batches), ``lr_drop_epoch`` epochs, as in paper Table 8. See docs/protocols.md.
* :func:`train_step` — forward, the five losses, backward, gradient clipping (35), optimizer
  step, FP16 autocast on CUDA — is the one step used by training *and* by the memory and
  throughput measurements (``bench.run``), so the memory column measures what the suite trains.
* ``accumulate``: each batch is split into that many micro-batches, whose losses are
  computed separately and whose gradients are summed, each weighted by its share of the
  batch (gradient accumulation: the same optimizer step in less memory, with the batch-level
  loss terms — the contrastive calibration, the focal normalisation — computed per
  micro-batch). Under ``torchrun`` (``bench.ddp``) the micro-batches are spread over the
  processes: ``W`` processes compute exactly what one process computes with ``accumulate``
  micro-batches (``bench.distributed``).
* Random draws: the order of epoch ``e`` comes from a seed derived from ``(seed, e)``; the
  dropout masks and saliency positives of micro-batch ``i`` of step ``s`` from a seed derived
  from ``(seed, s, i)``. So a run repeats exactly on the CPU whatever the number of processes,
  and a run resumed from an epoch checkpoint (``bench.resume``) ends where an uninterrupted
  one does. Checkpoints hold only what a method learns
  (``TransferModel.learnable_state_dict``), as safetensors.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from r2bench.bench.distributed import World
from r2bench.core.config import FieldTypeError, check_fields
from r2bench.bench.resume import ResumeRefused, read_resume, restore, save_resume
from r2bench.core.io import atomic_write
from r2bench.datasets.vtg import VTGDataset, collate
from r2bench.methods.checkpoints import CHECKSUM_KEY, tensors_checksum
from r2bench.methods.model import TransferModel

log = logging.getLogger(__name__)


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
    accumulate: int = 1         # micro-batches per batch (gradient accumulation; × processes under torchrun)

    def __post_init__(self):
        try:
            check_fields(self)
        except FieldTypeError as e:
            raise ValueError(f"training setting {e}") from None
        positive = dict(epochs=self.epochs, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                        repeat=self.repeat, accumulate=self.accumulate)
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
        if self.accumulate > self.batch_size:
            raise ValueError(f"accumulate ({self.accumulate} micro-batches) cannot exceed batch_size ({self.batch_size})")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class NonFiniteLoss(FloatingPointError):
    """A loss turned NaN or infinite; carries the step and every loss term."""

    def __init__(self, step: int, epoch: int, losses: dict[str, float]):
        self.step, self.epoch, self.losses = step, epoch, losses
        terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        super().__init__(f"non-finite loss at step {step} (epoch {epoch}): {terms}")


@dataclass
class StepInfo:
    """What this process is computing right now: a fault record (out of memory, non-finite
    loss) names the step that failed and its real batch from this, not the configured one."""

    phase: str = "idle"          # train | evaluate | paper-memory | infer-timing
    epoch: int = 0
    step: int = 0
    batch: int = 0               # samples in the batch being computed
    micro_batch: int = 0         # samples in its largest micro-batch (what must fit at once)
    accumulate: int = 1

    def describe(self) -> str:
        if self.phase == "train":
            return (f"training step {self.step} (epoch {self.epoch}): batch of {self.batch} in {self.accumulate} "
                    f"micro-batch(es) of up to {self.micro_batch}")
        return f"{self.phase}: batch of {self.batch}" if self.batch else self.phase


CURRENT = StepInfo()


def set_step(**fields) -> None:
    """Update :data:`CURRENT` (fields not given keep their values; ``phase`` resets the rest)."""
    global CURRENT
    if "phase" in fields:
        CURRENT = StepInfo(**fields)
    else:
        for k, v in fields.items():
            setattr(CURRENT, k, v)


# ---- the pieces -----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derived_seed(*parts) -> int:
    """A 63-bit seed from ``parts`` (e.g. the run's seed, a step, a micro-batch)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


@dataclass
class MicroBatch:
    """One piece of a training batch: its collated samples, its share of the batch's samples
    (its gradient's weight) and its index among the batch's micro-batches (seeds its draws)."""

    batch: dict
    weight: float
    index: int


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


def make_loader(dataset: VTGDataset, batch_size: int, shuffle: bool, seed: int,
                items: Dataset | None = None, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches of ``items`` (default: ``dataset``; e.g. a repeated or filtered view of it) in a
    seeded order, decoded by ``workers`` processes (0: in this one)."""
    return DataLoader(dataset if items is None else items, batch_size=batch_size, shuffle=shuffle,
                      collate_fn=partial(collate, fps=dataset.fps),
                      generator=torch.Generator().manual_seed(seed), num_workers=workers,
                      pin_memory=pin_memory, **_worker_options(workers))


def _worker_options(workers: int) -> dict:
    """DataLoader options for ``workers`` decoding processes: each gets one CPU thread, and the
    start method is fork where there is one (the memos and the dataset are inherited, not pickled)."""
    if not workers:
        return {}
    import multiprocessing as mp
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return dict(worker_init_fn=_one_thread, multiprocessing_context=mp.get_context(method), prefetch_factor=2)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def training_items(dataset: VTGDataset, repeat: int, min_seconds: float = 0.0) -> Dataset:
    """What one epoch iterates: the videos of at least ``min_seconds`` (the public code drops
    shorter ones from training), the whole set ``repeat`` times (shuffled together)."""
    keep = [i for i, s in enumerate(dataset.samples) if s.duration >= min_seconds]
    if not keep:
        raise ValueError(f"no training video lasts at least {min_seconds} s (min_train_seconds)")
    items = dataset if len(keep) == len(dataset) else Subset(dataset, keep)
    return items if repeat == 1 else ConcatDataset([items] * repeat)


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
    seed: int | None = None      # set: each micro-batch's draws come from derived_seed(seed, step, index)
    world: World = field(default_factory=World)
    loss_keys: tuple[str, ...] = ()


def make_step_state(model: TransferModel, cfg: TrainConfig, device: torch.device, iters_per_epoch: int | None = None,
                    autocast: Callable | None = None) -> StepState:
    """Optimizer (+ schedule when ``iters_per_epoch`` is given), grad scaler and autocast for ``device``."""
    optimizer = build_optimizer(model, cfg)
    scheduler = (torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, iters_per_epoch))
                 if iters_per_epoch else None)
    return StepState(optimizer, cfg.grad_clip, autocast or autocast_for(device, cfg.amp),
                     torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda"), scheduler,
                     torch.Generator().manual_seed(cfg.seed), seed=cfg.seed)


@contextmanager
def micro_batch_rng(state: StepState, index: int):
    """The draws of micro-batch ``index`` of this step: the global generators (dropout) and the
    saliency generator seeded from ``(seed, step, index)``, the global state restored after."""
    if state.seed is None:
        yield
        return
    seed = derived_seed(state.seed, state.step, index)
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if state.generator is not None:
            state.generator.manual_seed(seed)
        yield


def train_step(model: TransferModel, batch: dict | list[MicroBatch], state: StepState) -> dict[str, torch.Tensor]:
    """One optimisation step: forward, losses and backward of each micro-batch (one: ``batch``
    is a collated batch), gradients summed (and over the processes of a ``torchrun`` run),
    clipping, optimizer (and schedule) step. Returns the loss terms, weighted over the
    micro-batches (detached)."""
    micro = [MicroBatch(batch, 1.0, 0)] if isinstance(batch, dict) else batch
    state.optimizer.zero_grad(set_to_none=True)
    totals: dict[str, torch.Tensor] = {}
    for mb in micro:
        with micro_batch_rng(state, mb.index):
            with state.autocast():
                out = model(mb.batch)
                losses = model.loss(out, mb.batch, generator=state.generator)
            loss = losses["total"] if mb.weight == 1.0 else losses["total"] * mb.weight
            state.scaler.scale(loss).backward()
        for k, v in losses.items():
            v = v.detach().float()
            totals[k] = v * mb.weight if k not in totals else totals[k] + v * mb.weight
    if totals and not state.loss_keys:
        state.loss_keys = tuple(totals)
    params = [p for g in state.optimizer.param_groups for p in g["params"]]
    if state.world.size > 1:
        if not state.loss_keys:
            raise RuntimeError("this process had no micro-batch in the run's first step: the training set is "
                               "smaller than accumulate × processes")
        totals = state.world.reduce_step(params, totals, state.loss_keys)
    state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(params, state.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.scheduler is not None:
        state.scheduler.step()
    state.step += 1
    return totals


# ---- the loop -------------------------------------------------------------------------------
def epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of epoch ``epoch``: a permutation seeded from ``(seed, epoch)``, cut into
    ``batch_size`` pieces (the last may be smaller)."""
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(derived_seed(seed, "epoch", epoch)))
    return [order[i:i + batch_size].tolist() for i in range(0, n_items, batch_size)]


def split_micro_batches(items: list[dict], accumulate: int, world: World, fps: float | None) -> dict:
    """One batch's items (in batch order) as this process's micro-batches: the batch split into
    ``accumulate`` near-equal consecutive pieces, ``accumulate / world.size`` of them per process,
    in rank order; each weighted by its share of the batch's readable samples. Items of videos
    that could not be read are dropped and listed (``unreadable``). Runs in the DataLoader's
    workers (decoding and collating off the training thread)."""
    pieces = np.array_split(np.arange(len(items)), accumulate)
    per_rank = accumulate // world.size
    mine = range(world.rank * per_rank, (world.rank + 1) * per_rank)
    unreadable = {it["unreadable"]: it["reason"] for it in items if "unreadable" in it}
    readable = len(items) - len(unreadable) if world.size == 1 else len(items)
    out = []
    for j in mine:
        piece = [items[int(i)] for i in pieces[j] if "unreadable" not in items[int(i)]]
        if piece:
            out.append(MicroBatch(collate(piece, fps=fps), len(piece) / max(1, readable), j))
    return dict(micro=out, size=len(items), unreadable=unreadable)


class EpochBatches(torch.utils.data.Sampler):
    """The batches of epochs ``start .. epochs - 1`` in order (:func:`epoch_batches` each): one
    DataLoader, and so one set of decoding workers, for the whole of training."""

    def __init__(self, n_items: int, batch_size: int, seed: int, start: int, epochs: int):
        self.n_items, self.batch_size, self.seed, self.start, self.epochs = n_items, batch_size, seed, start, epochs

    def per_epoch(self) -> int:
        return math.ceil(self.n_items / self.batch_size)

    def __iter__(self):
        for epoch in range(self.start, self.epochs):
            yield from epoch_batches(self.n_items, self.batch_size, self.seed, epoch)

    def __len__(self) -> int:
        return (self.epochs - self.start) * self.per_epoch()


@dataclass
class Resume:
    """Where a run keeps its epoch checkpoint, and what it must match (``bench.resume``)."""

    path: Path
    tag: dict


def train(model: TransferModel, dataset: VTGDataset, cfg: TrainConfig, device: torch.device,
          progress: bool = True, resume: Resume | None = None, workers: int = 0,
          on_epoch: Callable[[int], dict] | None = None) -> dict:
    """Train ``model`` in place; returns seconds spent, videos seen, the last losses, the epoch it
    resumed from, and the videos that could not be read (their samples are left out of their
    batches). A non-finite loss stops training at once (:class:`NonFiniteLoss`). With
    ``resume``, an epoch checkpoint is written after every epoch and, if one is there when
    training starts, training goes on from it (a damaged or foreign one is refused with a
    warning naming it, and training starts over). ``workers`` processes decode and collate the
    batches ahead of the training step (0: this process); the numbers do not depend on it.
    ``on_epoch(epoch)``, called after every epoch, returns what the learning curve keeps of it
    (e.g. a validation score); the curve (``curve``: one entry per epoch, with the mean of each
    loss term over the epoch) is returned and kept across a resume."""
    seed_everything(cfg.seed)
    world = World.current()
    if cfg.accumulate % world.size:
        raise ValueError(f"accumulate {cfg.accumulate} is not a multiple of the {world.size} processes")
    items = training_items(dataset, cfg.repeat, getattr(model.head.cfg, "min_train_seconds", 0.0))
    steps_per_epoch = math.ceil(len(items) / cfg.batch_size)
    model.to(device).train()
    state = make_step_state(model, cfg, device, iters_per_epoch=steps_per_epoch)
    state.world = world
    world.broadcast_parameters([p for p in model.parameters() if p.requires_grad])
    start_epoch, done = 0, dict(seconds=0.0, videos=0)
    if resume is not None:
        try:
            found = read_resume(resume.path, resume.tag)
        except ResumeRefused as e:
            log.warning("%s; training starts over", e)
            found = None
        if found is not None:
            tensors, meta = found
            restore(tensors, meta, model, state)
            start_epoch, done = meta["epoch"], meta["progress"]
            log.info("resuming from the epoch checkpoint %s: %d of %d epochs done", resume.path, start_epoch, cfg.epochs)
    start, seen, losses, unreadable = time.perf_counter(), done["videos"], {}, {}
    curve, sums, n_steps = list(done.get("curve") or []), {}, 0
    sampler = EpochBatches(len(items), cfg.batch_size, cfg.seed, start_epoch, cfg.epochs)
    loader = DataLoader(items, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                        collate_fn=partial(split_micro_batches, accumulate=cfg.accumulate, world=world,
                                           fps=dataset.fps), **_worker_options(workers))
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc="training",
               disable=not progress or not world.main)
    for i, batch in enumerate(loader):
        epoch = start_epoch + i // steps_per_epoch
        for vid, reason in batch["unreadable"].items():
            if vid not in unreadable:
                unreadable[vid] = reason
                log.warning("video %s cannot be read (%s): its samples are left out of training", vid, reason)
        micro = [MicroBatch(to_device(mb.batch, device), mb.weight, mb.index) for mb in batch["micro"]]
        set_step(phase="train", epoch=epoch + 1, step=state.step + 1, batch=batch["size"], accumulate=cfg.accumulate,
                 micro_batch=max((len(mb.batch["qid"]) for mb in micro), default=0))
        if micro or world.size > 1:
            losses = train_step(model, micro, state)
            total = losses["total"].item()
            if not math.isfinite(total):
                raise NonFiniteLoss(state.step, epoch + 1, {k: v.item() for k, v in losses.items()})
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            n_steps += 1
            bar.set_postfix(epoch=epoch + 1, loss=f"{total:.3f}")
        else:
            state.step += 1                      # every sample of this batch is unreadable: nothing to learn
            if state.scheduler is not None:
                state.scheduler.step()
        seen += batch["size"]
        bar.update()
        if (i + 1) % steps_per_epoch == 0:
            point = dict(epoch=epoch + 1, step=state.step, **{f"loss_{k}": round(v / max(1, n_steps), 6)
                                                               for k, v in sums.items()})
            if on_epoch is not None and world.main:
                t0 = time.perf_counter()
                point.update(on_epoch(epoch + 1))
                model.train()
                start += time.perf_counter() - t0          # scoring the curve is not training time
            curve.append(point)
            sums, n_steps = {}, 0
            if resume is not None and world.main:
                save_resume(resume.path, model, state, epoch + 1,
                            dict(seconds=done["seconds"] + time.perf_counter() - start, videos=seen, curve=curve),
                            resume.tag)
    bar.close()
    set_step(phase="idle")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return dict(seconds=done["seconds"] + time.perf_counter() - start, videos=seen, steps=state.step,
                losses={k: v.item() for k, v in losses.items()}, resumed_from_epoch=start_epoch or None,
                unreadable=unreadable, curve=curve)


@torch.no_grad()
def predict(model: TransferModel, dataset: VTGDataset, batch_size: int, device: torch.device,
            amp: bool = True, progress: bool = True, workers: int = 0,
            unreadable: dict[str, str] | None = None, alone: bool = True) -> tuple[list[dict], float]:
    """Moment-DETR submission lines for every sample whose video can be read, and the seconds it
    took; the videos that cannot be read are added to ``unreadable`` ({vid: reason}).

    ``alone`` (default): each sample is computed by itself, a batch of one at its own video and
    query length, as ``bench.predict.Predictor`` answers a query. In a padded batch a sample's
    floats depend on its batch-mates (their number, the longest query's length) in the last
    bits, which is enough to swap windows whose scores tie to 1e-6, so the Predictor could not
    give the suite's lines. ``alone=False``: batches of ``batch_size`` (faster; lines may then
    differ from the Predictor's among near-tied windows)."""
    model.to(device).eval()
    autocast = autocast_for(device, amp)
    start, lines = time.perf_counter(), []
    if alone and dataset.source == "frames":
        lines = _predict_per_video(model, dataset, device, autocast, progress, workers, unreadable)
    else:
        for batch in tqdm(make_loader(dataset, 1 if alone else batch_size, shuffle=False, seed=0, workers=workers,
                                      pin_memory=device.type == "cuda"), desc="evaluating", disable=not progress):
            if unreadable is not None:
                unreadable.update(batch.get("unreadable") or {})
            if not batch["qid"]:
                continue
            set_step(phase="evaluate", batch=len(batch["qid"]))
            batch = to_device(batch, device)
            with autocast():
                lines += model.predict(model(batch), batch)
    set_step(phase="idle")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return lines, time.perf_counter() - start


def _predict_per_video(model: TransferModel, dataset: VTGDataset, device: torch.device, autocast, progress: bool,
                       workers: int, unreadable: dict[str, str] | None) -> list[dict]:
    """Samples from frames, each alone, with each video through the image tower once: its tapped
    tokens are computed for the first of its samples and every query of the video is answered
    from them — what :class:`bench.predict.Predictor` computes (encode once, ask many), at a
    fraction of the cost of running the image tower once per query."""
    lines, encoded = {}, {}
    for i, batch in enumerate(tqdm(make_loader(dataset, 1, shuffle=False, seed=0, workers=workers,
                                               pin_memory=device.type == "cuda"),
                                   desc="evaluating", disable=not progress)):
        if unreadable is not None:
            unreadable.update(batch.get("unreadable") or {})
        if not batch["qid"]:
            continue
        set_step(phase="evaluate", batch=1)
        batch = to_device(batch, device)
        frames = batch.pop("frames")
        key = (batch["vid"][0], frames.shape[1])
        if key not in encoded:
            encoded.clear()                                   # one video's tokens at a time
            with autocast():
                encoded[key] = model.video_layer_tokens(frames, batch["video_mask"])
        batch["video_taps"] = encoded[key]
        with autocast():
            lines[i] = model.predict(model(batch), batch)
    return [line for i in sorted(lines) for line in lines[i]]


# ---- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(model: TransferModel, path: Path) -> Path:
    """What the method learned (``learnable_state_dict``), as safetensors, written atomically."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.learnable_state_dict().items()}
    return atomic_write(path, save_safetensors(tensors, metadata={CHECKSUM_KEY: tensors_checksum(tensors)}))


def load_checkpoint(model: TransferModel, path: str | Path) -> None:
    """Load a checkpoint written by :func:`save_checkpoint`; a damaged (its checksum) or
    foreign file is an error naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load_safetensors(data)
        meta = json.loads(data[8:8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
    except (OSError, SafetensorError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if CHECKSUM_KEY in meta and meta[CHECKSUM_KEY] != tensors_checksum(tensors):
        raise ValueError(f"{path}: damaged checkpoint (its tensors do not match the checksum saved with them)")
    try:
        model.load_learnable_state_dict(tensors)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
