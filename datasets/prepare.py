"""Prepare a real video folder: decode, encode with the frozen CLIP, cache per-layer features.

    python -m r2bench.datasets.prepare --dataset qvhighlights --annotations highlight_val_release.jsonl \\
        --video-dir videos/ --weights ViT-B-32.pt [--backbone ViT-B-32] [--k 4 | --layers all] \\
        [--points block] [--layout full|cls-pooled] [--workers N] [--device auto]

Frames are decoded with decord at the dataset's fps (``datasets.video.read_frames``) in a pool
of processes (one per core by default) while the main process runs the backbone; features go
to the same :class:`FeatureCache` a run reads (``$R2BENCH_CACHE/features``, keyed by backbone,
weights, fps, taps (blocks and points) and image size), one checksummed fp16 file per video. A re-run resumes:
entries already complete are skipped (a cheap header and size check; ``--verify`` checks every
checksum). Missing or unreadable videos are skipped, listed on the console and in a JSON report
(``--report``, default beside the cache entries), and make the exit status 1 (``--allow-missing``:
0); the videos that did work stay cached. Bad arguments or annotation files: exit status 2.
See docs/datasets.md for what the cache costs and what each layout supports.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from r2bench.core.errors import InputError
from r2bench.datasets.features.cache import FeatureCache
from r2bench.core.io import atomic_write, cache_dir
from r2bench.datasets.video import video_identity
from r2bench.methods.hooks import Taps

log = logging.getLogger(__name__)

LAYOUTS = ("full", "cls-pooled")


# --------------------------------------------------------------------------- what a run shares

def feature_key(backbone, fps: float | None, taps: Taps, layout: str = "full") -> dict:
    """The cache key of ``backbone``'s tokens at ``taps`` (0-based blocks and points) at ``fps``
    (``None``: per-video rate, one frame per labelled clip). The full layout adds nothing to the
    key: a run (``datasets.vtg.feature_cache_for``) reads what this fills."""
    key = dict(backbone=backbone.name, weights=backbone.weights_label, fps=fps, taps=taps.describe(),
               image_size=backbone.image_size)
    if layout != "full":
        key["layout"] = layout
    return key


def encode_frames(backbone, images: Tensor, taps: Taps, device: torch.device | str = "cpu",
                  chunk: int = 256) -> dict[str, Tensor]:
    """Normalised frames (T, 3, S, S) → tapped tokens ``{point: (T, L, N, D)}`` on the CPU,
    without gradient, ``chunk`` frames per forward pass. The one place that runs the backbone
    for cached features."""
    parts: dict[str, list[Tensor]] = {}
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            for point, v in backbone.video_tokens(images[i:i + chunk].to(device), taps).items():
                parts.setdefault(point, []).append(v.cpu())
    return {point: torch.cat(v) for point, v in parts.items()}


def apply_layout(tokens: Tensor, layout: str) -> Tensor:
    """``full``: (T, L, N, D) as is. ``cls-pooled``: (T, L, 2, D) = [CLS, mean of the patch tokens]."""
    if layout == "full":
        return tokens
    if layout == "cls-pooled":
        return torch.stack([tokens[:, :, 0], tokens[:, :, 1:].mean(dim=2)], dim=2)
    raise ValueError(f"unknown layout '{layout}' (known: {', '.join(LAYOUTS)})")


def entry_complete(cache: FeatureCache, vid: str, source: str | None = None) -> bool:
    """Cheap resume check: the entry's header names this video, key and (given) source file,
    and the file is as long as the header says (catches a missing or truncated file, not
    flipped bits)."""
    return cache.complete(vid, source)


# --------------------------------------------------------------------------- decoding in processes

def _init_worker() -> None:
    torch.set_num_threads(1)   # one core per decoding process


def _decode(vid: str, path: str, fps: float, size: int) -> tuple[str, np.ndarray | None, str | None]:
    """``(vid, uint8 frames (T, S, S, 3), None)`` or ``(vid, None, reason)``; never raises."""
    from r2bench.datasets.video import read_frames
    try:
        return vid, read_frames(path, fps, size), None
    except InputError as e:
        return vid, None, e.message
    except Exception as e:  # any decoder failure is reported per video
        return vid, None, f"{type(e).__name__}: {e}"


def _pool(workers: int) -> ProcessPoolExecutor:
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method), initializer=_init_worker)


@dataclass
class _Job:
    vid: str
    path: Path
    fps: float
    source: str | None = None


def _decoded(jobs: list[_Job], size: int, workers: int,
             failed: list[dict]) -> Iterator[tuple[_Job, np.ndarray]]:
    """Yield ``(job, frames)`` as videos finish decoding (at most ``2 × workers`` in flight);
    failures go to ``failed``. ``workers=0`` decodes in this process.

    If a decoding process dies (a decoder crash takes the whole pool down), the pool is
    restarted and the videos that were in flight are retried one at a time, so that the one
    that crashes is identified and skipped, and the others are kept."""
    if workers == 0:
        for job in jobs:
            _, frames, reason = _decode(job.vid, str(job.path), job.fps, size)
            if reason is None:
                yield job, frames
            else:
                failed.append(dict(vid=job.vid, path=str(job.path), reason=reason))
        return
    queue, suspects = deque(jobs), deque()
    running: dict[Future, _Job] = {}
    pool = _pool(workers)

    def start(source: deque) -> bool:
        """Submit the next job of ``source``; False (job put back) if the pool is broken."""
        job = source.popleft()
        try:
            running[pool.submit(_decode, job.vid, str(job.path), job.fps, size)] = job
            return True
        except BrokenProcessPool:
            source.appendleft(job)
            return False

    try:
        while queue or suspects or running:
            alone = bool(suspects)
            if alone:
                healthy = start(suspects) if not running else True
            else:
                healthy = True
                while healthy and queue and len(running) < 2 * workers:
                    healthy = start(queue)
            broken = not healthy
            if healthy:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = running.pop(fut)
                    try:
                        _, frames, reason = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        if alone:
                            failed.append(dict(vid=job.vid, path=str(job.path),
                                               reason="the decoding process crashed on this video"))
                        else:
                            suspects.append(job)
                        continue
                    if reason is None:
                        yield job, frames
                    else:
                        failed.append(dict(vid=job.vid, path=str(job.path), reason=reason))
            if broken:   # the pool is gone: the videos still in flight are retried one at a time
                suspects.extend(running.values())
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                log.warning("a decoding process crashed; retrying the videos it was decoding one at a time")
                pool = _pool(workers)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- the preparation

@dataclass
class Report:
    dataset: str
    annotations: str
    video_dir: str
    cache_dir: str
    key: dict
    layout: str
    videos: int = 0
    already_cached: int = 0
    prepared: int = 0
    skipped: list[dict] = field(default_factory=list)
    frames: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    status: str = "running"

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["bytes_per_video"] = round(self.bytes_written / self.prepared) if self.prepared else None
        d["videos_per_s"] = round(self.prepared / self.seconds, 3) if self.seconds else None
        return d


def prepare(dataset: str, annotations: str | os.PathLike, video_dir: str | os.PathLike, backbone,
            taps: Taps, cache_root: str | os.PathLike | None = None, *, layout: str = "full",
            workers: int | None = None, device: torch.device | str = "cpu", chunk: int = 256,
            verify: bool = False, report_path: str | os.PathLike | None = None,
            progress: bool = True) -> tuple[Report, Path]:
    """Cache the features of every video named in ``annotations``; returns the report and its path.

    The report is written (atomically) also when the run is interrupted, with ``status``
    ``interrupted``; otherwise ``complete`` or ``incomplete`` (some videos skipped).
    """
    from r2bench.datasets.registry import get_dataset
    spec = get_dataset(dataset)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}' (known: {', '.join(LAYOUTS)})")
    data = spec.bind({"input": annotations}, video_dir)
    data.check(["input"])
    samples = spec.read(annotations, require_labels=False)   # a test split names videos too
    per_video: dict[str, float] = {}
    for s in samples:
        per_video.setdefault(s.vid, spec.fps if spec.fps is not None else s.num_clips / s.duration)
    cache = FeatureCache(Path(cache_root) if cache_root is not None else cache_dir() / "features",
                         feature_key(backbone, spec.fps, taps, layout))
    report = Report(dataset=dataset, annotations=str(annotations), video_dir=str(video_dir), cache_dir=str(cache.dir),
                    key=cache.key, layout=layout, videos=len(per_video))
    stem = f"prepare-{dataset}-{Path(annotations).stem}"
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1e6) % 1_000_000:06d}Z"
    # one report per invocation (a re-run never overwrites an earlier one), and a running summary
    report_path = Path(report_path) if report_path else cache.dir / f"{stem}-{stamp}-{os.getpid()}.json"
    summary_path = cache.dir / f"{stem}-summary.json"
    start = time.perf_counter()
    try:
        todo: list[_Job] = []
        for vid, fps in per_video.items():
            try:
                path = data.video_path(vid)
                source = video_identity(path)
            except InputError as e:
                report.skipped.append(dict(vid=vid, path=e.path, reason=e.message))
                continue
            if (cache.get(vid, source) is not None) if verify else entry_complete(cache, vid, source):
                report.already_cached += 1
                continue
            todo.append(_Job(vid, path, fps, source))
        log.info("%s: %d videos, %d cached already, %d to prepare, %d missing -> %s", dataset, report.videos,
                 report.already_cached, len(todo), len(report.skipped), cache.dir)
        backbone = backbone.to(device).eval()
        workers = (os.cpu_count() or 1) if workers is None else workers
        bar = tqdm(total=len(todo), desc=f"preparing {dataset}", unit="video", disable=not progress or not todo)
        with closing(_decoded(todo, backbone.image_size, workers, report.skipped)) as decoded:
            for job, frames in decoded:
                tokens = encode_frames(backbone, backbone.preprocess(frames), taps, device, chunk)
                cache.put(job.vid, {point: apply_layout(v, layout) for point, v in tokens.items()}, job.source)
                report.prepared += 1
                report.frames += len(frames)
                report.bytes_written += cache.path_for(job.vid).stat().st_size
                bar.update()
                bar.set_postfix(skipped=len(report.skipped))
        bar.close()
        report.status = "incomplete" if report.skipped else "complete"
    except BaseException:
        report.status = "interrupted"
        raise
    finally:
        report.seconds = round(time.perf_counter() - start, 2)
        atomic_write(report_path, json.dumps(report.as_dict(), indent=2) + "\n")
        write_summary(summary_path, report, report_path, stamp)
    return report, report_path


def write_summary(path: Path, report: Report, report_path: Path, stamp: str) -> Path:
    """Update the running summary of every ``prepare`` of one annotation file into one cache:
    videos cached now, prepared in all, the skipped videos of the latest invocation, and one line
    per invocation (with its own report's file)."""
    try:
        summary = json.loads(path.read_text())
        assert isinstance(summary.get("invocations"), list)
    except (OSError, ValueError, AssertionError):
        summary = dict(invocations=[])
    summary["invocations"].append(dict(started=stamp, report=report_path.name, status=report.status,
                                       prepared=report.prepared, already_cached=report.already_cached,
                                       skipped=len(report.skipped), seconds=report.seconds))
    summary.update(dataset=report.dataset, annotations=report.annotations, video_dir=report.video_dir,
                   key=report.key, videos=report.videos, cached=report.prepared + report.already_cached,
                   prepared_in_all=sum(i["prepared"] for i in summary["invocations"]),
                   skipped_now=report.skipped)
    return atomic_write(path, json.dumps(summary, indent=2) + "\n")


# --------------------------------------------------------------------------- command line

def _taps(args, backbone) -> Taps:
    depth = backbone.depth
    if args.layers is None:
        if not 1 <= args.k <= depth:
            raise InputError(None, None, "k", f"expected 1 <= K <= {depth} (the backbone's depth), found {args.k}")
        layers: int | list[int] = args.k
    elif args.layers == ["all"]:
        layers = list(range(depth))
    else:
        try:
            layers = sorted({int(x) for x in args.layers})
        except ValueError:
            raise InputError(None, None, "layers", f"expected 'all' or 0-based block indices, "
                                                   f"found {args.layers}") from None
        if layers[0] < 0 or layers[-1] >= depth:
            raise InputError(None, None, "layers", f"expected block indices in 0..{depth - 1}, found {layers}")
    try:
        return backbone.taps(layers, args.points)
    except ValueError as e:
        raise InputError(None, None, "points", str(e)) from None


def main(argv: list[str] | None = None) -> int:
    from r2bench.datasets.registry import DATASETS
    p = argparse.ArgumentParser(prog="r2bench prepare", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--annotations", required=True, help="annotation file naming the videos (any split)")
    p.add_argument("--video-dir", required=True, help="folder of the videos (<vid>.mp4, .mkv, ...)")
    p.add_argument("--weights", help="local CLIP checkpoint file")
    p.add_argument("--random-init", action="store_true", help="no weights: a randomly initialised backbone")
    p.add_argument("--backbone", default="ViT-B-32", help="open_clip model name (default ViT-B-32)")
    p.add_argument("--k", type=int, default=4, help="cache the last K blocks (default 4, what the R² head reads)")
    p.add_argument("--layers", nargs="+", help="instead of --k: 'all' or 0-based block indices")
    p.add_argument("--points", nargs="+", default=["block"],
                   help="what to keep of each tapped block: block (default), attn, mlp (side networks)")
    p.add_argument("--layout", choices=LAYOUTS, default="full",
                   help="full: every token (CLS + patches); cls-pooled: CLS + mean patch (25x smaller at B/32)")
    p.add_argument("--cache-dir", type=Path, help="feature cache root (default $R2BENCH_CACHE/features)")
    p.add_argument("--workers", type=int, help="decoding processes (default: one per core; 0: in this process)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--chunk", type=int, default=256, help="frames per backbone forward pass")
    p.add_argument("--verify", action="store_true", help="verify every existing entry's checksum (reads it all)")
    p.add_argument("--report", type=Path, help="JSON report path (default: in the cache folder)")
    p.add_argument("--allow-missing", action="store_true", help="exit 0 even if videos were skipped")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from r2bench.methods.backbone import Backbone, BackboneError
    if args.weights is None and not args.random_init:
        log.error("error: pass --weights CKPT (a local CLIP checkpoint) or --random-init")
        return 2
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    try:
        backbone = Backbone(args.backbone, args.weights)
        taps = _taps(args, backbone)
        report, path = prepare(args.dataset, args.annotations, args.video_dir, backbone, taps, args.cache_dir,
                               layout=args.layout, workers=args.workers, device=device, chunk=args.chunk,
                               verify=args.verify, report_path=args.report, progress=not args.quiet)
    except (InputError, BackboneError) as e:
        log.error("error: %s", e)
        return 2
    log.info("prepared %d, cached already %d, skipped %d of %d videos in %.1f s -> %s", report.prepared,
             report.already_cached, len(report.skipped), report.videos, report.seconds, report.cache_dir)
    if report.skipped:
        log.error("%d video(s) skipped (not cached):", len(report.skipped))
        for item in report.skipped[:20]:
            log.error("  %s: %s (%s)", item["vid"], item["reason"], item["path"])
        if len(report.skipped) > 20:
            log.error("  ... and %d more", len(report.skipped) - 20)
    log.info("report: %s", path)
    return 1 if report.skipped and not args.allow_missing else 0


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
