"""Thread count and OpenMP wait policy, alone and beside a second busy PyTorch process.

    python docs/measurements/threads/measure.py [--steps 30] [--repeats 2] > result.json

Workload: forward, backward and AdamW of a 4-layer transformer (width 256, 75 tokens, batch 8,
fp32): the shape of the grounding head's work from cached features. For each setting the
workload runs alone, then as two copies at once (the second copy stands for "one other
PyTorch process"); the median wall time of the first copy is reported. Settings are
interleaved within each repeat, so that a change in the machine's other load touches all.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORK = r"""
import sys, time, torch
torch.manual_seed(0)
layer = torch.nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
model = torch.nn.TransformerEncoder(layer, 4)
opt = torch.optim.AdamW(model.parameters(), 1e-4)
x = torch.randn(8, 75, 256)
for _ in range(3):
    model(x).square().mean().backward(); opt.step(); opt.zero_grad()
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    model(x).square().mean().backward(); opt.step(); opt.zero_grad()
print(time.perf_counter() - start)
"""

SETTINGS = {   # name -> environment
    "2 threads, libgomp default wait": {"OMP_NUM_THREADS": "2"},
    "2 threads, OMP_WAIT_POLICY=ACTIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "2 threads, GOMP_SPINCOUNT=10000": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "10000"},
    "1 thread, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
}


def run(env: dict, steps: int, copies: int) -> float:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")}
    full = {**base, **env, "MKL_NUM_THREADS": env["OMP_NUM_THREADS"]}
    procs = [subprocess.Popen([sys.executable, "-c", WORK, str(steps)], env=full, stdout=subprocess.PIPE, text=True)
             for _ in range(copies)]
    first = float(procs[0].communicate()[0])
    for p in procs[1:]:
        p.communicate()
    return first


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    out = dict(cores=len(os.sched_getaffinity(0)), steps=args.steps, repeats=args.repeats,
               load_before=os.getloadavg()[0], settings={})
    times = {name: dict(alone=[], beside=[]) for name in SETTINGS}
    for _ in range(args.repeats):
        for name, env in SETTINGS.items():
            times[name]["alone"].append(run(env, args.steps, 1))
            times[name]["beside"].append(run(env, args.steps, 2))
    for name, t in times.items():
        alone, beside = statistics.median(t["alone"]), statistics.median(t["beside"])
        out["settings"][name] = dict(alone_s=round(alone, 2), beside_s=round(beside, 2),
                                     slowdown=round(beside / alone, 2), runs=t)
        print(name, {k: v for k, v in out["settings"][name].items() if k != "runs"}, file=sys.stderr)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
