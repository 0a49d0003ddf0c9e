"""One run: build the method, train it, predict, score, measure — and return the ledger record.

A run is identified by everything that changes its result (:func:`run_identity`): the
method and its resolved config (head protocol included), the resolved training config, the
dataset and its version, the backbone and the weights' digest, and the seed. The run id is
a readable prefix plus a digest of that identity; the record also carries the code version.

Measurements in every record:
* ``params`` / ``params_M``: learnable parameters at the paper's configuration (CLIP
  ViT-B/32 built on the meta device), exact and in the paper's unit 2^20; ``params_run``
  on the backbone the run actually used.
* ``memory_gib``: peak memory of one training step at the paper's setting (ViT-B/32,
  224×224, batch 32, 75 frames, FP16 autocast, from frames, CLIP included) — the same
  :func:`bench.train.train_step` the suite trains with. On CUDA it is measured
  (``torch.cuda.max_memory_allocated``, source ``cuda``); otherwise the step runs on fake
  tensors with live storage counted (source ``estimate``). ``memory_detail`` says what the
  figure depends on.
* ``train_videos_per_s``: with ``--paper-scale`` on CUDA, the paper-setting step above;
  otherwise the training loop as the method trains (cacheable methods from cached features,
  the others from frames); ``infer_videos_per_s``: end to end from frames (backbone + head +
  decoding) on up to 64 evaluation videos; ``wall_s``: the whole run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache, partial
from pathlib import Path
from typing import Mapping

import torch

from r2bench.bench.measure import count_params, cuda_peak_memory, estimate_peak_memory, params_in_paper_unit, throughput
from r2bench.bench.metrics import evaluate
from r2bench.bench.distributed import World
from r2bench.bench.predict import CHECKPOINT_FILE, write_model_card
from r2bench.bench.provenance import code_version, device_info, git_commit, versions
from r2bench.bench.resume import RESUME_NAME
from r2bench.bench.train import Resume, TrainConfig, make_step_state, predict, save_checkpoint, train, train_step
from r2bench.core.io import atomic_write, cache_dir
from r2bench.datasets.registry import Dataset
from r2bench.datasets.vtg import FrameSource, VTGDataset, build_features, cached_video_fn, feature_cache_for, warn_long_queries
from r2bench.methods.backbone import RANDOM_INIT, Backbone, weights_digest
from r2bench.methods.registry import build_model, get_method

log = logging.getLogger(__name__)

PAPER_BACKBONE = "ViT-B-32"
PAPER_BATCH, PAPER_FRAMES, PAPER_QUERY_TOKENS = 32, 75, 20
INFER_SAMPLES = 64


@dataclass(frozen=True)
class RunSpec:
    """One row of a suite: a registered method, its config overrides, the row's name in the
    rendered table (default: the method's label) and the paper's row it matches (``{paper
    column: value}``, e.g. ``{"method": "R2-Tuning"}``; None: the paper has no such row)."""

    method: str
    overrides: dict = field(default_factory=dict)
    row: str | None = None
    paper: Mapping[str, str] | None = None
    # splits to predict besides the evaluation split, each written as <split>_preds.jsonl (e.g. the
    # QVHighlights test split, whose labels are withheld: Table 1's submission file)
    predict_splits: tuple[str, ...] = ()

    def row_name(self) -> str:
        return self.row or get_method(self.method).label


@dataclass
class RunContext:
    """What every run of a suite shares."""

    suite: str
    dataset: Dataset
    backbone: str
    weights: str | None
    device: torch.device
    out_dir: Path
    seed: int = 0
    train_overrides: dict = field(default_factory=dict)
    paper_scale: bool = False
    progress: bool = True
    fresh: bool = False          # start over: ignore (and delete) an interrupted run's epoch checkpoint
    world_size: int = 1          # processes training each run together (torchrun, bench.ddp)


# ---- identity -------------------------------------------------------------------------------
def weights_label(weights: str | None) -> str:
    return RANDOM_INIT if weights is None else f"{Path(weights).name}#{weights_digest(weights)}"


def run_identity(spec: RunSpec, ctx: RunContext) -> dict:
    """Everything that changes a run's result; bad overrides raise here, before anything runs."""
    entry = get_method(spec.method)
    if ctx.paper_scale:
        cfg = entry.make_config(spec.overrides)
        return dict(method=spec.method, config=asdict(cfg), dataset="paper-scale", backbone=PAPER_BACKBONE,
                    weights=RANDOM_INIT, device=ctx.device.type)
    cfg = entry.make_config({**ctx.dataset.preset.head, **spec.overrides})
    train = {**ctx.dataset.preset.train, **ctx.train_overrides, "seed": ctx.seed}
    # W processes with accumulate A compute what one process computes with A × W micro-batches
    train["accumulate"] = train.get("accumulate", 1) * ctx.world_size
    train_cfg = TrainConfig(**train)
    identity = dict(method=spec.method, config=asdict(cfg), train_config=asdict(train_cfg), dataset=ctx.dataset.name,
                    dataset_version=ctx.dataset.version, benchmark_version=ctx.dataset.benchmark_version,
                    backbone=ctx.backbone, weights=weights_label(ctx.weights), seed=ctx.seed)
    if getattr(ctx.dataset, "domain", None):     # one model per domain (YouTube Highlights, TVSum)
        identity["domain"] = ctx.dataset.domain
    return identity


def make_run_id(suite: str, identity: dict) -> str:
    """``<suite>-<method>-<dataset>-s<seed>-<digest of the identity>``."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(blob).hexdigest()[:10]
    dataset = identity["dataset"] + (f"-{identity['domain']}" if identity.get("domain") else "")
    parts = (suite, identity["method"], dataset, f"s{identity.get('seed', 0)}")
    readable = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)) for p in parts)
    return f"{readable}-{digest}"


# ---- the paper's setting ----------------------------------------------------------------------
def paper_params(method: str, overrides: dict) -> tuple[int, int]:
    """(learnable, backbone) parameter counts at the paper's configuration, on the meta device."""
    with torch.device("meta"):
        model = build_model(method, Backbone(PAPER_BACKBONE, device="meta"), overrides)
    return count_params(model), sum(p.numel() for p in model.backbone.parameters())


def paper_batch(device: torch.device) -> dict:
    """A batch at the paper's setting: 32 videos × 75 frames of 224², 20-token queries."""
    b, t = PAPER_BATCH, PAPER_FRAMES
    ids = torch.zeros(b, PAPER_QUERY_TOKENS, dtype=torch.long, device=device)
    ids[:, 0], ids[:, 1:PAPER_QUERY_TOKENS - 1], ids[:, PAPER_QUERY_TOKENS - 1] = 49406, 320, 49407
    saliency = torch.zeros(b, t, device=device)
    saliency[:, 10:30] = 2.0
    return dict(frames=torch.randn(b, t, 3, 224, 224, device=device),
                video_mask=torch.ones(b, t, dtype=torch.bool, device=device), text_ids=ids,
                windows=[torch.tensor([[20.0, 60.0]], device=device)] * b, saliency=saliency,
                fps=torch.full((b,), 0.5, device=device), duration=torch.full((b,), 150.0, device=device),
                qid=list(range(b)), vid=[f"v{i}" for i in range(b)], query=["a query"] * b)


def paper_setup(method: str, overrides: dict, device: torch.device):
    """Model (random ViT-B/32 weights), batch and step state at the paper's setting: FP16
    autocast (on the CPU too, so the fake-tensor estimate mirrors a CUDA step), QVHighlights'
    preset (AdamW, clipping 35)."""
    model = build_model(method, Backbone(PAPER_BACKBONE, device=device), overrides).to(device).train()
    state = make_step_state(model, TrainConfig(batch_size=PAPER_BATCH), device,
                            autocast=partial(torch.autocast, device.type, dtype=torch.float16))
    return model, paper_batch(device), state


def paper_training_step(method: str, overrides: dict, device: torch.device):
    """A closure building the paper-setting model and running one :func:`train_step` (for memory)."""
    return lambda: train_step(*paper_setup(method, overrides, device))


@lru_cache(maxsize=None)
def _paper_memory(method: str, overrides_json: str, device_type: str) -> tuple[int, str]:
    overrides = json.loads(overrides_json)
    if device_type == "cuda":
        return cuda_peak_memory(paper_training_step(method, overrides, torch.device("cuda"))), "cuda"
    return estimate_peak_memory(paper_training_step(method, overrides, torch.device("cpu"))), "estimate"


def paper_memory(method: str, overrides: dict, device: torch.device) -> tuple[float, str]:
    """Peak GiB of one paper-setting training step and its source (``cuda`` or ``estimate``)."""
    peak, source = _paper_memory(method, json.dumps(overrides, sort_keys=True), device.type)
    return peak / 2**30, source


def memory_detail(method: str, device: torch.device, source: str) -> dict:
    """What a memory figure depends on."""
    import open_clip
    entry = get_method(method)
    return dict(source=source, step="bench.train.train_step (forward, losses, backward, clip, AdamW)",
                batch=PAPER_BATCH, frames=PAPER_FRAMES, image_size=224, dtype="fp16 autocast",
                backbone=f"open_clip {open_clip.__version__} {PAPER_BACKBONE}, run block by block",
                backbone_grad=entry.category in ("full", "PETL"),
                attention="torch scaled_dot_product_attention via nn.MultiheadAttention",
                device=device_info(device) if source == "cuda" else dict(device="fake tensors (CPU autocast)"))


def paper_throughput(method: str, overrides: dict, device: torch.device) -> tuple[float, float]:
    """(training, inference) videos/s at the paper's setting, from frames (CUDA only: on a CPU a
    batch of 32 × 75 ViT-B/32 frames takes minutes)."""
    model, batch, state = paper_setup(method, overrides, device)
    train_vps = throughput(lambda: train_step(model, batch, state), PAPER_BATCH, warmup=1, repeats=3)
    model.eval()

    @torch.no_grad()
    def infer():
        with torch.autocast(device.type, dtype=torch.float16):
            model.predict(model(batch), batch)
    return train_vps, throughput(infer, PAPER_BATCH, warmup=1, repeats=3)


# ---- records --------------------------------------------------------------------------------
def base_record(spec: RunSpec, ctx: RunContext, run_id: str, identity: dict | None = None) -> dict:
    entry = get_method(spec.method)
    record = dict(run_id=run_id, suite=ctx.suite, row=spec.row_name(), method=spec.method, label=entry.label,
                  category=entry.category,
                  dataset=ctx.dataset.name, domain=getattr(ctx.dataset, "domain", None), seed=ctx.seed,
                  status="running", error=None,
                  backbone=PAPER_BACKBONE if ctx.paper_scale else ctx.backbone,
                  weights=RANDOM_INIT if ctx.paper_scale else weights_label(ctx.weights),
                  overrides=dict(spec.overrides), versions=versions(), code_version=code_version(), commit=git_commit(),
                  device=str(ctx.device), started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if identity is not None:
        record.update(config=identity["config"], protocol=identity["config"].get("protocol"))
        for key in ("train_config", "dataset_version", "benchmark_version"):
            if key in identity:
                record[key] = identity[key]
    return record


def execute(spec: RunSpec, ctx: RunContext, run_id: str) -> dict:
    """Run ``spec`` and return its complete record (raises on failure; the suite records it)."""
    start = time.perf_counter()
    identity = run_identity(spec, ctx)
    if not World.current().main:        # another process of a torchrun run: it only trains
        _train_and_evaluate(spec, ctx, identity, run_id)
        return {}
    record = base_record(spec, ctx, run_id, identity)
    record["params"], _ = paper_params(spec.method, spec.overrides)
    record["params_M"] = round(params_in_paper_unit(record["params"]), 3)
    memory, record["memory_source"] = paper_memory(spec.method, spec.overrides, ctx.device)
    record["memory_gib"] = round(memory, 2)
    record["memory_detail"] = memory_detail(spec.method, ctx.device, record["memory_source"])
    if not ctx.paper_scale:
        record.update(_train_and_evaluate(spec, ctx, identity, run_id))
    elif ctx.device.type == "cuda":
        train_vps, infer_vps = paper_throughput(spec.method, spec.overrides, ctx.device)
        record.update(train_videos_per_s=round(train_vps, 2), infer_videos_per_s=round(infer_vps, 2))
    record["status"] = "ok"
    record["wall_s"] = round(time.perf_counter() - start, 1)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def _train_and_evaluate(spec: RunSpec, ctx: RunContext, identity: dict, run_id: str) -> dict:
    data, device, world = ctx.dataset, ctx.device, World.current()
    run_dir = ctx.out_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = Resume(run_dir / RESUME_NAME, dict(run_id=run_id, code_version=code_version(),
                                                train_config=identity["train_config"]))
    if ctx.fresh and world.main:
        resume.path.unlink(missing_ok=True)
    torch.manual_seed(ctx.seed)
    backbone = Backbone(ctx.backbone, ctx.weights, device=device)
    if backbone.weights_label == RANDOM_INIT:
        log.warning("!! %s trains on a RANDOMLY INITIALISED %s: metrics are not comparable", spec.method, ctx.backbone)
    model = build_model(spec.method, backbone, {**data.preset.head, **spec.overrides}).to(device)
    frames = FrameSource(data, backbone)
    train_samples, eval_samples = data.samples(data.train_split), data.samples(data.eval_split)
    extra_samples = {split: data.samples(split) for split in spec.predict_splits}
    truncated = warn_long_queries(train_samples, backbone, data.train_split) if world.main else 0
    truncated += warn_long_queries(eval_samples, backbone, data.eval_split) if world.main else 0
    if model.cacheable:
        cache = feature_cache_for(data, model, cache_dir() / "features")
        if world.main:    # one process fills the cache; the others read it
            build_features([s.vid for s in train_samples + eval_samples + sum(extra_samples.values(), [])], frames,
                           model, cache, device, progress=ctx.progress)
        world.barrier()
        video_fn, source = cached_video_fn(cache, frames, model, device), "features"
    else:
        video_fn, source = frames.get, "frames"
    tokenize = backbone.tokenize
    train_set = VTGDataset(train_samples, video_fn, tokenize, data.frame_rate, source, video_name=data.video_path)
    eval_set = VTGDataset(eval_samples, video_fn, tokenize, data.frame_rate, source, video_name=data.video_path)
    cfg = TrainConfig(**identity["train_config"])
    stats = train(model, train_set, cfg, device, progress=ctx.progress, resume=resume)
    if not world.main:
        return {}
    save_checkpoint(model, run_dir / CHECKPOINT_FILE)
    write_model_card(run_dir, method=spec.method, config=identity["config"], backbone=ctx.backbone, weights=ctx.weights,
                     fps=data.fps, amp=cfg.amp, dataset=data.name)

    lines, _ = predict(model, eval_set, cfg.eval_batch_size, device, cfg.amp, progress=ctx.progress)
    pred_path = atomic_write(run_dir / f"{data.eval_split}_preds.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    result = evaluate(data.spec.metric, lines, eval_samples)
    metrics = result.brief
    per_query_path = atomic_write(run_dir / "per_query.csv", result.per_query.to_csv())
    split_predictions = {}
    for split, samples in extra_samples.items():
        extra, _ = predict(model, VTGDataset(samples, video_fn, tokenize, data.frame_rate, source),
                           cfg.eval_batch_size, device, cfg.amp, progress=ctx.progress)
        split_predictions[split] = str(atomic_write(run_dir / f"{split}_preds.jsonl",
                                                    "".join(json.dumps(line) + "\n" for line in extra)))

    subset = eval_samples[:INFER_SAMPLES]
    for s in subset:                     # decode outside the timed region
        frames.get(s.vid)
    live = VTGDataset(subset, frames.get, tokenize, data.frame_rate, "frames", video_name=data.video_path)
    _, infer_seconds = predict(model, live, cfg.eval_batch_size, device, cfg.amp, progress=False)
    resume.path.unlink(missing_ok=True)      # the run is complete: its epoch checkpoint is not needed
    return dict(resumed_from_epoch=stats["resumed_from_epoch"], processes=world.size, truncated_queries=truncated,
                params_run=count_params(model), metrics=metrics, predictions=str(pred_path),
                per_query=str(per_query_path), split_predictions=split_predictions,
                train_videos_per_s=round(stats["videos"] / stats["seconds"], 2),
                infer_videos_per_s=round(len(subset) / infer_seconds, 2), input=source,
                train_seconds=round(stats["seconds"], 1), final_losses=stats["losses"],
                n_train=len(train_samples), n_eval=len(eval_samples))
