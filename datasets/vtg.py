"""Datasets as the harness sees them: which files, which preset, and batches for the model.

A :class:`DatasetSpec` names the annotation file of every split, the folder of videos, the
frame rate and the training preset (paper Table 8). :class:`VTGDataset` turns samples into
items holding either cached per-layer features or preprocessed frames, and :func:`collate`
pads them into a batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from datasets.io import SHARED_DIR
from datasets.formats.qvhighlights import CLIP_SECONDS, Sample, read_jsonl
from datasets.errors import InputError
from datasets.features.cache import FeatureCache
from datasets.video import read_frames
from methods.backbone import trim_text_ids



@dataclass
class DatasetSpec:
    name: str
    splits: dict[str, Path]
    video_dir: Path
    fps: float
    train: dict = field(default_factory=dict)   # bench.train.TrainConfig overrides (Table 8)
    head: dict = field(default_factory=dict)    # HeadConfig overrides (dropout, saliency weight, NMS, …)
    train_split: str = "train"
    eval_split: str = "val"
    description: str = ""

    def samples(self, split: str) -> list[Sample]:
        if split not in self.splits:
            raise KeyError(f"dataset '{self.name}' has no split '{split}' (has {sorted(self.splits)})")
        return read_jsonl(self.splits[split])

    def video_path(self, vid: str) -> Path:
        path = self.video_dir / f"{vid}.mp4"
        if not path.is_file():
            raise InputError(path, None, "vid", f"video '{vid}' not found in {self.video_dir}")
        return path


def synthetic_spec(seed: int = 0, progress: bool = True, size: str = "default", **sizes) -> DatasetSpec:
    """The built-in benchmark at ``size`` (``datasets.synthetic.presets``: videos and training
    preset; ``sizes`` override the video counts), generated on first use and cached."""
    from datasets.synthetic.generator import generate
    from datasets.synthetic.presets import PRESETS, SIZES, benchmark_version
    version = benchmark_version(size) + ("-custom" if sizes else "")
    root = generate(seed=seed, progress=progress, **{**SIZES[size], **sizes})
    ann = root / "annotations"
    return DatasetSpec(
        name="synthetic", splits={s: ann / f"{s}.jsonl" for s in ("train", "val", "test")},
        video_dir=root / "videos", fps=0.5, train=dict(PRESETS[size]["train"]), head=dict(PRESETS[size]["head"]),
        description=f"built-in synthetic benchmark {version} (seed {seed}) at {root}")


def qvhighlights_spec(video_dir: str | Path, annotation_dir: str | Path | None = None) -> DatasetSpec:
    """QVHighlights with the paper's preset; annotations default to ../shared's public files."""
    ann = Path(annotation_dir) if annotation_dir else SHARED_DIR / "data" / "annotations" / "qvhighlights"
    splits = {s: ann / f"highlight_{s}_release.jsonl" for s in ("train", "val", "test")}
    for split, path in splits.items():
        if split != "test" and not path.is_file():
            raise InputError(path, None, None, f"QVHighlights {split} annotations not found (pass --annotations)")
    if not Path(video_dir).is_dir():
        raise InputError(video_dir, None, "video_dir", "QVHighlights videos folder not found (pass --video-dir)")
    return DatasetSpec(
        name="qvhighlights", splits=splits, video_dir=Path(video_dir), fps=0.5,
        train=dict(batch_size=128, lr=5e-4, epochs=30, warmup_iters=500, lr_drop_epoch=20),
        head=dict(dropout=0.5, saliency_weight=0.1, nms="hard", nms_threshold=0.7),
        description=f"QVHighlights (videos in {video_dir})")


def num_clips(duration: float, fps: float) -> int:
    return max(1, math.floor(duration * fps + 1e-6))


def saliency_target(sample: Sample, n: int, fps: float) -> Tensor:
    """Per-frame saliency: mean annotator score of the 2-s clip the frame falls in; without
    saliency labels, 1 inside the relevant windows."""
    times = (np.arange(n) + 0.5) / fps
    target = torch.zeros(n)
    if sample.saliency:
        scores = {cid: float(np.mean(row)) for cid, row in zip(sample.clip_ids, sample.saliency)}
        for i, t in enumerate(times):
            target[i] = scores.get(int(t // CLIP_SECONDS), 0.0)
    else:
        for s, e in sample.windows:
            target[torch.as_tensor((times >= s) & (times < e))] = 1.0
    return target


class VTGDataset(Dataset):
    """Items for training/evaluation: ``video`` is either cached features (T, K, N, D),
    ``source="features"``, or preprocessed frames (T, 3, S, S), ``source="frames"``, as returned
    by ``video_fn(vid)``."""

    def __init__(self, samples: list[Sample], video_fn: Callable[[str], Tensor], tokenize: Callable,
                 fps: float, source: str):
        self.samples, self.video_fn, self.fps, self.source = samples, video_fn, fps, source
        self.text_ids = tokenize([s.query for s in samples])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        video = self.video_fn(s.vid)
        n = min(video.shape[0], num_clips(s.duration, self.fps))
        return dict(qid=s.qid, vid=s.vid, query=s.query, duration=s.duration, video=video[:n], source=self.source,
                    text_ids=self.text_ids[i], windows=torch.tensor(s.windows, dtype=torch.float32).reshape(-1, 2),
                    saliency=saliency_target(s, n, self.fps))


def collate(items: list[dict], fps: float) -> dict:
    """Pad videos to the longest in the batch; ``video_mask`` marks real frames."""
    t = max(it["video"].shape[0] for it in items)
    video = items[0]["video"].new_zeros((len(items), t, *items[0]["video"].shape[1:]))
    mask = torch.zeros(len(items), t, dtype=torch.bool)
    saliency = torch.zeros(len(items), t)
    for i, it in enumerate(items):
        n = it["video"].shape[0]
        video[i, :n], mask[i, :n], saliency[i, :n] = it["video"], True, it["saliency"]
    key = "video_features" if items[0]["source"] == "features" else "frames"
    return {key: video, "video_mask": mask, "saliency": saliency,
            "text_ids": trim_text_ids(torch.stack([it["text_ids"] for it in items])),
            "windows": [it["windows"] for it in items],
            "fps": torch.full((len(items),), fps),
            "duration": torch.tensor([float(it["duration"]) for it in items]),
            "qid": [it["qid"] for it in items], "vid": [it["vid"] for it in items],
            "query": [it["query"] for it in items]}


class FrameSource:
    """Preprocessed frames of a dataset's videos (decord at the dataset's fps), memoised."""

    def __init__(self, spec: DatasetSpec, backbone, cache_size: int = 512):
        self.spec, self.backbone = spec, backbone
        self.get = lru_cache(maxsize=cache_size)(self._load)

    def _load(self, vid: str) -> Tensor:
        frames = read_frames(self.spec.video_path(vid), self.spec.fps, self.backbone.image_size)
        return self.backbone.preprocess(frames).cpu()


def feature_cache_for(spec: DatasetSpec, model, root: Path) -> FeatureCache:
    """The cache of a (backbone, weights, fps, layers) combination."""
    bb = model.backbone
    return FeatureCache(root, dict(backbone=bb.name, weights=bb.weights_label, fps=spec.fps,
                                   layers=list(model.layers), image_size=bb.image_size))


def extract_features(vid: str, frames: FrameSource, model, device: torch.device, chunk: int = 256) -> dict:
    """Per-layer video tokens (T, K, N, D) of one video, without gradient."""
    x = frames.get(vid)
    with torch.no_grad():
        parts = [model.backbone.encode_video(x[i:i + chunk].to(device), model.layers).cpu()
                 for i in range(0, len(x), chunk)]
    return {"video": torch.cat(parts)}


def build_features(vids: list[str], frames: FrameSource, model, cache: FeatureCache, device: torch.device,
                   progress: bool = True) -> None:
    """Fill the cache for every video that has no entry yet (fp16 on disk). Entries are verified
    when read: a corrupt one is rebuilt then (see :func:`cached_video_fn`)."""
    missing = [v for v in dict.fromkeys(vids) if not cache.path_for(v).is_file()]
    for vid in tqdm(missing, desc=f"caching features ({model.backbone.name})", disable=not progress or not missing):
        cache.put(vid, extract_features(vid, frames, model, device))


def cached_video_fn(cache: FeatureCache, frames: FrameSource, model, device: torch.device,
                    memo: int = 4096) -> Callable[[str], Tensor]:
    """``vid → features`` read from the cache (rebuilt if missing or corrupt), memoised in memory."""
    @lru_cache(maxsize=memo)
    def video(vid: str) -> Tensor:
        return cache.get_or_compute(vid, lambda: extract_features(vid, frames, model, device))["video"]
    return video
