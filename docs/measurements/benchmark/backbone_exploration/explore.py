"""Exploration helper for the tiny CLIP backbone (issue 14): costs and a quick probe subset.

``cost --model M``: parameters, safetensors size, CPU ms of forward and forward+backward of a
batch of 64 frames through ``methods.backbone.Backbone`` (all blocks, the last 4 tapped, as the
frames methods read them; backward into every parameter, as full tuning), 1 thread.

``probe --model M --weights W --json F``: the probe of ``datasets.synthetic.probe`` restricted
to colour, shape, half and side (same scenes, same ridge, same splits: the numbers equal the
full probe's rows), both representations, per layer. Run with OMP_NUM_THREADS=1.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from r2bench.datasets.synthetic import probe as P
from r2bench.methods.backbone import Backbone

ATTRS = ("colour", "shape", "half", "side")


def cost(model: str, reps: int = 5) -> dict:
    torch.set_num_threads(1)
    bb = Backbone(model, None)
    vis = sum(p.numel() for p in bb.clip.visual.parameters())
    total = sum(p.numel() for p in bb.clip.parameters())
    s = bb.image_size
    x = torch.randn(64, 3, s, s)
    taps = bb.taps(min(4, bb.depth))

    def fwd():
        with torch.no_grad():
            bb.video_tokens(x, taps)

    def fwd_bwd():
        bb.clip.requires_grad_(True)
        out = bb.video_tokens(x, taps)["block"]
        out.float().square().mean().backward()
        bb.clip.zero_grad(set_to_none=True)

    res = {"model": model, "params_visual": vis, "params_total": total,
           "params_text_no_embedding": total - vis - bb.clip.token_embedding.weight.numel(),
           "token_embedding": bb.clip.token_embedding.weight.numel(), "tokens_per_frame": bb.tokens_per_frame}
    for name, f in (("fwd_ms", fwd), ("fwd_bwd_ms", fwd_bwd)):
        f()
        times = []
        for _ in range(reps):
            t = time.process_time()
            f()
            times.append(1000 * (time.process_time() - t))
        res[name] = float(np.median(times))
    return res


def quick_probe(model: str, weights: str, n: int = 3000, seed: int = 0) -> dict:
    bb = Backbone(model, weights)
    frames, labels = P.probe_scenes(n, seed, bb.image_size)
    tokens = P.layer_tokens(bb, frames)
    n_train, n_val = int(0.6 * n), int(0.2 * n)
    result: dict = {"chance": {}, "cls": {}, "tokens": {}, "n": n, "model": model, "weights": weights}
    for attr in ATTRS:
        y = labels[attr]
        result["chance"][attr] = float(np.bincount(y[n_train + n_val:]).max() / (n - n_train - n_val))
        for rep in ("cls", "tokens"):
            result[rep][attr] = [P.ridge_accuracy((tokens[:, 0:1, layer, :1] if rep == "cls" else
                                                   tokens[:, 0:1, layer]).flatten(1).numpy(), y, n_train, n_val)
                                 for layer in range(bb.depth)]
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("cost", "probe"))
    p.add_argument("--model", default="R2Bench-Tiny")
    p.add_argument("--weights")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--json")
    a = p.parse_args()
    t = time.process_time()
    r = cost(a.model) if a.what == "cost" else quick_probe(a.model, a.weights, a.n)
    r["cpu_s"] = time.process_time() - t
    if a.what == "probe":
        print(P.format_table(r))
    print(json.dumps({k: v for k, v in r.items() if k not in ("cls", "tokens", "chance")}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
