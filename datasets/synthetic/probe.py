"""Per-layer linear probes of the tiny CLIP: which object attributes each layer keeps.

``python -m r2bench.datasets.synthetic.probe [--weights PATH] [--n 3000]`` renders single-object
scenes (an object with random colour, shape, size, half and motion on a noisy background, at
times t and t + 2 s: consecutive frames at the benchmark's 0.5 fps), labels each with the
object's attributes and its ``side`` (left or right half of the frame at t), runs the frozen tiny CLIP
block by block (``methods.backbone.Backbone``: the tokens the grounding head reads) and fits,
per layer, a ridge-regression classifier on

* ``cls``: the CLS token of frame t (for ``motion``: of both frames, concatenated);
* ``tokens``: every token (CLS + patches) of frame t, flattened (``motion``: of both frames).

It prints held-out accuracy per layer, attribute and representation, with the majority-class
rate as chance. The ridge classifier (one-hot targets, closed form, penalty chosen on a
validation split) is written here because the project does not depend on scikit-learn.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from r2bench.datasets.synthetic import generator as synthetic

PROBE_ATTRIBUTES = ("colour", "shape", "size", "half", "side", "motion")
SIDES = ("left", "right")
PENALTIES = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
FRAME_GAP_S = 2.0


def probe_scenes(n: int, seed: int = 0, size: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` single-object scenes at t and t + 2 s: frames uint8 ``(n, 2, size, size, 3)`` and
    integer labels per attribute (index into the attribute's values; ``side``: 0 left, 1 right)."""
    rng = np.random.default_rng([seed, 7])
    frames, labels = [], {a: [] for a in PROBE_ATTRIBUTES}
    for _ in range(n):
        obj = synthetic._random_object(rng)
        scene = synthetic.Scene((obj,), synthetic._background(rng))
        t = float(rng.uniform(0, 20))
        frames.append(np.stack([synthetic.render(scene, size, t + d, rng) for d in (0.0, FRAME_GAP_S)]))
        for a in PROBE_ATTRIBUTES:
            if a == "side":   # left or right half of the frame at time t
                labels[a].append(int(obj.centre(t)[0] >= 0.5))
            else:
                labels[a].append(synthetic._VALUES[a].index(getattr(obj, a)))
    return np.stack(frames), {a: np.asarray(v) for a, v in labels.items()}


@torch.no_grad()
def layer_tokens(backbone, frames: np.ndarray, batch: int = 512) -> torch.Tensor:
    """Tokens of every layer: frames ``(n, 2, S, S, 3)`` → ``(n, 2, depth, 1 + P, D)``."""
    flat = frames.reshape(-1, *frames.shape[2:])
    taps = backbone.taps(backbone.depth)
    out = [backbone.video_tokens(backbone.preprocess(flat[i:i + batch]), taps)["block"]
           for i in range(0, len(flat), batch)]
    return torch.cat(out).unflatten(0, frames.shape[:2])


def ridge_accuracy(x: np.ndarray, y: np.ndarray, n_train: int, n_val: int) -> float:
    """Held-out accuracy of a ridge classifier (standardised features plus a constant, one-hot
    targets); the penalty is picked on the ``n_val`` samples after the first ``n_train``, then
    the classifier is refit on both and scored on the rest. Solved in the dual (samples ×
    samples), as features outnumber samples."""
    x = torch.as_tensor(x, dtype=torch.float64)
    labels = torch.as_tensor(y)
    target = torch.nn.functional.one_hot(labels, int(y.max()) + 1).double()

    def predictions(fit: slice, rows: slice, penalties) -> list[torch.Tensor]:
        mean, std = x[fit].mean(0), x[fit].std(0).clamp_min(1e-6)
        z, zr = (x[fit] - mean) / std, (x[rows] - mean) / std
        gram, cross = z @ z.T + 1.0, zr @ z.T + 1.0               # + 1: the constant feature
        eye = torch.eye(len(z), dtype=z.dtype)
        return [cross @ torch.cholesky_solve(target[fit], torch.linalg.cholesky(gram + p * len(z) * eye))
                for p in penalties]

    train, val, test = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    val_acc = [float((s.argmax(1) == labels[val]).double().mean()) for s in predictions(train, val, PENALTIES)]
    best = PENALTIES[int(np.argmax(val_acc))]
    (scores,) = predictions(slice(0, n_train + n_val), test, [best])
    return float((scores.argmax(1) == labels[test]).double().mean())


def run_probes(backbone, n: int = 3000, seed: int = 0) -> dict:
    """``{"chance": {attr: rate}, "cls"/"tokens": {attr: [accuracy per layer 1..depth]}}`` on
    ``n`` scenes (60 % fit, 20 % penalty choice, 20 % test)."""
    frames, labels = probe_scenes(n, seed, backbone.image_size)
    tokens = layer_tokens(backbone, frames)                               # n, 2, L, 1+P, D
    n_train, n_val = int(0.6 * n), int(0.2 * n)
    result: dict = {"chance": {}, "cls": {}, "tokens": {}, "n": n}
    for attr in PROBE_ATTRIBUTES:
        y = labels[attr]
        result["chance"][attr] = float(np.bincount(y[n_train + n_val:]).max() / (n - n_train - n_val))
        frames_used = slice(0, 2) if attr == "motion" else slice(0, 1)
        for rep in ("cls", "tokens"):
            accs = []
            for layer in range(backbone.depth):
                feats = tokens[:, frames_used, layer, :1] if rep == "cls" else tokens[:, frames_used, layer]
                accs.append(ridge_accuracy(feats.flatten(1).numpy(), y, n_train, n_val))
            result[rep][attr] = accs
    return result


def table_rows(result: dict) -> list[list[str]]:
    """The probe table as text cells, header first: one row per (representation, attribute),
    one column per layer, accuracies in %."""
    depth = len(next(iter(result["cls"].values())))
    rows = [["representation", "attribute", "chance", *(f"layer {i + 1}" for i in range(depth))]]
    for rep in ("cls", "tokens"):
        for attr, accs in result[rep].items():
            rows.append([rep, attr, f"{100 * result['chance'][attr]:.0f}", *(f"{100 * a:.0f}" for a in accs)])
    return rows


def rows_to_markdown(rows: list[list[str]]) -> list[str]:
    """:func:`table_rows` as Markdown lines (chance and the layers right-aligned)."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|---|---|" + "---:|" * (len(rows[0]) - 2)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


def format_table(result: dict) -> str:
    """A Markdown table: one row per (representation, attribute), one column per layer."""
    return "\n".join(rows_to_markdown(table_rows(result)))


def main(argv: list[str] | None = None) -> None:
    from r2bench.methods.backbone import Backbone
    from r2bench.datasets.synthetic.tiny_clip import MODEL_NAME, ensure_tiny_clip
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="tiny CLIP checkpoint (default: the cached default, pretrained if absent)")
    p.add_argument("--model", default=MODEL_NAME, help=f"open_clip config of --weights (default {MODEL_NAME})")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    if args.model != MODEL_NAME and not args.weights:
        p.error("--model needs --weights")
    backbone = Backbone(args.model, args.weights or ensure_tiny_clip())
    result = run_probes(backbone, args.n, args.seed)
    print(format_table(result))
    if args.json:
        from r2bench.core.io import atomic_write
        atomic_write(args.json, json.dumps(result, indent=1))


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
