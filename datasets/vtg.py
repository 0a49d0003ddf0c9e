"""Batches for the model: :class:`VTGDataset` turns samples into items holding either cached
per-layer features or preprocessed frames, and :func:`collate` pads them into a batch. What a
dataset is (files, frame rate, preset) lives in :mod:`datasets.registry`.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from r2bench.core.memo import ByteLRU, memo_budget
from r2bench.datasets import registry
from r2bench.datasets.features.cache import FeatureCache, TapCache
from r2bench.datasets.formats.base import Sample
from r2bench.datasets.prepare import encode_frames, feature_key
from r2bench.core.errors import InputError
from r2bench.datasets.video import read_frames, video_identity
from r2bench.methods.backbone import trim_text_ids
from r2bench.methods.head.losses import widen_windows

log = logging.getLogger(__name__)

# A video may hold fewer clips than its annotated duration implies: up to one clip (a partial
# last clip, container rounding) silently; up to SHORT_VIDEO_ERROR_CLIPS with a warning (the
# official pipelines accept frames and labels that differ by fewer than 5 clips); more is an
# error naming the video and the annotation line.
SHORT_VIDEO_ERROR_CLIPS = 5


def num_clips(duration: float, fps: float) -> int:
    return max(1, math.floor(duration * fps + 1e-6))


def saliency_target(sample: Sample, n: int, fps: float) -> Tensor:
    """Per-frame saliency target in [0, 1] for a video of ``n`` frames at ``fps``, as the public
    code builds it:

    * with saliency labels: the target (``Sample.saliency_target``) of the labelled clip the
      frame's centre falls in, 0 for unlabelled clips;
    * without (moment retrieval only: Charades-STA, TACoS, Ego4D-NLQ): 1 on frames
      ``ceil(s·fps) … ceil(e·fps) − 1`` of every window after the public ``bind_boundary``
      (clamped to the ``n`` frames, reversed ends swapped, windows shorter than one frame
      widened to one frame about their centre), else 0.
    """
    target = torch.zeros(n)
    if sample.saliency_target:
        times = (np.arange(n) + 0.5) / fps
        scores = dict(zip(sample.clip_ids, sample.saliency_target))
        for i, t in enumerate(times):
            target[i] = scores.get(int(t // sample.clip_seconds), 0.0)
    elif sample.windows:
        bound = widen_windows(torch.tensor(sample.windows, dtype=torch.float32).reshape(-1, 2),
                              torch.tensor(n), torch.tensor(float(fps)))
        for s, e in (bound * fps).tolist():
            target[max(0, math.ceil(s)):max(0, math.ceil(e))] = 1.0
    return target


class VTGDataset(Dataset):
    """Items for training/evaluation. ``video_fn(vid)`` returns either preprocessed frames
    (T, 3, S, S), ``source="frames"``, or cached tapped features ``{point: (T, L, N, D)}``,
    ``source="features"``. ``fps``: the dataset's frame rate, or a function ``vid → fps`` where it
    is per video (YouTube Highlights: ``BoundDataset.frame_rate``); every item carries its own."""

    def __init__(self, samples: list[Sample], video_fn: Callable[[str], Tensor | dict], tokenize: Callable,
                 fps: float | Callable[[str], float], source: str, video_name: Callable[[str], object] = str):
        if source not in ("frames", "features"):
            raise ValueError(f"source must be 'frames' or 'features', got {source!r}")
        self.samples, self.video_fn, self.fps, self.source = samples, video_fn, fps, source
        self.video_name = video_name          # vid -> what to call the video in messages (its file)
        self.text_ids = tokenize([s.query for s in samples])
        self._short: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def frame_rate(self, vid: str) -> float:
        return float(self.fps(vid) if callable(self.fps) else self.fps)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        fps = self.frame_rate(s.vid)
        try:
            video = self.video_fn(s.vid)
        except InputError as e:
            if e.field not in ("video", "vid"):
                raise
            # a video that cannot be read (or vanished): the item says so, collate drops it, the run counts it
            return dict(unreadable=s.vid, reason=e.message, qid=s.qid)
        length = (video if torch.is_tensor(video) else next(iter(video.values()))).shape[0]
        expected = num_clips(s.duration, fps)
        if expected - length > 1:
            self._check_short(s, length, expected, fps)
        n = min(length, expected)
        video = video[:n] if torch.is_tensor(video) else {k: v[:n] for k, v in video.items()}
        return dict(qid=s.qid, vid=s.vid, query=s.query, duration=s.duration, video=video, source=self.source,
                    text_ids=self.text_ids[i], windows=torch.tensor(s.windows, dtype=torch.float32).reshape(-1, 2),
                    saliency=saliency_target(s, n, fps), fps=fps)


    def _check_short(self, s: Sample, length: int, expected: int, fps: float) -> None:
        """A video shorter than its annotation says: an error beyond SHORT_VIDEO_ERROR_CLIPS
        clips, else one warning per video."""
        seconds = f"{length / fps:g} s of video, {s.duration:g} s annotated"
        where = f"{self.video_name(s.vid)} (annotated at {s.source})"
        if expected - length > SHORT_VIDEO_ERROR_CLIPS:
            path, _, line = s.source.rpartition(":")
            raise InputError(path or s.source, int(line) if line.isdigit() else None, "duration",
                             f"video {self.video_name(s.vid)} holds {length} clips of {1 / fps:g} s, the "
                             f"annotated duration {s.duration:g} s needs {expected} ({seconds}): more than "
                             f"{SHORT_VIDEO_ERROR_CLIPS} clips short; fix the duration or the video")
        if s.vid not in self._short:
            self._short.add(s.vid)
            log.warning("video %s is %d clips shorter than annotated (%s); the windows past its end "
                        "cannot be seen", where, expected - length, seconds)


def long_queries(samples: list[Sample], count_tokens: Callable[[str], int], context: int) -> list[Sample]:
    """The samples whose query needs more than ``context`` tokens (start/end tokens
    included); the tokenizer cuts them, and a run warns with their count."""
    return [s for s in samples if count_tokens(s.query) > context]


def warn_long_queries(samples: list[Sample], backbone, split: str) -> int:
    """Warn (once, with the count and the first few) about queries longer than the text
    encoder's context: they are cut there, as the official code cuts them. Returns the count."""
    context = getattr(backbone, "context_length", None)
    if not context or not hasattr(backbone, "count_tokens"):
        return 0
    long = long_queries(samples, backbone.count_tokens, context)
    if long:
        first = ", ".join(f"{s.source} ({backbone.count_tokens(s.query)} tokens)" for s in long[:3])
        log.warning("%d %s queries are longer than %s's %d-token context and are cut to it: %s%s", len(long),
                    split, backbone.name, context, first, ", ..." if len(long) > 3 else "")
    return len(long)


def _pad(tensors: list[Tensor], t: int) -> Tensor:
    out = tensors[0].new_zeros((len(tensors), t, *tensors[0].shape[1:]))
    for i, x in enumerate(tensors):
        out[i, : x.shape[0]] = x
    return out


def collate(items: list[dict], fps: float | None = None) -> dict:
    """Pad videos to the longest in the batch (zeros); ``video_mask`` marks real frames.
    Frames go to ``frames`` (B, T, 3, S, S); cached features to ``video_taps`` {point: (B, T, L, N, D)}.
    ``fps`` (B,): each item's own (``VTGDataset`` items carry it), else the ``fps`` given.
    Items of videos that could not be read are left out and listed in ``unreadable``
    ({vid: reason}); a batch of nothing else has no ``qid`` (callers skip it)."""
    unreadable = {it["unreadable"]: it["reason"] for it in items if "unreadable" in it}
    items = [it for it in items if "unreadable" not in it]
    if not items:
        return {"unreadable": unreadable, "qid": []}
    rates = [it.get("fps", fps) for it in items]
    if any(r is None or callable(r) for r in rates):
        raise ValueError("collate: an item has no frame rate (pass fps=, or items from VTGDataset)")
    lengths = [it["saliency"].shape[0] for it in items]
    t = max(lengths)
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    saliency = _pad([it["saliency"] for it in items], t)
    if items[0]["source"] == "features":
        video = {"video_taps": {k: _pad([it["video"][k] for it in items], t) for k in items[0]["video"]}}
    else:
        video = {"frames": _pad([it["video"] for it in items], t)}
    return {**video, "video_mask": mask, "saliency": saliency,
            "text_ids": trim_text_ids(torch.stack([it["text_ids"] for it in items])),
            "windows": [it["windows"] for it in items],
            "fps": torch.tensor(rates, dtype=torch.float32),
            "duration": torch.tensor([float(it["duration"]) for it in items]),
            "qid": [it["qid"] for it in items], "vid": [it["vid"] for it in items],
            "query": [it["query"] for it in items], "unreadable": unreadable}


class FrameSource:
    """Preprocessed frames of a dataset's videos (decord at the dataset's fps), memoised within
    ``memo_bytes`` (default: half of :func:`~r2bench.core.memo.memo_budget`)."""

    def __init__(self, dataset: registry.BoundDataset, backbone, memo_bytes: int | None = None):
        self.dataset, self.backbone = dataset, backbone
        self.get = ByteLRU(self._load, memo_budget() // 2 if memo_bytes is None else memo_bytes)

    def identity(self, vid: str) -> str:
        """The identity of ``vid``'s video file (``datasets.video.video_identity``)."""
        return video_identity(self.dataset.video_path(vid))

    def _load(self, vid: str) -> Tensor:
        frames = read_frames(self.dataset.video_path(vid), self.dataset.frame_rate(vid), self.backbone.image_size)
        return self.backbone.preprocess(frames).cpu()


def feature_cache_for(dataset: registry.BoundDataset, model, root: Path) -> TapCache:
    """The cache of a (backbone, weights, fps, taps) combination (the one ``datasets.prepare``
    fills), reading also from any cache of the same backbone, weights and fps whose taps cover
    the model's (a K = 4 entry serves a K = 1 run)."""
    return TapCache.find(root, feature_key(model.backbone, dataset.fps, model.video_taps), model.video_taps)


def extract_features(vid: str, frames: FrameSource, model, device: torch.device, chunk: int = 256) -> dict:
    """The tapped video tokens ``{point: (T, L, N, D)}`` of one video, without gradient."""
    return encode_frames(model.backbone, frames.get(vid), model.video_taps, device, chunk)


def build_features(vids: list[str], frames: FrameSource, model, cache: TapCache, device: torch.device,
                   progress: bool = True) -> dict[str, str]:
    """Fill the cache for every video that has no whole entry made from its current file yet
    (fp16 on disk); returns the videos that could not be read ({vid: reason}), which are not
    cached. Entries are verified when read: a corrupt one is rebuilt then (see :func:`cached_video_fn`)."""
    unreadable: dict[str, str] = {}
    missing = []
    for v in dict.fromkeys(vids):
        try:
            if not cache.complete(v, frames.identity(v)):
                missing.append(v)
        except InputError as e:
            unreadable[v] = e.message
    for vid in tqdm(missing, desc=f"caching features ({model.backbone.name})", disable=not progress or not missing):
        try:
            cache.put(vid, extract_features(vid, frames, model, device), frames.identity(vid))
        except InputError as e:
            unreadable[vid] = e.message
    return unreadable


def cached_video_fn(cache: TapCache, frames: FrameSource, model, device: torch.device,
                    memo_bytes: int | None = None) -> Callable[[str], dict]:
    """``vid → {point: features}`` read from the cache (rebuilt if missing or corrupt), memoised
    in memory within ``memo_bytes`` (default: half of :func:`~r2bench.core.memo.memo_budget`)."""
    def video(vid: str) -> dict:
        return cache.get_or_compute(vid, lambda: extract_features(vid, frames, model, device), frames.identity(vid))
    return ByteLRU(video, memo_budget() // 2 if memo_bytes is None else memo_bytes)
