"""Synthetic stand-ins for the tasks of paper Tables 2–4, built from the built-in benchmark's
renderer (``datasets.synthetic.generator``), so that every dataset suite runs without real data.

* **Moment retrieval only** (:func:`moment_retrieval`, Table 2's task: Charades-STA, TACoS,
  Ego4D-NLQ): the built-in benchmark's videos and queries with only ``relevant_windows``, in the
  ``grounding`` JSONL format; no saliency labels (training targets come from the windows).
* **Highlight detection per domain** (:func:`highlights`, Tables 3 and 4): new videos, each in
  one *domain* — an object colour. The query is the domain name and nothing else (``"red"``),
  as YouTube Highlights' queries are its domain names. Each video shows an object of its
  domain's colour: as a *highlight* (a domain-specific attribute value, :data:`HIGHLIGHT_RULES`:
  red objects large, green ones in the upper half, …) during one or two windows, and mostly also
  as a *plain* moment (the other value) in another window, among 1–3 objects of other colours
  (some always visible). What a highlight is must therefore be learned per domain, from the
  labels. Per-clip labels come from how much of the highlight object is visible at the clip's
  centre:

  - ``binary`` (YouTube Highlights format and metric): ``match`` 1 when at least half of the
    object is visible, 0 when less but some, −1 when none; ``label`` = match > 0. The clip
    length varies per video (1.6, 2 or 2.5 s, as YouTube's ≈1.7-s steps vary), so the frame
    rate is per video: one frame per labelled clip.
  - ``graded`` (TVSum format and metric): 20 simulated annotators score each 2-s clip 1–5 from
    the object's visibility, size and centrality, each with a bias and noise of their own.

Everything is seeded and cached under ``cache_dir()/synthetic_standins/<digest>``, written to a
temporary folder first and renamed into place when complete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from r2bench.core.io import cache_dir
from r2bench.datasets.synthetic import generator as syn

STANDIN_VERSION = 2
HD_DOMAINS = tuple(syn.COLOURS)            # red, green, blue, yellow
HD_KINDS = ("binary", "graded")
BINARY_CLIP_SECONDS = (1.6, 2.0, 2.5)      # per video (YouTube Highlights: per-video steps)
GRADED_CLIP_SECONDS = 2.0                  # TVSum: 2-s clips
GRADED_ANNOTATORS = 20
WRITE_FPS = 2.5                            # frames written per second (1.6-s clips need a rate that divides)
FRAME_SIZE = 64

# videos per domain (train, val) and seconds per video, per named size
HD_SIZES: dict[str, dict] = {
    "small": dict(n_train=12, n_val=8, duration=40),
    "default": dict(n_train=20, n_val=12, duration=40),
    "large": dict(n_train=48, n_val=32, duration=40),
}


# --------------------------------------------------------------------------- files

def _atomic_folder(root: Path, build) -> Path:
    """Build into a temporary sibling of ``root`` and rename it into place (``build(tmp)``);
    an existing complete ``root`` (one with ``manifest.json``) is returned as is."""
    if (root / "manifest.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        build(tmp)
        if root.exists():
            shutil.rmtree(root)        # an incomplete earlier attempt
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "manifest.json").is_file():   # a concurrent builder did not win the race either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --------------------------------------------------------------------------- moment retrieval only

MR_FIELDS = ("qid", "vid", "query", "duration", "relevant_windows")


def moment_retrieval(source: Path) -> Path:
    """The built-in benchmark at ``source`` (a ``generator.generate`` folder) as a moment
    retrieval dataset: ``annotations/{train,val,test}.jsonl`` in the ``grounding`` format (only
    :data:`MR_FIELDS`) and ``videos`` (a link to the source's videos). Returns its folder."""
    source = Path(source)
    manifest = json.loads((source / "manifest.json").read_text())
    config = {"kind": "mr", "version": STANDIN_VERSION, "source": manifest["config"]}
    root = cache_dir() / "synthetic_standins" / f"mr-{_digest(config)}"

    def build(tmp: Path) -> None:
        (tmp / "annotations").mkdir()
        counts = {}
        for split_file in sorted((source / "annotations").glob("*.jsonl")):
            rows = [json.loads(line) for line in split_file.read_text().splitlines() if line.strip()]
            _write_jsonl(tmp / "annotations" / split_file.name, [{k: r[k] for k in MR_FIELDS} for r in rows])
            counts[split_file.stem] = len(rows)
        os.symlink((source / "videos").resolve(), tmp / "videos")
        (tmp / "manifest.json").write_text(json.dumps({"config": config, "n_queries": counts}, indent=1))
    return _atomic_folder(root, build)


# --------------------------------------------------------------------------- highlight detection

# What makes a clip a highlight in each domain: the domain's object with this attribute value.
# The same object also appears with the other value at other times (a plain moment), so the
# query (the domain name) alone does not find the highlights: as in YouTube Highlights, what a
# highlight is in a domain is learned from that domain's labels (one model per domain).
HIGHLIGHT_RULES = {"red": ("size", "large"), "green": ("half", "upper"), "blue": ("size", "small"),
                   "yellow": ("half", "lower")}


def _free_window(rng: np.random.Generator, n_clips: int, taken: tuple[tuple[int, int], ...]
                 ) -> tuple[tuple[int, int], ...]:
    """One clip range of 2–8 clips that keeps a clip's distance from ``taken`` (none if no room)."""
    free = np.ones(n_clips, dtype=bool)
    for s, e in taken:
        free[max(0, s - 1):min(n_clips, e + 1)] = False
    runs, start = [], None
    for c in range(n_clips + 1):
        if c < n_clips and free[c]:
            start = c if start is None else start
        elif start is not None:
            if c - start >= 2:
                runs.append((start, c))
            start = None
    if not runs:
        return ()
    s, e = runs[rng.integers(len(runs))]
    length = int(rng.integers(2, min(8, e - s) + 1))
    first = int(rng.integers(s, e - length + 1))
    return ((first, first + length),)


def _domain_scene(rng: np.random.Generator, domain: str, n_clips: int) -> tuple[syn.Scene, syn.Obj]:
    """A scene with the domain's object as a highlight (:data:`HIGHLIGHT_RULES`, 1–2 windows of
    2-s clips), the same object as a plain moment in another window (80 % of videos), and 1–3
    objects of other colours (30 % of them visible throughout)."""
    name, value = HIGHLIGHT_RULES[domain]
    plain_value = next(v for v in syn._VALUES[name] if v != value)
    target = syn._random_object(rng, colour=domain, **{name: value})
    target = dataclasses.replace(target, windows=syn._random_windows(rng, n_clips))
    objects = [target]
    if rng.random() < 0.8:
        plain = syn._random_object(rng, colour=domain, shape=target.shape, **{name: plain_value})
        windows = _free_window(rng, n_clips, target.windows)
        if windows:
            objects.append(dataclasses.replace(plain, windows=windows))
    others = [c for c in syn.COLOURS if c != domain]
    for _ in range(int(rng.integers(1, 4))):
        obj = syn._random_object(rng, colour=others[rng.integers(len(others))])
        objects.append(dataclasses.replace(obj, windows=None if rng.random() < 0.3
                                           else syn._random_windows(rng, n_clips)))
    return syn.Scene(tuple(objects), syn._background(rng)), target


def _clip_quality(scene: syn.Scene, target: syn.Obj, t: float) -> tuple[float, float]:
    """(visible fraction, quality = visibility × size factor × centrality) of ``target`` at ``t``."""
    visible = syn.visibility(scene, target, t, FRAME_SIZE)
    x, y = target.centre(t)
    centrality = 1 - 0.5 * min(1.0, math.hypot(x - 0.5, y - 0.5) / 0.6)
    return visible, visible * (1.0 if target.size == "large" else 0.75) * centrality


def hd_video(kind: str, seed: int, index: int, domain: str, duration: float) -> tuple[syn.Scene, dict]:
    """Scene and annotation (without ``qid``/``vid``) of highlight video ``index`` of ``domain``."""
    rng = np.random.default_rng([seed, index, 7])
    clip = float(BINARY_CLIP_SECONDS[rng.integers(len(BINARY_CLIP_SECONDS))]) if kind == "binary" \
        else GRADED_CLIP_SECONDS
    n = int(round(duration / clip))
    scene, target = _domain_scene(rng, domain, int(duration // syn.CLIP_SECONDS))
    centres = [(c + 0.5) * clip for c in range(n)]
    if kind == "binary":
        visible = [_clip_quality(scene, target, t)[0] for t in centres]
        match = [1 if v >= 0.5 else 0 if v > 0 else -1 for v in visible]
        ann = {"query": domain, "duration": duration, "domain": domain, "label": [[int(m > 0)] for m in match],
               "match": match}
    else:
        bias = rng.uniform(-0.6, 0.6, size=GRADED_ANNOTATORS)
        rows = []
        for t in centres:
            quality = _clip_quality(scene, target, t)[1]
            raw = 1 + 4.2 * quality + bias + rng.normal(0, 0.5, size=GRADED_ANNOTATORS)
            rows.append([float(v) for v in np.clip(np.round(raw), 1, 5)])
        ann = {"query": domain, "duration": n, "domain": domain, "label": rows}   # TVSum: duration in clips
    return scene, ann


def hd_config(kind: str, seed: int = 0, size: str = "default", **sizes) -> dict:
    if kind not in HD_KINDS:
        raise ValueError(f"highlight stand-in kind must be one of {HD_KINDS}, got {kind!r}")
    if size not in HD_SIZES:
        raise ValueError(f"unknown stand-in size {size!r}; choose one of {list(HD_SIZES)}")
    config = {"kind": kind, "version": STANDIN_VERSION, "generator": syn.GENERATOR_VERSION, "seed": int(seed),
              **HD_SIZES[size], **sizes, "write_fps": WRITE_FPS, "frame_size": FRAME_SIZE}
    duration = config["duration"]
    for clip in BINARY_CLIP_SECONDS if kind == "binary" else (GRADED_CLIP_SECONDS,):
        if not float(duration / clip).is_integer() or not float(duration * WRITE_FPS).is_integer():
            raise ValueError(f"duration {duration} s must be a whole number of {clip}-s clips and of frames")
    return config


def highlights(kind: str, seed: int = 0, size: str = "default", progress: bool = True, **sizes) -> Path:
    """Write (or reuse) a highlight-detection stand-in and return its folder: ``videos/<vid>.mp4``
    and ``annotations/{train,val}.jsonl`` (``binary``: YouTube Highlights format; ``graded``:
    TVSum format), :data:`HD_SIZES` ``[size]`` videos per domain and split (overridable)."""
    config = hd_config(kind, seed, size, **sizes)
    root = cache_dir() / "synthetic_standins" / f"hd-{kind}-{_digest(config)}"

    def build(tmp: Path) -> None:
        (tmp / "videos").mkdir()
        (tmp / "annotations").mkdir()
        plan = [(split, domain) for domain in HD_DOMAINS
                for split in ["train"] * config["n_train"] + ["val"] * config["n_val"]]
        vids = [f"hd{kind[0]}{i:04d}" for i in range(len(plan))]

        def make(i: int) -> dict:
            scene, ann = hd_video(kind, config["seed"], i, plan[i][1], config["duration"])
            frames = syn.video_frames(scene, config["seed"] + 1000, i, config["duration"], WRITE_FPS, FRAME_SIZE)
            syn._write_video(tmp / "videos" / f"{vids[i]}.mp4", frames, WRITE_FPS)
            return ann

        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            jobs = [pool.submit(make, i) for i in range(len(plan))]
            anns = [j.result() for j in tqdm(jobs, desc=f"synthetic {kind} highlights", unit="video",
                                             disable=not progress)]
        rows: dict[str, list[dict]] = {"train": [], "val": []}
        for (split, _), vid, ann in zip(plan, vids, anns):
            rows[split].append({"qid": vid, "vid": vid, **ann})
        for split, lines in rows.items():
            _write_jsonl(tmp / "annotations" / f"{split}.jsonl", lines)
        (tmp / "manifest.json").write_text(json.dumps({"config": config, "videos": len(vids)}, indent=1))
    return _atomic_folder(root, build)
