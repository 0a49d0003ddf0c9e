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
from r2bench.core.identity import IDENTITY_FIELDS, make_run_id
from r2bench.core.io import atomic_write, cache_dir, file_digest
from r2bench.datasets.registry import BoundDataset, VideoCheck
from r2bench.datasets.vtg import FrameSource, VTGDataset, build_features, cached_video_fn, feature_cache_for, warn_long_queries
from r2bench.methods.backbone import RANDOM_INIT, Backbone, weights_digest
from r2bench.methods.registry import build_model, get_method

log = logging.getLogger(__name__)

PAPER_BACKBONE = "ViT-B-32"
PAPER_BATCH, PAPER_FRAMES, PAPER_QUERY_TOKENS = 32, 75, 20
INFER_SAMPLES = 64     # --infer-timing full: videos timed end to end from frames
INFER_QUICK = 4        # the default: a few videos (the run's own evaluation is timed too)


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
    dataset: BoundDataset
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
    # paper-setting memory: "auto" (fake-tensor estimate on the CPU; on CUDA measured once per GPU and
    # configuration, after training, cached, the estimate where it does not fit), "estimate", "measure"
    memory: str = "auto"
    infer_timing: str = "quick"  # from-frames inference timing: quick (INFER_QUICK videos), full, none
    curve_queries: int = 128     # validation queries scored after every epoch for the learning curve (0: none)
    workers: int | None = None   # frame-decoding processes (None: the cores on CUDA, none on the CPU)
    videos: VideoCheck | None = None   # which videos of the dataset are there (planned before any run)


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
    if ctx.videos is not None and ctx.videos.digest():   # trained and scored without some videos
        identity["missing_videos"] = ctx.videos.digest()
    return identity


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


def measured_paper_memory(method: str, overrides: dict, device: torch.device, *, refresh: bool = False
                          ) -> tuple[float, str, str | None]:
    """(GiB, source, note) of one paper-setting step on this GPU: measured once per GPU, method
    configuration and code version and cached (``cache_dir()/memory``); where the step does not
    fit, the fake-tensor estimate with a note saying so. Run after training, so that a step at
    batch 32 × 75 frames never stops a run from training."""
    from r2bench.bench.train import set_step
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", torch.cuda.get_device_name(device))
    path = _memory_cache_path(name, method, overrides)
    if path.is_file() and not refresh:
        try:
            cached = json.loads(path.read_text())
            return cached["gib"], cached["source"], cached.get("note")
        except (OSError, ValueError, KeyError):
            pass
    set_step(phase="paper-memory", batch=PAPER_BATCH)
    try:
        gib, source = paper_memory(method, overrides, device)
        note = None
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        gib, source = estimate_only(method, overrides)
        note = (f"one step at the paper's setting (batch {PAPER_BATCH} × {PAPER_FRAMES} frames) does not fit on "
                f"this {torch.cuda.get_device_name(device)}: the figure is the fake-tensor estimate")
    finally:
        set_step(phase="idle")
    atomic_write(path, json.dumps(dict(gib=gib, source=source, note=note, method=method, overrides=overrides,
                                       device=torch.cuda.get_device_name(device))))
    return gib, source, note


def _memory_cache_path(folder: str, method: str, overrides: dict, *more: str) -> Path:
    """``cache_dir()/memory/<folder>/<method>-<digest>.json``: one memory figure of a method
    configuration under this code version (and ``more``)."""
    key = hashlib.blake2b(json.dumps([method, overrides, code_version(), *more], sort_keys=True).encode(),
                          digest_size=8).hexdigest()
    return cache_dir() / "memory" / folder / f"{method}-{key}.json"


def estimate_only(method: str, overrides: dict) -> tuple[float, str]:
    """The fake-tensor estimate of one paper-setting step (GiB, ``estimate``), on any machine."""
    return paper_memory(method, overrides, torch.device("cpu"))


def cached_estimate(method: str, overrides: dict) -> tuple[float, str]:
    """:func:`estimate_only`, kept on disk per method configuration, code version and torch version
    (``cache_dir()/memory/estimate``). The estimate is deterministic (fake tensors: no value is
    computed), and tracing ViT-B/32 at batch 32 × 75 frames costs about 11 CPU-s: once per row
    and machine, instead of once per run and seed."""
    path = _memory_cache_path("estimate", method, overrides, torch.__version__)
    try:
        cached = json.loads(path.read_text())
        if cached.get("method") == method and cached.get("overrides") == overrides:
            return float(cached["gib"]), "estimate"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    gib, source = estimate_only(method, overrides)
    if source == "estimate":
        try:
            atomic_write(path, json.dumps(dict(gib=gib, method=method, overrides=overrides, torch=torch.__version__)))
        except OSError as e:                      # a read-only cache: the figure is still right
            log.warning("memory estimate not cached (%s)", e)
    return gib, source


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
        for key in IDENTITY_FIELDS:          # every field of the identity, as r2bench.core.identity defines it
            if key in identity:
                record[key] = identity[key]
    return record


def execute(spec: RunSpec, ctx: RunContext, run_id: str) -> dict:
    """Run ``spec`` and return its complete record (raises on failure; the suite records it).
    ``wall_s`` and ``cpu_s`` (this process's CPU seconds, every thread) time the whole run;
    ``threads``: the CPU threads it used (throughput depends on them)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    identity = run_identity(spec, ctx)
    if not World.current().main:        # another process of a torchrun run: it only trains
        _train_and_evaluate(spec, ctx, identity, run_id)
        return {}
    record = base_record(spec, ctx, run_id, identity)
    record["params"], _ = paper_params(spec.method, spec.overrides)
    record["params_M"] = round(params_in_paper_unit(record["params"]), 3)
    cuda = ctx.device.type == "cuda"
    if ctx.paper_scale or not cuda or ctx.memory == "estimate":
        # the estimate (fake tensors, seconds) before training; --paper-scale on CUDA: the measurement itself
        memory, record["memory_source"] = (paper_memory(spec.method, spec.overrides, ctx.device)
                                           if ctx.paper_scale else cached_estimate(spec.method, spec.overrides))
        record["memory_gib"] = round(memory, 2)
    if not ctx.paper_scale:
        record.update(_train_and_evaluate(spec, ctx, identity, run_id))
        if cuda and ctx.memory != "estimate":     # after training: measuring never stops a run from training
            memory, record["memory_source"], note = measured_paper_memory(spec.method, spec.overrides, ctx.device,
                                                                          refresh=ctx.memory == "measure")
            record["memory_gib"] = round(memory, 2)
            if note:
                record["memory_note"] = note
    elif cuda:
        train_vps, infer_vps = paper_throughput(spec.method, spec.overrides, ctx.device)
        record.update(train_videos_per_s=round(train_vps, 2), infer_videos_per_s=round(infer_vps, 2))
    record["memory_detail"] = memory_detail(spec.method, ctx.device, record["memory_source"])
    record["status"] = "ok"
    record["wall_s"] = round(time.perf_counter() - start, 1)
    record["cpu_s"] = round(time.process_time() - start_cpu, 1)
    record["threads"] = torch.get_num_threads()
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def default_workers(device: torch.device) -> int:
    """Frame-decoding processes: the cores on CUDA (the GPU waits otherwise); none on the CPU,
    where the cores train and the synthetic videos decode in milliseconds (docs/reliability.md)."""
    if device.type != "cuda":
        return 0
    from r2bench.bench.threads import available_cores
    return min(8, available_cores())


def empty_prediction(sample) -> dict:
    """The submission line of a query whose video is missing or unreadable: no windows, no scores."""
    return dict(qid=sample.qid, query=sample.query, vid=sample.vid, pred_relevant_windows=[], pred_saliency_scores=[])


def _train_and_evaluate(spec: RunSpec, ctx: RunContext, identity: dict, run_id: str) -> dict:
    data, device, world = ctx.dataset, ctx.device, World.current()
    run_dir = ctx.out_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = Resume(run_dir / RESUME_NAME, dict(run_id=run_id, code_version=code_version(),
                                                train_config=identity["train_config"]))
    if ctx.fresh and world.main:
        resume.path.unlink(missing_ok=True)
    workers = default_workers(device) if ctx.workers is None else ctx.workers
    torch.manual_seed(ctx.seed)
    backbone = Backbone(ctx.backbone, ctx.weights, device=device)
    if backbone.weights_label == RANDOM_INIT:
        log.warning("!! %s trains on a RANDOMLY INITIALISED %s: metrics are not comparable", spec.method, ctx.backbone)
    model = build_model(spec.method, backbone, {**data.preset.head, **spec.overrides}).to(device)
    frames = FrameSource(data, backbone)
    # videos missing from the folder were found when the suite was planned; unreadable ones are found here
    missing = dict(ctx.videos.missing) if ctx.videos is not None else {}
    unreadable: dict[str, str] = {}
    named = {split: data.samples(split) for split in (data.train_split, data.eval_split, *spec.predict_splits)}
    available = lambda split: [s for s in named[split] if s.vid not in missing and s.vid not in unreadable]
    truncated = warn_long_queries(named[data.train_split], backbone, data.train_split) if world.main else 0
    truncated += warn_long_queries(named[data.eval_split], backbone, data.eval_split) if world.main else 0
    if model.cacheable:
        cache = feature_cache_for(data, model, cache_dir() / "features")
        if world.main:    # one process fills the cache; the others read it
            unreadable.update(build_features([s.vid for samples in named.values() for s in samples
                                              if s.vid not in missing], frames, model, cache, device,
                                             progress=ctx.progress))
        world.barrier()
        video_fn, source = cached_video_fn(cache, frames, model, device), "features"
    else:
        video_fn, source = frames.get, "frames"
    tokenize = backbone.tokenize
    items = lambda samples: VTGDataset(samples, video_fn, tokenize, data.frame_rate, source, video_name=data.video_path)
    cfg = TrainConfig(**identity["train_config"])
    train_samples = available(data.train_split)
    if not train_samples:
        raise RuntimeError(f"no training video of {data.name} can be read ({len(missing)} missing, "
                           f"{len(unreadable)} unreadable)")
    curve_set = _curve_samples(available(data.eval_split), ctx.curve_queries)

    def on_epoch(epoch: int) -> dict:
        """The learning curve's point: MR mAP (or the dataset's headline) on a fixed subset of val queries."""
        if not curve_set:
            return {}
        lines, _ = predict(model, items(curve_set), cfg.eval_batch_size, device, cfg.amp, progress=False,
                           workers=0, unreadable={}, alone=False)     # batched: a curve need not equal the Predictor
        scored = [s for s in curve_set if any(line["qid"] == s.qid for line in lines)]
        brief = evaluate(data.spec.metric, lines, scored).brief
        key = next((k for k in CURVE_KEYS if k in brief), None)
        return {f"val_{key}": brief[key], "val_queries": len(scored)} if key else {}

    stats = train(model, items(train_samples), cfg, device, progress=ctx.progress, resume=resume, workers=workers,
                  on_epoch=on_epoch if ctx.curve_queries else None)
    unreadable.update(stats["unreadable"])
    if not world.main:
        return {}
    save_checkpoint(model, run_dir / CHECKPOINT_FILE)
    write_model_card(run_dir, method=spec.method, config=identity["config"], backbone=ctx.backbone, weights=ctx.weights,
                     fps=data.fps, amp=cfg.amp, dataset=data.name)

    lines, eval_seconds = predict(model, items(available(data.eval_split)), cfg.eval_batch_size, device, cfg.amp,
                                  progress=ctx.progress, workers=workers, unreadable=unreadable)
    evaluated = available(data.eval_split)
    if not evaluated:
        raise RuntimeError(f"no evaluation video of {data.name} can be read ({len(missing)} missing, "
                           f"{len(unreadable)} unreadable)")
    pred_path = atomic_write(run_dir / f"{data.eval_split}_preds.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    result = evaluate(data.spec.metric, lines, evaluated)
    per_query_path = atomic_write(run_dir / "per_query.csv", result.per_query.to_csv())
    split_predictions, split_per_query, metrics = {}, {}, dict(result.brief)
    for split in spec.predict_splits:     # every query of the split, as a submission must have
        extra, _ = predict(model, items(available(split)), cfg.eval_batch_size, device, cfg.amp,
                           progress=ctx.progress, workers=workers, unreadable=unreadable)
        if named[split] and all(s.windows or s.saliency for s in named[split]):   # its ground truth is given
            scored = evaluate(data.spec.metric, extra, available(split))
            metrics.update({f"{split}:{k}": v for k, v in scored.brief.items()})
            split_per_query[split] = str(atomic_write(run_dir / f"{split}_per_query.csv", scored.per_query.to_csv()))
        done = {line["qid"] for line in extra}
        extra += [empty_prediction(s) for s in named[split] if s.qid not in done]
        order = {s.qid: i for i, s in enumerate(named[split])}
        extra.sort(key=lambda line: order.get(line["qid"], len(order)))
        split_predictions[split] = str(atomic_write(run_dir / f"{split}_preds.jsonl",
                                                    "".join(json.dumps(line) + "\n" for line in extra)))
    timing = _infer_timing(model, evaluated, frames, tokenize, data, cfg, device, ctx.infer_timing)
    resume.path.unlink(missing_ok=True)      # the run is complete: its epoch checkpoint is not needed
    videos = _video_report(named, missing, unreadable, data.eval_split)
    if videos:
        log.warning("%s: %d video(s) missing and %d unreadable; skipped queries: %s", run_id, len(missing),
                    len(unreadable), ", ".join(f"{k} {v}" for k, v in videos["skipped_queries"].items()))
    files = {"checkpoint": run_dir / CHECKPOINT_FILE, "predictions": pred_path, "per_query": per_query_path,
             **{f"{split}_predictions": Path(path) for split, path in split_predictions.items()},
             **{f"{split}_per_query": Path(path) for split, path in split_per_query.items()}}
    return dict(resumed_from_epoch=stats["resumed_from_epoch"], processes=world.size, truncated_queries=truncated,
                params_run=count_params(model), metrics=metrics, predictions=str(pred_path),
                per_query=str(per_query_path), split_predictions=split_predictions, split_per_query=split_per_query,
                files={name: file_digest(path, relative_to=ctx.out_dir) for name, path in files.items()},
                train_videos_per_s=round(stats["videos"] / stats["seconds"], 2), input=source,
                eval_queries_per_s=round(len(lines) / eval_seconds, 2) if eval_seconds else None, **timing,
                train_seconds=round(stats["seconds"], 1), final_losses=stats["losses"], workers=workers,
                curve=stats["curve"],
                n_train=len(train_samples), n_eval=len(evaluated), videos=videos)


CURVE_KEYS = ("MR-full-mAP", "mAP", "Top5-mAP", "HL-min-VeryGood-mAP")


def _curve_samples(samples: list, n: int) -> list:
    """A fixed, spread-out subset of at most ``n`` evaluation samples (every k-th), for the curve."""
    if n <= 0 or not samples:
        return []
    step = max(1, len(samples) // n)
    return samples[::step][:n]


def _video_report(named: dict, missing: dict, unreadable: dict, eval_split: str) -> dict | None:
    """What the record says of videos that could not be used: counts, skipped queries per split
    (in the test split they get empty predictions instead), the first few with their reasons."""
    if not missing and not unreadable:
        return None
    bad = {**missing, **unreadable}
    skipped = {split: sum(s.vid in bad for s in samples) for split, samples in named.items()}
    examples = [dict(vid=v, reason=r) for v, r in list(bad.items())[:20]]
    return dict(missing=len(missing), unreadable=len(unreadable), skipped_queries=skipped, eval_split=eval_split,
                queries={split: len(samples) for split, samples in named.items()}, examples=examples)


def _infer_timing(model, samples, frames: FrameSource, tokenize, data, cfg: TrainConfig, device: torch.device,
                  mode: str) -> dict:
    """End-to-end inference from frames (backbone + head + decoding) on a few evaluation videos
    (``quick``), up to :data:`INFER_SAMPLES` (``full``), or none; decoding is left out of the timing."""
    if mode == "none":
        return {}
    subset, seen = [], set()
    limit = INFER_QUICK if mode == "quick" else INFER_SAMPLES
    for s in samples:                        # one query per video, the first ``limit`` videos
        if s.vid not in seen and len(subset) < limit:
            seen.add(s.vid)
            subset.append(s)
    try:
        for s in subset:                     # decode outside the timed region
            frames.get(s.vid)
    except Exception:   # noqa: BLE001 - timing is a measurement, not the run: an unreadable video skips it
        return dict(infer_videos_per_s=None, infer_timed_videos=0)
    live = VTGDataset(subset, frames.get, tokenize, data.frame_rate, "frames", video_name=data.video_path)
    _, seconds = predict(model, live, cfg.eval_batch_size, device, cfg.amp, progress=False)
    return dict(infer_videos_per_s=round(len(subset) / seconds, 2) if seconds else None, infer_timed_videos=len(subset))
