"""A small, seeded, built-in video temporal grounding benchmark in QVHighlights format.

Each video shows coloured shapes on a mildly noisy background. Every object has coarse
attributes (colour, shape) and fine ones (size, half of the frame, motion), and is visible
during one or two windows aligned to 2-s clips (or, for some distractors, all the time).
Every windowed object that some description singles out becomes a query (up to
``MAX_QUERIES_PER_VIDEO``), named with the coarsest description that is unambiguous in its
video: distractors that share its colour and shape force fine (spatial, motion) queries.
Saliency comes from three simulated annotators and depends on how visible, large and central
the target is.

The tiny CLIP is pretrained at image level on the same renderer (``random_scene``,
``render``) with coarse captions only (``scene_caption``: colours, shapes and counts, never
size, position or motion), as real CLIP's alt-text rarely pins down where or how large a
thing is. See docs/benchmark.md for the design and its reasoning.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from r2bench.core.io import cache_dir, temp_dir_for
from r2bench.datasets.formats.qvhighlights import CLIP_SECONDS

# 1: queries for 1–2 targets per video, tiny CLIP captions named every static attribute.
# 2: up to MAX_QUERIES_PER_VIDEO targets per video; coarse image-level captions (scene_caption).
# 3: 2–5 distractors, 20 % of them visible throughout, up to 4 queries per video: several objects come
#    and go in every video, so a model that ignores its query cannot tell which of them it names.
GENERATOR_VERSION = 3
MAX_QUERIES_PER_VIDEO = 4
DISTRACTORS = (2, 5)            # per video, inclusive
ALWAYS_VISIBLE = 0.2            # share of distractors visible throughout

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (215, 40, 40), "green": (40, 185, 60), "blue": (45, 85, 225), "yellow": (235, 210, 35)}
RADII = {"small": 0.09, "large": 0.17}           # object radius per size, as a fraction of the frame side
MOTIONS = ("left", "right", "up", "down", "still")
HALVES = {"upper": (0.14, 0.38), "lower": (0.62, 0.86)}   # band of the centre's y
ATTRIBUTES = ("size", "colour", "shape", "motion", "half")
STATIC_ATTRIBUTES = ("size", "colour", "shape", "half")
COARSE_ATTRIBUTES = ("colour", "shape")          # the only ones pretraining captions name
FINE_ATTRIBUTES = ("size", "half", "motion")     # only grounding queries name these
# Descriptions from coarse to fine; a query uses the coarsest unambiguous level.
LEVELS = (
    (("colour", "shape"),),
    (("size", "colour", "shape"), ("colour", "shape", "motion"), ("colour", "shape", "half")),
    (("size", "colour", "shape", "half"), ("size", "colour", "shape", "motion"), ("colour", "shape", "motion", "half")),
    (("size", "colour", "shape", "motion", "half"),),
)
_VALUES = {"size": tuple(RADII), "colour": tuple(COLOURS), "shape": SHAPES, "motion": MOTIONS, "half": tuple(HALVES)}
_PREFIXES = ("", "there is ", "we see ", "the video shows ")
_SPEED = {"left": (-0.07, 0.0), "right": (0.07, 0.0), "up": (0.0, -0.035), "down": (0.0, 0.035), "still": (0.0, 0.0)}


@dataclasses.dataclass(frozen=True)
class Obj:
    """One shape. ``x0, y0``: centre at t=0 (fractions of the frame); ``windows``: visible
    clip ranges ``[start, end)`` (``None`` = always visible)."""

    size: str
    colour: str
    shape: str
    motion: str
    half: str
    x0: float
    y0: float
    windows: tuple[tuple[int, int], ...] | None = None

    def attrs(self, names=ATTRIBUTES) -> tuple[str, ...]:
        return tuple(getattr(self, n) for n in names)

    def visible(self, t: float) -> bool:
        clip = int(t // CLIP_SECONDS)
        return self.windows is None or any(s <= clip < e for s, e in self.windows)

    def centre(self, t: float) -> tuple[float, float]:
        """Centre at time ``t``; horizontal motion wraps across the frame, vertical within the half."""
        r = RADII[self.size]
        vx, vy = _SPEED[self.motion]
        x = (self.x0 + r + vx * t) % (1 + 2 * r) - r if vx else self.x0
        lo, hi = HALVES[self.half]
        y = lo + (self.y0 - lo + vy * t) % (hi - lo) if vy else self.y0
        return x, y


@dataclasses.dataclass(frozen=True)
class Scene:
    """Objects drawn large-first (small ones stay on top) over a tinted background."""

    objects: tuple[Obj, ...]
    background: tuple[int, int, int]
    noise: float = 6.0


def _random_object(rng: np.random.Generator, **fixed) -> Obj:
    a = {n: fixed.get(n, _VALUES[n][rng.integers(len(_VALUES[n]))]) for n in ATTRIBUTES}
    r = RADII[a["size"]]
    x0 = float(rng.uniform(r, 1 - r))
    y0 = float(rng.uniform(*HALVES[a["half"]]))
    return Obj(**a, x0=x0, y0=y0)


def _distractor(rng: np.random.Generator, target: Obj, names=ATTRIBUTES) -> Obj:
    """An object sharing all but one or two of ``target``'s attributes (among ``names``)."""
    changed = rng.choice(len(names), size=int(rng.integers(1, 3)), replace=False)
    fixed = {n: getattr(target, n) for n in ATTRIBUTES}
    for i in changed:
        n = names[i]
        others = [v for v in _VALUES[n] if v != fixed[n]]
        fixed[n] = others[rng.integers(len(others))]
    return _random_object(rng, **fixed)


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    base = rng.uniform(95, 150)
    return tuple(int(round(base + d)) for d in rng.uniform(-12, 12, size=3))


def random_scene(rng: np.random.Generator, max_objects: int = 4) -> Scene:
    """A still scene of 1..max_objects objects; each is, with equal chance, independent or a
    variant (one or two attributes changed) of the first, so that scenes often hold several
    objects of one colour or shape, as the videos do."""
    first = _random_object(rng, motion="still")
    objects = [first]
    for _ in range(int(rng.integers(0, max_objects))):
        d = _random_object(rng, motion="still") if rng.random() < 0.5 else _distractor(rng, first, STATIC_ATTRIBUTES)
        objects.append(d)
    return Scene(tuple(objects), _background(rng))


_NUMBERS = ("a", "two", "three", "four", "five")


def scene_caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """An image-level caption naming only coarse attributes: how many objects of each colour
    and shape, in random order (sorted without ``rng``), e.g. "we see two red circles and a
    blue square". Size, position and motion are never named."""
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        counts[(o.colour, o.shape)] = counts.get((o.colour, o.shape), 0) + 1
    keys = sorted(counts)
    if rng is not None:
        keys = [keys[i] for i in rng.permutation(len(keys))]
    parts = [f"{_NUMBERS[counts[k] - 1]} {k[0]} {k[1]}{'s' if counts[k] > 1 else ''}" for k in keys]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    prefix = _PREFIXES[rng.integers(len(_PREFIXES))] if rng is not None else ""
    return prefix + text


def vocabulary() -> list[str]:
    """Every word the benchmark writes: captions (counts, colours, shapes and their plurals, lead-ins)
    and queries (sizes, motions, halves, lead-ins); the stand-ins' queries are colour names. The
    shipped tiny CLIP keeps the token embedding rows of exactly these words (``tiny_clip.ship``)."""
    words = {"a", "and", ",", "moving", "standing", "still", "in", "the", "half"}
    words |= set(_NUMBERS) | set(COLOURS) | set(SHAPES) | {f"{s}s" for s in SHAPES}
    words |= set(RADII) | set(MOTIONS) | set(HALVES)
    words |= {w for prefix in _PREFIXES for w in prefix.split()}
    return sorted(words)


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size not in _GRIDS:
        c = (np.arange(size, dtype=np.float32) + 0.5) / size
        _GRIDS[size] = (c[None, :], c[:, None])
    return _GRIDS[size]


def _mask(obj: Obj, cx: float, cy: float, size: int) -> np.ndarray:
    xx, yy = _grid(size)
    r = RADII[obj.size]
    dx, dy = xx - cx, yy - cy
    if obj.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if obj.shape == "square":
        h = 0.82 * r
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    # an upward triangle: apex r above the centre, base 0.8 r below it, as wide as it is tall
    top, bottom = -r, 0.8 * r
    return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= (dy - top) * 0.55)


def _draw_order(scene: Scene) -> list[Obj]:
    return sorted(scene.objects, key=lambda o: -RADII[o.size])


def render(scene: Scene, size: int, t: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """The scene at time ``t`` as uint8 ``(size, size, 3)``; background noise from ``rng``
    (none without one)."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = scene.background
    if rng is not None and scene.noise > 0:
        img += rng.standard_normal((size, size, 1), dtype=np.float32) * scene.noise
    for obj in _draw_order(scene):
        if obj.visible(t):
            img[_mask(obj, *obj.centre(t), size)] = COLOURS[obj.colour]
    return np.clip(img, 0, 255).round().astype(np.uint8)


def visibility(scene: Scene, obj: Obj, t: float, size: int) -> float:
    """Fraction of ``obj``'s full area visible at time ``t`` (frame borders and occluders)."""
    if not obj.visible(t):
        return 0.0
    full = int(_mask(obj, 0.5, 0.5, size).sum())
    mask = _mask(obj, *obj.centre(t), size)
    order = _draw_order(scene)
    above = next(i for i, o in enumerate(order) if o is obj) + 1
    for other in order[above:]:
        if other.visible(t):
            mask &= ~_mask(other, *other.centre(t), size)
    return float(mask.sum()) / max(full, 1)


def describe(obj: Obj, attrs, rng: np.random.Generator | None = None) -> str:
    """A caption naming ``obj`` by ``attrs`` (colour and shape always), e.g.
    ``"a small red circle moving left in the upper half"``. With ``rng``, a random lead-in."""
    words = ["a"]
    if "size" in attrs:
        words.append(obj.size)
    words += [obj.colour, obj.shape]
    if "motion" in attrs:
        words.append("standing still" if obj.motion == "still" else f"moving {obj.motion}")
    if "half" in attrs:
        words.append(f"in the {obj.half} half")
    prefix = _PREFIXES[rng.integers(len(_PREFIXES))] if rng is not None else ""
    return prefix + " ".join(words)


def unambiguous_attribute_sets(objects, target: Obj, allowed=ATTRIBUTES) -> list[list[tuple[str, ...]]]:
    """Per level (coarse → fine), the attribute sets within ``allowed`` that match ``target``
    and no other object; levels with none are left out."""
    out = []
    for level in LEVELS:
        ok = [s for s in level if set(s) <= set(allowed)
              and not any(o is not target and o.attrs(s) == target.attrs(s) for o in objects)]
        if ok:
            out.append(ok)
    return out


# ---------------------------------------------------------------- videos and annotations
def _random_windows(rng: np.random.Generator, n_clips: int, max_windows: int = 2) -> tuple[tuple[int, int], ...]:
    """One or two disjoint clip ranges of 2..12 clips (4..24 s), separated by at least a clip."""
    max_len = max(1, min(12, n_clips - 1))
    min_len = min(2, max_len)
    k = int(rng.integers(1, max_windows + 1))
    lengths = rng.integers(min_len, max_len + 1, size=k)
    if k == 2 and lengths.sum() + 1 > n_clips:
        k, lengths = 1, lengths[:1]
    slack = n_clips - int(lengths.sum()) - (k - 1)
    # distribute the slack over the k+1 gaps, uniformly among compositions
    cuts = np.sort(rng.integers(0, slack + 1, size=k))
    windows, pos, prev_cut = [], 0, 0
    for length, cut in zip(lengths, cuts):
        pos += int(cut - prev_cut)
        windows.append((pos, pos + int(length)))
        pos += int(length) + 1
        prev_cut = cut
    return tuple(windows)


def _video_scene(rng: np.random.Generator, n_clips: int) -> tuple[Scene, list[Obj]]:
    """A video's scene and its 1..MAX_QUERIES_PER_VIDEO query targets: an anchor object and
    DISTRACTORS distractors sharing all but one or two of its attributes (ALWAYS_VISIBLE of them
    visible throughout); every windowed object that some description singles out is a target
    (the anchor always)."""
    anchor = dataclasses.replace(_random_object(rng), windows=_random_windows(rng, n_clips))
    objects = [anchor]
    for _ in range(int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1))):
        d = _distractor(rng, anchor)
        always = rng.random() < ALWAYS_VISIBLE
        objects.append(dataclasses.replace(d, windows=None if always else _random_windows(rng, n_clips)))
    others = [o for o in objects[1:] if o.windows is not None and unambiguous_attribute_sets(objects, o)]
    others = [others[i] for i in rng.permutation(len(others))]
    # the anchor is always singled out: every distractor differs from it in some attribute
    return Scene(tuple(objects), _background(rng)), [anchor, *others][:MAX_QUERIES_PER_VIDEO]


def _saliency(scene: Scene, target: Obj, clips: list[int], rng: np.random.Generator, size: int) -> list[list[int]]:
    """Three annotators' 1–4 scores per clip from the target's visibility, size and centrality."""
    bias = rng.uniform(-0.5, 0.5, size=3)
    rows = []
    for c in clips:
        t = c * CLIP_SECONDS + CLIP_SECONDS / 2
        x, y = target.centre(t)
        centrality = 1 - 0.5 * min(1.0, math.hypot(x - 0.5, y - 0.5) / 0.6)
        quality = visibility(scene, target, t, size) * (1.0 if target.size == "large" else 0.75) * centrality
        raw = 1 + 3.4 * quality + bias + rng.normal(0, 0.4, size=3)
        rows.append([int(v) for v in np.clip(np.round(raw), 1, 4)])
    return rows


def _annotation(scene: Scene, target: Obj, duration: float, rng: np.random.Generator, size: int) -> dict:
    """QVHighlights fields except ``qid`` and ``vid``; the query is the coarsest unambiguous one."""
    levels = unambiguous_attribute_sets(scene.objects, target)
    attrs = levels[0][rng.integers(len(levels[0]))]
    clips = sorted(c for s, e in target.windows for c in range(s, e))
    return {
        "query": describe(target, attrs, rng),
        "duration": _num(duration),
        "relevant_windows": [[_num(s * CLIP_SECONDS), _num(e * CLIP_SECONDS)] for s, e in target.windows],
        "relevant_clip_ids": clips,
        "saliency_scores": _saliency(scene, target, clips, rng, size),
    }


def video_content(seed: int, index: int, duration: float, size: int) -> tuple[Scene, list[dict]]:
    """Scene of video ``index`` and its 1..MAX_QUERIES_PER_VIDEO annotations (without ``qid``/``vid``), seeded by
    ``(seed, index)`` only; ``size`` is the frame side used to measure visibility."""
    rng = np.random.default_rng([seed, index])
    scene, targets = _video_scene(rng, int(duration // CLIP_SECONDS))
    return scene, [_annotation(scene, t, duration, rng, size) for t in targets]


def video_frames(scene: Scene, seed: int, index: int, duration: float, fps: float, size: int) -> np.ndarray:
    """The frames written for video ``index``: ``render`` at times ``k / fps``, uint8 (T, H, W, 3)."""
    rng = np.random.default_rng([seed, index, 1])
    return np.stack([render(scene, size, k / fps, rng) for k in range(int(round(duration * fps)))])


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _config(seed, n_train, n_val, n_test, duration, write_fps, frame_size) -> dict:
    if duration <= 0 or duration % CLIP_SECONDS or duration < 4 * CLIP_SECONDS:
        raise ValueError(f"duration must be a multiple of {CLIP_SECONDS} s and at least {4 * CLIP_SECONDS} s (got {duration})")
    if write_fps <= 0 or not float(duration * write_fps).is_integer():
        raise ValueError(f"duration * write_fps must be a whole number of frames (got {duration} * {write_fps})")
    if frame_size < 16 or frame_size % 16:
        raise ValueError(f"frame_size must be a positive multiple of 16 (got {frame_size})")
    if min(n_train, n_val, n_test) < 0 or n_train + n_val + n_test == 0:
        raise ValueError("split sizes must be non-negative and not all zero")
    return {"version": GENERATOR_VERSION, "seed": int(seed), "n_train": int(n_train), "n_val": int(n_val),
            "n_test": int(n_test), "duration": _num(duration), "write_fps": _num(write_fps), "frame_size": int(frame_size)}


def _defaults() -> dict:
    """Generator arguments of the default size (``presets.SIZES``), frame rate and frame side."""
    from r2bench.datasets.synthetic.presets import DEFAULT_SIZE, SIZES
    return {"seed": 0, **SIZES[DEFAULT_SIZE], "write_fps": 2, "frame_size": 64}


def default_root(**cfg) -> Path:
    """``cache_dir()/synthetic/<digest of the config>`` (unspecified fields: the default size)."""
    return _root_for(_config(**{**_defaults(), **cfg}))


def _root_for(config: dict) -> Path:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "synthetic" / digest


def _complete(root: Path, config: dict) -> bool:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("config") == config and all((root / f).is_file() for f in manifest.get("files", []))


def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """H.264 (yuv420p, CRF 16: colours survive, the noise costs ~200 kB a minute at 64 px)."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(
        str(path), (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264", pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p", quality=None, macro_block_size=16, ffmpeg_log_level="error",
        output_params=["-crf", "16", "-preset", "veryfast", "-threads", "1"])
    try:
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    except (OSError, RuntimeError) as e:   # ffmpeg died (a full disk, most often): one line, not its whole log
        raise _writer_error(path, e) from None


def _writer_error(path: Path, e: BaseException) -> OSError:
    """The error of an ffmpeg writer that failed on ``path``: ``ENOSPC`` naming the folder when
    the disk is full, else the last line ffmpeg said."""
    import errno
    try:
        full = shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        full = False
    text = str(e).strip().splitlines()
    if full or "No space left" in str(e):
        return OSError(errno.ENOSPC, "No space left on device", str(path.parent))
    last = next((line for line in reversed(text) if line.strip()), type(e).__name__)
    return OSError(errno.EIO, f"ffmpeg could not write the video ({last[:200]})", str(path))


def _make_video(index: int, path: Path, config: dict) -> list[dict]:
    """Write video ``index`` to ``path``; return its annotations (without qid/vid)."""
    seed, duration, size = config["seed"], config["duration"], config["frame_size"]
    scene, anns = video_content(seed, index, duration, size)
    _write_video(path, video_frames(scene, seed, index, duration, config["write_fps"], size), config["write_fps"])
    return anns


def locate(root: str | os.PathLike | None = None, seed: int = 0, n_train: int | None = None,
           n_val: int | None = None, n_test: int | None = None, duration: float | None = None,
           write_fps: float = 2, frame_size: int = 64) -> Path | None:
    """Where :func:`generate` with these arguments keeps a complete benchmark, or None when it
    has not been generated on this machine (nothing is written)."""
    d = _defaults()
    sizes = {k: d[k] if v is None else v for k, v in dict(n_train=n_train, n_val=n_val, n_test=n_test,
                                                            duration=duration).items()}
    config = _config(seed, write_fps=write_fps, frame_size=frame_size, **sizes)
    root = Path(root) if root is not None else _root_for(config)
    return root if _complete(root, config) else None


def generate(root: str | os.PathLike | None = None, seed: int = 0, n_train: int | None = None,
             n_val: int | None = None, n_test: int | None = None, duration: float | None = None,
             write_fps: float = 2, frame_size: int = 64, progress: bool = True) -> Path:
    """Write (or reuse) the benchmark at ``root`` (default: ``default_root(...)``) and return it.
    Split sizes and duration left out take the default size's (``presets.SIZES``).

    Layout: ``videos/<vid>.mp4`` (H.264, yuv420p), ``annotations/{train,val,test}.jsonl``
    (QVHighlights format, labelled, split by video) and ``manifest.json``. Everything is
    written to a temporary sibling directory and renamed into place when complete.
    """
    given = dict(n_train=n_train, n_val=n_val, n_test=n_test, duration=duration)
    d = _defaults()
    sizes = {k: d[k] if v is None else v for k, v in given.items()}
    config = _config(seed, write_fps=write_fps, frame_size=frame_size, **sizes)
    root = Path(root) if root is not None else _root_for(config)
    if _complete(root, config):
        return root
    if root.exists() and any(root.iterdir()) and not (root / "manifest.json").exists():
        raise FileExistsError(f"{root} exists and is not a synthetic benchmark; refusing to overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_for(root)
    try:
        (tmp / "videos").mkdir()
        (tmp / "annotations").mkdir()
        splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
        vids = [f"syn{i:05d}" for i in range(len(splits))]
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            jobs = [pool.submit(_make_video, i, tmp / "videos" / f"{vid}.mp4", config) for i, vid in enumerate(vids)]
            results = [j.result() for j in tqdm(jobs, desc="synthetic videos", unit="video", disable=not progress)]
        lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        qid = 0
        for split, vid, anns in zip(splits, vids, results):
            for ann in anns:
                lines[split].append(json.dumps({"qid": qid, "query": ann["query"], "duration": ann["duration"],
                                                "vid": vid, **ann}))
                qid += 1
        files = [f"videos/{vid}.mp4" for vid in vids]
        for split, rows in lines.items():
            (tmp / "annotations" / f"{split}.jsonl").write_text("".join(r + "\n" for r in rows))
            files.append(f"annotations/{split}.jsonl")
        manifest = {"config": config, "files": files, "n_queries": {s: len(r) for s, r in lines.items()}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if root.exists():
            shutil.rmtree(root)  # an incomplete or differently-configured earlier benchmark
        try:
            os.rename(tmp, root)
        except OSError:
            if not _complete(root, config):  # a concurrent generator did not win the race either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> None:
    from r2bench.datasets.synthetic.presets import DEFAULT_SIZE, SIZES
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--size", choices=list(SIZES), default=DEFAULT_SIZE, help="split sizes and duration")
    p.add_argument("--seed", type=int, default=0)
    for k in ("n_train", "n_val", "n_test", "duration"):
        p.add_argument(f"--{k.replace('_', '-')}", type=int, default=None, help="override the size's value")
    args = vars(p.parse_args(argv))
    size = SIZES[args.pop("size")]
    print(generate(**{**args, **{k: size[k] if args[k] is None else args[k] for k in size}}))


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
