"""Datasets as data: one :class:`DatasetSpec` per benchmark, in one registry.

A spec says what a dataset *is*: its reader (``format``), its metric (a name that
``bench.metrics`` looks up: datasets never import bench), its tasks, frame rate, labelled-clip
length, annotation files, splits, domains and its training preset (paper Table 8, public
configs; ``../shared/spec/R2_TUNING.md``). ``spec.bind(annotations, video_dir)`` gives a
:class:`BoundDataset`: those files on this machine, read on demand.

Adding a dataset is one ``register_dataset(DatasetSpec(...))`` (plus a reader in
``datasets/formats/`` if its format is new); no harness file changes.

A preset can be overridden with ``KEY=VALUE`` strings (``train.lr=1e-4``, ``head.dropout=0.3``):
see :func:`parse_overrides`. ``train.*`` keys are checked against :data:`TRAIN_KEYS`, declared
here because datasets cannot import ``bench.train`` (a test keeps it in step with
``TrainConfig``; a caller may pass its own list); ``head.*`` keys against ``HeadConfig``.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property, partial
from os import PathLike
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import Any, Callable, Collection, Mapping, Sequence

from r2bench.core.errors import InputError
from r2bench.datasets.formats import get_reader
from r2bench.datasets.formats import tvsum as tvsum_format
from r2bench.datasets.formats import youtube as youtube_format
from r2bench.datasets.formats.base import Sample
from r2bench.core.io import SHARED_DIR

TASKS = ("mr", "hd")          # moment retrieval, highlight detection
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".webm", ".mov")

# bench.train.TrainConfig's fields (``repeat``: passes over the training set per epoch, the
# public QVHighlights config's RepeatDataset): name -> accepted value types.
TRAIN_KEYS: dict[str, tuple[type, ...]] = {
    "epochs": (int,), "batch_size": (int,), "eval_batch_size": (int,), "lr": (int, float),
    "weight_decay": (int, float), "warmup_iters": (int,), "lr_drop_epoch": (int, type(None)),
    "grad_clip": (int, float), "amp": (bool,), "seed": (int,), "repeat": (int,), "accumulate": (int,),
}


# --------------------------------------------------------------------------- presets

def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Preset:
    """A dataset's training preset: ``train`` (TrainConfig fields) and ``head`` (HeadConfig fields)."""

    train: Mapping[str, Any] = field(default_factory=dict)
    head: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "train", _frozen(self.train))
        object.__setattr__(self, "head", _frozen(self.head))

    def override(self, changes: Mapping[str, Mapping[str, Any]]) -> Preset:
        """A new preset with ``{"train": {...}, "head": {...}}`` applied on top."""
        return Preset(train={**self.train, **changes.get("train", {})}, head={**self.head, **changes.get("head", {})})

    def as_dict(self) -> dict:
        return {"train": dict(self.train), "head": dict(self.head)}


def _head_keys() -> tuple[str, ...]:
    from r2bench.methods.head.config import HeadConfig   # imported when needed: it brings torch along
    return tuple(f.name for f in dataclasses.fields(HeadConfig))


def _parse_value(text: str) -> Any:
    """JSON (``1e-4``, ``true``, ``null``, ``[1, 2]``), else a Python literal (``None``, ``(1, 2)``,
    ``1,2``), else the text itself (``linear``)."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    if text.lower() in ("none", "null"):
        return None
    return text


def _unknown(kind: str, key: str, allowed: Collection[str]) -> InputError:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean '{kind}.{close[0]}'?)" if close else ""
    return InputError("--set", None, f"{kind}.{key}",
                      f"unknown {kind} setting{hint}; known: {', '.join(sorted(allowed))}")


def parse_overrides(items: Sequence[str], train_keys: Collection[str] | None = None,
                    head_keys: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """``["train.lr=1e-4", "head.dropout=0.3"]`` → ``{"train": {"lr": 1e-4}, "head": {"dropout": 0.3}}``.

    Unknown sections or keys, a missing ``=``, and values of the wrong type (``train.*``) are
    ``InputError``s naming the key and listing what is allowed. ``train_keys`` defaults to
    :data:`TRAIN_KEYS`, ``head_keys`` to ``HeadConfig``'s fields.
    """
    train_allowed = set(train_keys) if train_keys is not None else set(TRAIN_KEYS)
    head_allowed = set(head_keys) if head_keys is not None else set(_head_keys())
    out: dict[str, dict[str, Any]] = {"train": {}, "head": {}}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise InputError("--set", None, key or None,
                             f"expected SECTION.KEY=VALUE with SECTION 'train' or 'head' (e.g. train.lr=1e-4), "
                             f"found {item!r}")
        if section not in out:
            raise InputError("--set", None, key, f"unknown section '{section}': expected 'train' or 'head'")
        allowed = train_allowed if section == "train" else head_allowed
        if name not in allowed:
            raise _unknown(section, name, allowed)
        value = _parse_value(text.strip())
        types = TRAIN_KEYS.get(name) if section == "train" else None
        if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise InputError("--set", None, key, f"expected {names}, found {value!r}")
        out[section][name] = value
    return out


def check_head(head: Mapping[str, Any], where: str = "<preset>") -> None:
    """Build ``HeadConfig(**head)`` so that a bad value fails now, naming the key."""
    from r2bench.methods.head.config import HeadConfig
    unknown = set(head) - set(_head_keys())
    if unknown:
        raise _unknown("head", sorted(unknown)[0], _head_keys())
    try:
        HeadConfig(**dict(head))
    except (ValueError, TypeError) as e:
        name, sep, message = str(e).partition(": ")
        if sep and name in head:                     # "dropout: expected a number, got 'abc'"
            raise InputError(where, None, f"head.{name}", message) from None
        raise InputError(where, None, "head", str(e)) from None


# --------------------------------------------------------------------------- specs

@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """What a dataset is (see the module docstring). ``fps``/``clip_seconds`` ``None``: per
    video (YouTube Highlights: one frame per labelled clip, ``num_clips / duration``)."""

    name: str
    title: str
    format: str                                   # reader, datasets.formats.READERS
    metric: str                                   # bench.metrics.METRICS
    tasks: frozenset[str]
    fps: float | None                             # feature frames per second
    clip_seconds: float | None                    # length of a labelled saliency clip
    annotation_files: Mapping[str, str]           # split -> default file name
    annotation_dir: Path | None = None            # default: ../shared/data/annotations/<name>
    train_split: str = "train"
    eval_split: str = "val"
    test_split: str | None = None
    unlabelled_splits: frozenset[str] = frozenset()   # splits whose files carry no ground truth
    domains: tuple[str, ...] = ()
    per_domain: bool = False                      # the paper trains and scores one model per domain
    preset: Preset = field(default_factory=Preset)
    video_name: str = "{vid}"                     # file stem of a video (TACoS: "{vid}-cam-002")
    video_exts: tuple[str, ...] = VIDEO_EXTS
    notes: str = ""                               # what the public code does that the preset cannot say
    stand_in_for: tuple[str, ...] = ()            # a synthetic stand-in of these datasets' task
    materialize: Callable[[bool, str | None], Path] | None = field(default=None, compare=False, repr=False)
    # Named sizes of a generated dataset (the built-in benchmark: small/default/large): size ->
    # its preset; ``size`` is the one this spec is at, ``version_name(size)`` names it in records.
    sizes: Mapping[str, Preset] = field(default_factory=dict, compare=False, repr=False)
    size: str | None = None
    version_name: Callable[[str | None], str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "tasks", frozenset(self.tasks))
        object.__setattr__(self, "annotation_files", _frozen(self.annotation_files))
        object.__setattr__(self, "unlabelled_splits", frozenset(self.unlabelled_splits))
        if not self.tasks or not self.tasks <= set(TASKS):
            raise ValueError(f"{self.name}: tasks must be a non-empty subset of {TASKS}, got {sorted(self.tasks)}")
        for split in (self.train_split, self.eval_split, self.test_split):
            if split is not None and split not in self.annotation_files:
                raise ValueError(f"{self.name}: split '{split}' has no annotation file "
                                 f"(has {sorted(self.annotation_files)})")
        bad = set(self.preset.train) - set(TRAIN_KEYS)
        if bad:
            raise ValueError(f"{self.name}: preset train keys {sorted(bad)} are not in TRAIN_KEYS")
        # The head preset is checked against HeadConfig by with_overrides() and the tests, not
        # here: that import brings torch, which reading annotations and scoring do not need.

    @property
    def default_annotation_dir(self) -> Path:
        return self.annotation_dir or SHARED_DIR / "data" / "annotations" / self.name

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.annotation_files)

    def with_overrides(self, changes: Mapping[str, Mapping[str, Any]] | Sequence[str]) -> DatasetSpec:
        """This spec with its preset overridden (a parsed dict, or ``KEY=VALUE`` strings)."""
        if not isinstance(changes, Mapping):
            changes = parse_overrides(changes)
        preset = self.preset.override(changes)
        check_head(preset.head, "--set")
        return dataclasses.replace(self, preset=preset)

    def with_size(self, size: str) -> DatasetSpec:
        """This generated dataset at another named size (its videos and its preset)."""
        if size not in self.sizes:
            have = f"sizes {', '.join(self.sizes)}" if self.sizes else "no sizes (it is not generated)"
            raise ValueError(f"dataset '{self.name}' has {have}; got --size {size}")
        return dataclasses.replace(self, size=size, preset=self.sizes[size])

    def read(self, path: str | PathLike, *, require_labels: bool = True) -> list[Sample]:
        """Read one annotation file with this dataset's reader and parameters."""
        reader = get_reader(self.format)
        return reader(path, clip_seconds=self.clip_seconds, require_labels=require_labels, domains=self.domains)

    def bind(self, annotations: Mapping[str, str | PathLike] | str | PathLike | None = None,
             video_dir: str | PathLike | None = None, *, progress: bool = True, generate: bool = True,
             follow_symlinks: bool = False) -> BoundDataset:
        """This dataset's files on this machine.

        ``annotations``: a folder holding :attr:`annotation_files`, a ``{split: file}`` mapping
        (other splits from the default folder), or None for the default folder (a dataset that
        is generated, the synthetic one, is generated now — or, with ``generate=False``, found in
        the cache or refused with the command that makes it). Files are read when first needed.
        ``follow_symlinks``: video files may be symbolic links that lead out of the video folder.
        """
        folder = self.default_annotation_dir
        mapping: dict[str, Path] = {}
        if annotations is None and self.materialize is not None:
            if not generate and not self.is_generated():
                size = f" --size {self.size}" if self.size else ""
                raise InputError(None, None, "dataset", f"the built-in dataset {self.name}{size} is not generated on "
                                 f"this machine (cache {_cache_hint()}); make it with: r2bench run --suite table9"
                                 f"{size} --paper-scale, or python -m r2bench.datasets.synthetic{size}")
            root = self.materialize(progress, self.size)
            folder = root / "annotations"
            video_dir = video_dir if video_dir is not None else root / "videos"
        elif isinstance(annotations, Mapping):
            mapping = {str(s): Path(p) for s, p in annotations.items()}
        elif annotations is not None:
            folder = Path(annotations)
            if folder.is_file():
                raise InputError(folder, None, "annotations",
                                 f"expected a folder holding {', '.join(self.annotation_files.values())}, "
                                 f"or a split→file mapping; found a file")
            if not folder.is_dir():
                raise InputError(folder, None, "annotations", f"{self.title} annotation folder not found")
        files = {s: folder / f for s, f in self.annotation_files.items()}
        files.update(mapping)
        return BoundDataset(self, files, Path(video_dir) if video_dir is not None else None,
                            follow_symlinks=follow_symlinks)

    def is_generated(self) -> bool:
        """A generated dataset whose files are already in the cache (always True for a real one)."""
        if self.materialize is None:
            return True
        located = getattr(self.materialize, "locate", None)
        return bool(located and located(self.size))


@dataclass
class VideoCheck:
    """Which videos a run's samples name are there (``found``: vid -> file) and which are not
    (``missing``: vid -> why, with the annotation line); ``queries``/``skipped``: per split, the
    samples named and those whose video is missing."""

    found: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    queries: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    def count(self, split: str, sample: Sample) -> None:
        self.queries[split] = self.queries.get(split, 0) + 1
        if sample.vid in self.missing:
            self.skipped[split] = self.skipped.get(split, 0) + 1

    def digest(self) -> str | None:
        """A digest of the missing videos' ids (None when none is missing): runs on another set of
        available videos are other runs."""
        if not self.missing:
            return None
        return hashlib.blake2b("\n".join(sorted(map(str, self.missing))).encode(), digest_size=8).hexdigest()


def _cache_hint() -> str:
    from r2bench.core.io import cache_root
    return str(cache_root())


class BoundDataset:
    """A :class:`DatasetSpec` bound to annotation files and a video folder; with ``domain``, only
    that domain's videos (:meth:`for_domain`: the paper trains one model per domain)."""

    def __init__(self, spec: DatasetSpec, files: Mapping[str, Path], video_dir: Path | None,
                 domain: str | None = None, follow_symlinks: bool = False):
        self.spec, self.files, self.video_dir, self.domain = spec, dict(files), video_dir, domain
        self.follow_symlinks = follow_symlinks
        self._samples: dict[str, list[Sample]] = {}
        self._frame_rates: dict[str, float] | None = None

    def __repr__(self) -> str:
        where = f", domain={self.domain!r}" if self.domain else ""
        return f"BoundDataset({self.spec.name!r}{where}, videos={self.video_dir})"

    def for_domain(self, domain: str) -> BoundDataset:
        """This dataset restricted to the videos of ``domain`` (one of ``spec.domains``)."""
        if domain not in self.spec.domains:
            raise InputError(None, None, "domain", f"dataset '{self.name}' has no domain {domain!r} "
                                                   f"(has {', '.join(self.spec.domains) or 'none'})")
        return BoundDataset(self.spec, self.files, self.video_dir, domain, self.follow_symlinks)

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains this dataset covers (its own one, or every domain of the spec)."""
        return (self.domain,) if self.domain else self.spec.domains

    @property
    def is_stand_in(self) -> bool:
        return bool(self.spec.stand_in_for)

    # ---- what the harness reads
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def fps(self) -> float | None:
        return self.spec.fps

    @property
    def preset(self) -> Preset:
        return self.spec.preset

    @property
    def train_split(self) -> str:
        return self.spec.train_split

    @property
    def eval_split(self) -> str:
        return self.spec.eval_split

    @property
    def test_split(self) -> str | None:
        return self.spec.test_split

    @cached_property
    def benchmark_version(self) -> str | None:
        """A generated dataset's version name (e.g. ``synthetic-g2c2-default``), else None."""
        return self.spec.version_name(self.spec.size) if self.spec.version_name else None

    @property
    def version(self) -> str:
        """A digest of the annotation files (their bytes) and the video folder's path: run
        records name it, so results from other annotation files never pool."""
        h = hashlib.blake2b(digest_size=8)
        if self.domain:
            h.update(f"domain={self.domain}".encode())
        for split in sorted(self.files):
            path = self.files[split]
            h.update(split.encode())
            h.update(path.read_bytes() if path.is_file() else b"<missing>")
        h.update(str(self.video_dir).encode())
        return h.hexdigest()

    def annotation_file(self, split: str) -> Path:
        if split not in self.files:
            raise InputError(None, None, "split", f"dataset '{self.name}' has no split '{split}' "
                                                  f"(has {', '.join(self.files)})")
        return self.files[split]

    def check(self, splits: Sequence[str] | None = None, videos: bool = True) -> BoundDataset:
        """Fail now, naming the file, if an annotation file of ``splits`` (default: train and
        eval) or the video folder is missing; returns self."""
        for split in splits if splits is not None else (self.train_split, self.eval_split):
            path = self.annotation_file(split)
            if not path.is_file():
                raise InputError(path, None, "annotations",
                                 f"{self.spec.title} {split} annotations not found (pass --annotations)")
        if videos:
            if self.video_dir is None:
                raise InputError(None, None, "video_dir", f"{self.spec.title} needs a video folder (--video-dir)")
            if not self.video_dir.is_dir():
                raise InputError(self.video_dir, None, "video_dir", f"{self.spec.title} video folder not found")
        return self

    def samples(self, split: str) -> list[Sample]:
        """The validated samples of ``split`` (read once, then memoised)."""
        if split not in self._samples:
            path = self.annotation_file(split)
            samples = self.spec.read(path, require_labels=split not in self.spec.unlabelled_splits)
            if self.domain:
                samples = [s for s in samples if s.domain == self.domain]
                if not samples:
                    raise InputError(path, None, "domain", f"no {self.domain!r} videos in the {split} split")
            self._samples[split] = samples
        return self._samples[split]

    # ---- videos
    def video_path(self, vid: str) -> Path:
        """The file of video ``vid``: ``video_dir / video_name.format(vid=vid) + ext`` for the
        first of :attr:`DatasetSpec.video_exts` that exists. A ``vid`` that is absolute or climbs
        out of the folder (``..``) is refused, and so is a file whose real path (symbolic links
        resolved) lies outside the video folder, unless the dataset was bound with
        ``follow_symlinks``. Errors name the video folder; :meth:`check_videos` names the
        annotation line."""
        if self.video_dir is None:
            raise InputError(None, None, "video_dir", f"{self.spec.title} has no video folder (pass --video-dir)")
        parts = PurePath(str(vid)).parts
        if not str(vid) or PurePath(str(vid)).is_absolute() or ".." in parts:
            raise InputError(self.video_dir, None, "vid", f"expected a video id naming a file inside the video "
                                                          f"folder, found {str(vid)!r} (absolute or with '..')")
        stem = self.spec.video_name.format(vid=vid)
        for ext in self.spec.video_exts:
            path = self.video_dir / f"{stem}{ext}"
            if path.is_file():
                if not self.follow_symlinks:
                    real, root = path.resolve(), self.video_dir.resolve()
                    if root not in real.parents:
                        raise InputError(self.video_dir, None, "vid",
                                         f"video '{vid}' is a link to {real}, outside the video folder {root}; "
                                         f"refused (pass --follow-symlinks to allow links that leave the folder)")
                return path
        raise InputError(self.video_dir / f"{stem}{self.spec.video_exts[0]}", None, "vid",
                         f"video '{vid}' not found in {self.video_dir} (tried {', '.join(self.spec.video_exts)})")

    def check_videos(self, splits: Sequence[str]) -> VideoCheck:
        """Every video the samples of ``splits`` name: a ``vid`` that would leave the video folder
        (absolute, ``..``, a link out of it) is an ``InputError`` naming the annotation line,
        raised now, before anything runs; a video that is not there is listed as missing (with
        the first annotation line naming it)."""
        check = VideoCheck()
        for split in splits:
            for s in self.samples(split):
                if s.vid in check.found or s.vid in check.missing:
                    check.count(split, s)
                    continue
                try:
                    check.found[s.vid] = self.video_path(s.vid)
                except InputError as e:
                    if "not found" not in e.message:
                        path, _, line = s.source.rpartition(":")
                        raise InputError(path or s.source, int(line) if line.isdigit() else None, "vid",
                                         e.message) from None
                    check.missing[s.vid] = f"not found ({s.source})"
                check.count(split, s)
        return check

    def frame_rate(self, vid: str) -> float:
        """Feature frames per second for ``vid``: the dataset's fps, or (``fps=None``) one frame
        per labelled clip of that video, from whichever split names it."""
        if self.spec.fps is not None:
            return self.spec.fps
        if self._frame_rates is None:
            self._frame_rates = {}
            for split, path in self.files.items():
                if path.is_file():
                    for s in self.spec.read(path, require_labels=False) if self.domain else self.samples(split):
                        self._frame_rates.setdefault(s.vid, s.num_clips / s.duration)
        if vid not in self._frame_rates:
            raise InputError(None, None, "vid", f"video '{vid}' is in no annotation file of '{self.name}', "
                                                f"so its per-video frame rate is unknown")
        return self._frame_rates[vid]


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"dataset '{spec.name}' is registered twice")
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# --------------------------------------------------------------------------- the benchmarks

GROUNDING_STRIDES = (1, 2, 4, 8)
# The public highlight-detection configs (configs/youtube, configs/tvsum): one stride, no TEF, no
# regression head (coord_head_cfg=None: classification learns the per-clip saliency), DynamicBCELoss,
# SampledNCELoss direction 'row', merge_cls_sal=False (the test saliency is the cls score alone), no
# min_video_len (Grounding's 5 s does not apply). Positive clips: YouTube (match+1)/2 > 0.5, TVSum > median.
HD_HEAD = dict(strides=(1,), use_tef=False, nms="none", regression=False, cls_loss="bce",
               saliency_directions=("row",), merge_cls_saliency=False, min_train_seconds=0.0)
HD_NOTES = "Public configs: one model per domain (per_domain); no LR drop."

register_dataset(DatasetSpec(
    name="qvhighlights", title="QVHighlights", format="qvhighlights", metric="qvhighlights",
    tasks={"mr", "hd"}, fps=0.5, clip_seconds=2.0,
    annotation_files={"train": "highlight_train_release.jsonl", "val": "highlight_val_release.jsonl",
                      "test": "highlight_test_release.jsonl"},
    train_split="train", eval_split="val", test_split="test", unlabelled_splits={"test"},
    preset=Preset(train=dict(batch_size=128, lr=5e-4, epochs=30, warmup_iters=500, lr_drop_epoch=20, repeat=4),
                  head=dict(dropout=0.5, saliency_weight=0.1, nms="hard", nms_threshold=0.7,
                            strides=GROUNDING_STRIDES, use_tef=True, window_unit=2.0)),
    notes="Public config: training set repeated 4x per epoch (RepeatDataset); windows rounded to 2 s before NMS."))

register_dataset(DatasetSpec(
    name="charades_sta", title="Charades-STA", format="grounding", metric="grounding",
    tasks={"mr"}, fps=1.0, clip_seconds=1.0,
    annotation_files={"train": "charades_train_release.jsonl", "test": "charades_test_release.jsonl"},
    train_split="train", eval_split="test", test_split="test",
    preset=Preset(train=dict(batch_size=32, lr=2.5e-4, epochs=50, warmup_iters=500, lr_drop_epoch=30),
                  head=dict(dropout=0.35, saliency_weight=0.01, nms="linear", strides=GROUNDING_STRIDES,
                            use_tef=True, window_unit=0.1)),
    notes="Public config: windows rounded to 0.1 s before NMS; no validation split (scored on test)."))

register_dataset(DatasetSpec(
    name="tacos", title="TACoS", format="grounding", metric="grounding",
    tasks={"mr"}, fps=0.5, clip_seconds=2.0,
    annotation_files={"train": "tacos_train_release.jsonl", "val": "tacos_val_release.jsonl",
                      "test": "tacos_test_release.jsonl"},
    train_split="train", eval_split="test", test_split="test", video_name="{vid}-cam-002",
    preset=Preset(train=dict(batch_size=32, lr=2.5e-4, epochs=100, warmup_iters=500, lr_drop_epoch=50),
                  head=dict(dropout=0.5, saliency_weight=0.05, nms="linear", strides=GROUNDING_STRIDES,
                            use_tef=True)),
    notes="Videos are the '-cam-002' recordings (s30-d52 -> s30-d52-cam-002); the paper scores the test split."))

register_dataset(DatasetSpec(
    name="ego4d_nlq", title="Ego4D-NLQ", format="grounding", metric="grounding",
    tasks={"mr"}, fps=0.5, clip_seconds=2.0,
    annotation_files={"train": "nlq_train.jsonl", "val": "nlq_val.jsonl"},
    train_split="train", eval_split="val",
    preset=Preset(train=dict(batch_size=32, lr=2.5e-4, epochs=30, warmup_iters=500, lr_drop_epoch=20),
                  head=dict(dropout=0.3, saliency_weight=0.1, nms="linear", strides=GROUNDING_STRIDES,
                            use_tef=True)),
    notes="Annotations in the QVHighlights-style JSONL of the UniVTG / R²-Tuning releases (not in ../shared)."))

register_dataset(DatasetSpec(
    name="youtube_highlights", title="YouTube Highlights", format="youtube_highlights", metric="youtube_highlights",
    tasks={"hd"}, fps=None, clip_seconds=None,
    annotation_files={"train": "youtube_highlight_train_release.jsonl", "val": "youtube_highlight_val_release.jsonl"},
    train_split="train", eval_split="val", domains=youtube_format.DOMAINS, per_domain=True,
    preset=Preset(train=dict(batch_size=4, lr=5e-4, epochs=200, warmup_iters=50, lr_drop_epoch=None),
                  head=dict(dropout=0.5, saliency_weight=0.1, positive_clips="above_half", **HD_HEAD)),
    notes="Frame rate per video: one frame per labelled clip. " + HD_NOTES))

register_dataset(DatasetSpec(
    name="tvsum", title="TVSum", format="tvsum", metric="tvsum",
    tasks={"hd"}, fps=0.5, clip_seconds=2.0,
    annotation_files={"train": "tvsum_train_release.jsonl", "val": "tvsum_val_release.jsonl"},
    train_split="train", eval_split="val", domains=tvsum_format.DOMAINS, per_domain=True,
    preset=Preset(train=dict(batch_size=4, lr=5e-4, epochs=500, warmup_iters=50, lr_drop_epoch=None),
                  head=dict(dropout=0.5, saliency_weight=0.1, positive_clips="above_median", **HD_HEAD)),
    notes=HD_NOTES))


# --------------------------------------------------------------------------- the built-in benchmark

def _generate_synthetic(progress: bool, size: str | None, seed: int = 0, **sizes) -> Path:
    from r2bench.datasets.synthetic.generator import generate
    from r2bench.datasets.synthetic.presets import DEFAULT_SIZE, SIZES
    return generate(seed=seed, progress=progress, **{**SIZES[size or DEFAULT_SIZE], **sizes})


def _locate_synthetic(size: str | None, seed: int = 0, **sizes) -> Path | None:
    from r2bench.datasets.synthetic.generator import locate
    from r2bench.datasets.synthetic.presets import DEFAULT_SIZE, SIZES
    return locate(seed=seed, **{**SIZES[size or DEFAULT_SIZE], **sizes})


_generate_synthetic.locate = _locate_synthetic


def _synthetic_presets() -> dict[str, Preset]:
    from r2bench.datasets.synthetic.presets import PRESETS
    return {size: Preset(train=dict(p["train"]), head={**p["head"], "window_unit": 2.0})   # one clip
            for size, p in PRESETS.items()}


def _synthetic_version(size: str | None) -> str:
    from r2bench.datasets.synthetic.presets import DEFAULT_SIZE, benchmark_version
    return benchmark_version(size or DEFAULT_SIZE)


_SYNTHETIC_PRESETS = _synthetic_presets()
register_dataset(DatasetSpec(
    name="synthetic", title="Synthetic (built-in)", format="qvhighlights", metric="qvhighlights",
    tasks={"mr", "hd"}, fps=0.5, clip_seconds=2.0,
    annotation_files={"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"},
    train_split="train", eval_split="val", test_split="test",
    preset=_SYNTHETIC_PRESETS["default"], sizes=_SYNTHETIC_PRESETS, size="default",
    version_name=_synthetic_version, stand_in_for=("qvhighlights",),
    notes="Generated on first use (datasets.synthetic.generator), cached under R2BENCH_CACHE; "
          "sizes small/default/large (datasets.synthetic.presets, docs/benchmark.md).",
    materialize=_generate_synthetic))


def synthetic_dataset(seed: int = 0, progress: bool = True, size: str = "default", **sizes) -> BoundDataset:
    """The built-in benchmark at a named size, with another seed or custom video counts
    (generated on first use, cached)."""
    spec = get_dataset("synthetic").with_size(size)
    spec = dataclasses.replace(spec, materialize=partial(_generate_synthetic, seed=seed, **sizes))
    return spec.bind(progress=progress)


# --------------------------------------------------------------------------- synthetic stand-ins
# Tables 2–4 run on these when no real data is given (datasets.synthetic.standins): the built-in
# benchmark without saliency labels (moment retrieval only), and per-domain highlight detection
# whose query is the domain name (binary labels, per-video frame rate: YouTube Highlights' task;
# 20 annotators' 1–5 scores: TVSum's task).

def _generate_synthetic_mr(progress: bool, size: str | None) -> Path:
    from r2bench.datasets.synthetic.standins import moment_retrieval
    return moment_retrieval(_generate_synthetic(progress, size))


def _generate_highlights(kind: str, progress: bool, size: str | None) -> Path:
    from r2bench.datasets.synthetic.standins import highlights
    return highlights(kind, size=size or "default", progress=progress)


def _standin_version(kind: str, size: str | None) -> str:
    """E.g. ``synthetic-hdb1-g2c2-default``: the stand-in's kind and version, then the built-in
    benchmark's generator and tiny-CLIP versions and the size."""
    from r2bench.datasets.synthetic.standins import STANDIN_VERSION
    return _synthetic_version(size).replace("synthetic-", f"synthetic-{kind}{STANDIN_VERSION}-", 1)


def _hd_presets(positive_clips: str) -> dict[str, Preset]:
    """Per size: the public HD head switches at the synthetic benchmark's scale (K, widths as the
    paper's; dropout 0.1 as the built-in benchmark's), batch 4 as the public HD configs."""
    train = dict(batch_size=4, lr=1e-3, epochs=12, warmup_iters=10, lr_drop_epoch=None)
    head = dict(dropout=0.1, saliency_weight=0.1, positive_clips=positive_clips, **HD_HEAD)
    return {size: Preset(train=train, head=head) for size in ("small", "default", "large")}


register_dataset(DatasetSpec(
    name="synthetic_mr", title="Synthetic stand-in: moment retrieval only", format="grounding", metric="grounding",
    tasks={"mr"}, fps=0.5, clip_seconds=2.0,
    annotation_files={"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"},
    train_split="train", eval_split="val", test_split="test",
    preset=_SYNTHETIC_PRESETS["default"], sizes=_SYNTHETIC_PRESETS, size="default",
    version_name=partial(_standin_version, "mr"), stand_in_for=("ego4d_nlq", "charades_sta", "tacos"),
    notes="The built-in benchmark's videos and queries with relevant_windows only (no saliency labels).",
    materialize=_generate_synthetic_mr))

_HD_BINARY, _HD_GRADED = _hd_presets("above_half"), _hd_presets("above_median")
register_dataset(DatasetSpec(
    name="synthetic_hd_binary", title="Synthetic stand-in: highlight detection, binary labels",
    format="youtube_highlights", metric="youtube_highlights", tasks={"hd"}, fps=None, clip_seconds=None,
    annotation_files={"train": "train.jsonl", "val": "val.jsonl"}, train_split="train", eval_split="val",
    domains=("red", "green", "blue", "yellow"), per_domain=True,
    preset=_HD_BINARY["default"], sizes=_HD_BINARY, size="default", version_name=partial(_standin_version, "hdb"),
    stand_in_for=("youtube_highlights",),
    notes="Domains are object colours; the query is the domain name; match/label from the domain object's "
          "visibility; clips of 1.6, 2 or 2.5 s (frame rate per video).",
    materialize=partial(_generate_highlights, "binary")))

register_dataset(DatasetSpec(
    name="synthetic_hd_graded", title="Synthetic stand-in: highlight detection, 20 annotators",
    format="tvsum", metric="tvsum", tasks={"hd"}, fps=0.5, clip_seconds=2.0,
    annotation_files={"train": "train.jsonl", "val": "val.jsonl"}, train_split="train", eval_split="val",
    domains=("red", "green", "blue", "yellow"), per_domain=True,
    preset=_HD_GRADED["default"], sizes=_HD_GRADED, size="default", version_name=partial(_standin_version, "hdg"),
    stand_in_for=("tvsum",),
    notes="Domains are object colours; the query is the domain name; 20 annotators score 2-s clips 1-5 from the "
          "domain object's visibility, size and centrality.",
    materialize=partial(_generate_highlights, "graded")))
