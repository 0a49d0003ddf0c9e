"""Datasets as the harness sees them: which files, which preset, and batches for the model.

A :class:`DatasetSpec` names the annotation file of every split, the folder of videos, the
frame rate and the training preset (paper Table 8). :class:`VTGDataset` turns samples into
items holding either cached per-layer features or preprocessed frames, and :func:`collate`
pads them into a batch.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
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
    train: dict = field(default_factory=dict)   # bench.train.TrainConfig overrides (Table 8; ``repeat``:
                                                # passes per epoch, as the public configs count epochs)
    head: dict = field(default_factory=dict)    # HeadConfig overrides (dropout, saliency weight, NMS,
                                                # ``window_unit``: the rounding unit of decoded windows, s)
    train_split: str = "train"
    eval_split: str = "val"
    description: str = ""

    @cached_property
    def version(self) -> str:
        """A digest of the annotation files and the videos folder's path: results name it."""
        h = hashlib.blake2b(digest_size=8)
        for split in sorted(self.splits):
            path = Path(self.splits[split])
            h.update(split.encode())
            h.update(path.read_bytes() if path.is_file() else b"<missing>")
        h.update(str(self.video_dir).encode())
        return h.hexdigest()

    def samples(self, split: str) -> list[Sample]:
        if split not in self.splits:
            raise KeyError(f"dataset '{self.name}' has no split '{split}' (has {sorted(self.splits)})")
        return read_jsonl(self.splits[split])

    def video_path(self, vid: str) -> Path:
        path = self.video_dir / f"{vid}.mp4"
        if not path.is_file():
            raise InputError(path, None, "vid", f"video '{vid}' not found in {self.video_dir}")
        return path


# Sized so that all ten Table 9 rows train in about 15 minutes on 2 CPU cores (PETL rows,
# which backpropagate through the tiny CLIP from frames, run at ~24 videos/s there).
SYNTHETIC_SIZES = dict(n_train=160, n_val=50, n_test=40, duration=60)


def synthetic_spec(seed: int = 0, progress: bool = True, **sizes) -> DatasetSpec:
    """The built-in benchmark (generated on first use, cached)."""
    from datasets.synthetic.generator import generate
    root = generate(seed=seed, progress=progress, **{**SYNTHETIC_SIZES, **sizes})
    ann = root / "annotations"
    return DatasetSpec(
        name="synthetic", splits={s: ann / f"{s}.jsonl" for s in ("train", "val", "test")},
        video_dir=root / "videos", fps=0.5,
        train=dict(batch_size=16, lr=1e-3, epochs=9, warmup_iters=30, lr_drop_epoch=7, repeat=1),
        head=dict(dropout=0.1, saliency_weight=0.1, nms="hard", nms_threshold=0.7, window_unit=2.0),  # one clip
        description=f"built-in synthetic benchmark (seed {seed}) at {root}")


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
        # public config: RepeatDataset(times=4), so 30 epochs = 120 passes, LR drop after pass 80
        train=dict(batch_size=128, lr=5e-4, epochs=30, warmup_iters=500, lr_drop_epoch=20, repeat=4),
        head=dict(dropout=0.5, saliency_weight=0.1, nms="hard", nms_threshold=0.7, window_unit=2.0),
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
    """Items for training/evaluation. ``video_fn(vid)`` returns either preprocessed frames
    (T, 3, S, S), ``source="frames"``, or cached tapped features ``{point: (T, L, N, D)}``,
    ``source="features"``."""

    def __init__(self, samples: list[Sample], video_fn: Callable[[str], Tensor | dict], tokenize: Callable,
                 fps: float, source: str):
        if source not in ("frames", "features"):
            raise ValueError(f"source must be 'frames' or 'features', got {source!r}")
        self.samples, self.video_fn, self.fps, self.source = samples, video_fn, fps, source
        self.text_ids = tokenize([s.query for s in samples])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        video = self.video_fn(s.vid)
        length = (video if torch.is_tensor(video) else next(iter(video.values()))).shape[0]
        n = min(length, num_clips(s.duration, self.fps))
        video = video[:n] if torch.is_tensor(video) else {k: v[:n] for k, v in video.items()}
        return dict(qid=s.qid, vid=s.vid, query=s.query, duration=s.duration, video=video, source=self.source,
                    text_ids=self.text_ids[i], windows=torch.tensor(s.windows, dtype=torch.float32).reshape(-1, 2),
                    saliency=saliency_target(s, n, self.fps))


def _pad(tensors: list[Tensor], t: int) -> Tensor:
    out = tensors[0].new_zeros((len(tensors), t, *tensors[0].shape[1:]))
    for i, x in enumerate(tensors):
        out[i, : x.shape[0]] = x
    return out


def collate(items: list[dict], fps: float) -> dict:
    """Pad videos to the longest in the batch (zeros); ``video_mask`` marks real frames.
    Frames go to ``frames`` (B, T, 3, S, S); cached features to ``video_taps`` {point: (B, T, L, N, D)}."""
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
    """The cache of a (backbone, weights, fps, taps) combination."""
    bb = model.backbone
    return FeatureCache(root, dict(backbone=bb.name, weights=bb.weights_label, fps=spec.fps,
                                   taps=model.video_taps.describe(), image_size=bb.image_size))


def extract_features(vid: str, frames: FrameSource, model, device: torch.device, chunk: int = 256) -> dict:
    """The tapped video tokens ``{point: (T, L, N, D)}`` of one video, without gradient."""
    x = frames.get(vid)
    parts: dict[str, list[Tensor]] = {}
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            out = model.backbone.video_tokens(x[i:i + chunk].to(device), model.video_taps)
            for point, v in out.items():
                parts.setdefault(point, []).append(v.cpu())
    return {point: torch.cat(v) for point, v in parts.items()}


def build_features(vids: list[str], frames: FrameSource, model, cache: FeatureCache, device: torch.device,
                   progress: bool = True) -> None:
    """Fill the cache for every video that has no entry yet (fp16 on disk). Entries are verified
    when read: a corrupt one is rebuilt then (see :func:`cached_video_fn`)."""
    missing = [v for v in dict.fromkeys(vids) if not cache.path_for(v).is_file()]
    for vid in tqdm(missing, desc=f"caching features ({model.backbone.name})", disable=not progress or not missing):
        cache.put(vid, extract_features(vid, frames, model, device))


def cached_video_fn(cache: FeatureCache, frames: FrameSource, model, device: torch.device,
                    memo: int = 4096) -> Callable[[str], dict]:
    """``vid → {point: features}`` read from the cache (rebuilt if missing or corrupt), memoised in memory."""
    @lru_cache(maxsize=memo)
    def video(vid: str) -> dict:
        return cache.get_or_compute(vid, lambda: extract_features(vid, frames, model, device))
    return video
