"""One run: build the method, train it, predict, score, measure — and return the ledger record.

Measurements in every record:
* ``params`` / ``params_M``: learnable parameters at the paper's configuration (CLIP
  ViT-B/32 built on the meta device), exact and in the paper's unit 2^20; ``params_run``
  on the backbone the run actually used.
* ``memory_gib``: peak memory of one training step at the paper's setting (ViT-B/32,
  224×224, batch 32, 75 frames, FP16 autocast, from frames, CLIP included). On CUDA it is
  measured (``torch.cuda.max_memory_allocated``, source ``cuda``); otherwise the same step
  runs on fake tensors with live storage counted (source ``estimate``).
* ``train_videos_per_s``: with ``--paper-scale`` on CUDA, the paper-setting step above
  (frames in, batch 32); otherwise the training loop as the method trains (METL/frozen from cached
  features, PETL/full from frames); ``infer_videos_per_s``: end to end from frames
  (backbone + head + decoding) on up to 64 evaluation videos; ``wall_s``: the whole run.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch

from bench.measure import count_params, cuda_peak_memory, estimate_peak_memory, params_in_paper_unit, throughput
from bench.metrics import evaluate
from datasets.io import atomic_write, cache_dir
from bench.train import TrainConfig, predict, save_checkpoint, train
from datasets.registry import Dataset
from datasets.vtg import FrameSource, VTGDataset, build_features, cached_video_fn, feature_cache_for
from methods.backbone import Backbone
from methods.registry import build_model, get_method

PAPER_BACKBONE = "ViT-B-32"
PAPER_BATCH, PAPER_FRAMES, PAPER_QUERY_TOKENS = 32, 75, 20
INFER_SAMPLES = 64


@dataclass(frozen=True)
class RunSpec:
    """One row of a suite: a registered method and its config overrides."""

    method: str
    overrides: dict = field(default_factory=dict)


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


def paper_params(method: str, overrides: dict) -> tuple[int, int]:
    """(learnable, backbone) parameter counts at the paper's configuration, on the meta device."""
    with torch.device("meta"):
        model = build_model(method, Backbone(PAPER_BACKBONE, device="meta"), overrides)
    return count_params(model), sum(p.numel() for p in model.backbone.parameters())


def paper_setup(method: str, overrides: dict, device: torch.device):
    """Model, fake batch and optimizer at the paper's setting (random ViT-B/32 weights)."""
    model = build_model(method, Backbone(PAPER_BACKBONE, device=device), overrides).to(device).train()
    b, t = PAPER_BATCH, PAPER_FRAMES
    ids = torch.zeros(b, PAPER_QUERY_TOKENS, dtype=torch.long, device=device)
    ids[:, 0], ids[:, 1:PAPER_QUERY_TOKENS - 1], ids[:, PAPER_QUERY_TOKENS - 1] = 49406, 320, 49407
    saliency = torch.zeros(b, t, device=device)
    saliency[:, 10:30] = 2.0
    batch = dict(frames=torch.randn(b, t, 3, 224, 224, device=device),
                 video_mask=torch.ones(b, t, dtype=torch.bool, device=device), text_ids=ids,
                 windows=[torch.tensor([[20.0, 60.0]], device=device)] * b, saliency=saliency,
                 fps=torch.full((b,), 0.5, device=device), duration=torch.full((b,), 150.0, device=device),
                 qid=list(range(b)), vid=[f"v{i}" for i in range(b)], query=["a query"] * b)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, batch, optimizer


def paper_step(model, batch, optimizer) -> None:
    """One training step with FP16 autocast: forward from frames, the five losses, backward, AdamW."""
    with torch.autocast(batch["frames"].device.type, dtype=torch.float16):
        out = model(batch)
        loss = model.loss(out, batch)["total"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def paper_training_step(method: str, overrides: dict, device: torch.device):
    """A closure building the paper-setting model and running one training step (for memory)."""
    return lambda: paper_step(*paper_setup(method, overrides, device))


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


def paper_throughput(method: str, overrides: dict, device: torch.device) -> tuple[float, float]:
    """(training, inference) videos/s at the paper's setting, from frames (CUDA only: on a CPU a
    batch of 32 × 75 ViT-B/32 frames takes minutes)."""
    model, batch, optimizer = paper_setup(method, overrides, device)
    train_vps = throughput(lambda: paper_step(model, batch, optimizer), PAPER_BATCH, warmup=1, repeats=3)
    model.eval()

    @torch.no_grad()
    def infer():
        with torch.autocast(device.type, dtype=torch.float16):
            model.predict(model(batch), batch)
    return train_vps, throughput(infer, PAPER_BATCH, warmup=1, repeats=3)


def versions() -> dict:
    import open_clip
    return dict(python=platform.python_version(), torch=torch.__version__, open_clip=open_clip.__version__)


def base_record(spec: RunSpec, ctx: RunContext, run_id: str) -> dict:
    entry = get_method(spec.method)
    return dict(run_id=run_id, suite=ctx.suite, method=spec.method, label=entry.label, category=entry.category,
                dataset=ctx.dataset.name, seed=ctx.seed, status="running", error=None,
                backbone=ctx.backbone, weights=ctx.weights or "random-init", config=dict(spec.overrides),
                versions=versions(), device=str(ctx.device),
                started=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def execute(spec: RunSpec, ctx: RunContext, run_id: str) -> dict:
    """Run ``spec`` and return its complete record (raises on failure; the suite records it)."""
    start = time.perf_counter()
    record = base_record(spec, ctx, run_id)
    overrides = {**ctx.dataset.preset.head, **spec.overrides} if not ctx.paper_scale else dict(spec.overrides)
    record["config"] = overrides
    record["params"], _ = paper_params(spec.method, spec.overrides)
    record["params_M"] = round(params_in_paper_unit(record["params"]), 3)
    memory, record["memory_source"] = paper_memory(spec.method, spec.overrides, ctx.device)
    record["memory_gib"] = round(memory, 2)
    if not ctx.paper_scale:
        record.update(_train_and_evaluate(spec, ctx, overrides, run_id))
    elif ctx.device.type == "cuda":
        train_vps, infer_vps = paper_throughput(spec.method, spec.overrides, ctx.device)
        record.update(train_videos_per_s=round(train_vps, 2), infer_videos_per_s=round(infer_vps, 2))
    record["status"] = "ok"
    record["wall_s"] = round(time.perf_counter() - start, 1)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def train_settings(settings: dict) -> dict:
    """TrainConfig fields from a preset. ``repeat`` (passes over the training set per epoch,
    QVHighlights: 4) is folded into ``epochs`` and ``lr_drop_epoch`` while TrainConfig has no
    such field: the same schedule, in passes."""
    settings = dict(settings)
    repeat = settings.pop("repeat", 1)
    if repeat != 1 and "repeat" not in TrainConfig.__dataclass_fields__:
        settings["epochs"] = settings.get("epochs", TrainConfig.epochs) * repeat
        drop = settings.get("lr_drop_epoch", TrainConfig.lr_drop_epoch)
        settings["lr_drop_epoch"] = drop * repeat if drop is not None else None
    elif repeat != 1:
        settings["repeat"] = repeat
    return settings


def _train_and_evaluate(spec: RunSpec, ctx: RunContext, overrides: dict, run_id: str) -> dict:
    data, device = ctx.dataset, ctx.device
    run_dir = ctx.out_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(ctx.seed)
    backbone = Backbone(ctx.backbone, ctx.weights, device=device)
    model = build_model(spec.method, backbone, overrides).to(device)
    frames = FrameSource(data, backbone)
    train_samples, eval_samples = data.samples(data.train_split), data.samples(data.eval_split)
    if model.cacheable:
        cache = feature_cache_for(data, model, cache_dir() / "features")
        build_features([s.vid for s in train_samples + eval_samples], frames, model, cache, device,
                       progress=ctx.progress)
        video_fn, source = cached_video_fn(cache, frames, model, device), "features"
    else:
        video_fn, source = frames.get, "frames"
    tokenize = backbone.tokenize
    train_set = VTGDataset(train_samples, video_fn, tokenize, data.fps, source)
    eval_set = VTGDataset(eval_samples, video_fn, tokenize, data.fps, source)
    cfg = TrainConfig(**train_settings({**data.preset.train, **ctx.train_overrides, "seed": ctx.seed}))
    stats = train(model, train_set, cfg, device, progress=ctx.progress)
    save_checkpoint(model, run_dir / "checkpoint.safetensors")

    lines, _ = predict(model, eval_set, cfg.eval_batch_size, device, cfg.amp, progress=ctx.progress)
    pred_path = run_dir / f"{data.eval_split}_preds.jsonl"
    pred_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = evaluate(data.spec.metric, lines, eval_samples)
    metrics = result.brief
    per_query_path = atomic_write(run_dir / "per_query.csv", result.per_query.to_csv())

    subset = eval_samples[:INFER_SAMPLES]
    for s in subset:                     # decode outside the timed region
        frames.get(s.vid)
    live = VTGDataset(subset, frames.get, tokenize, data.fps, "frames")
    _, infer_seconds = predict(model, live, cfg.eval_batch_size, device, cfg.amp, progress=False)
    return dict(params_run=count_params(model), metrics=metrics, predictions=str(pred_path),
                per_query=str(per_query_path),
                train_videos_per_s=round(stats["videos"] / stats["seconds"], 2),
                infer_videos_per_s=round(len(subset) / infer_seconds, 2),
                train_seconds=round(stats["seconds"], 1), final_losses=stats["losses"],
                train_config=asdict(cfg), n_train=len(train_samples), n_eval=len(eval_samples))
