"""Real-scale figures for docs/datasets.md and docs/reliability.md (issue 13, items 4–6).

    python docs/measurements/realscale/measure.py --out docs/measurements/realscale/cpu.json

* decode: one 150-s H.264 video at 30 fps (640×360, as QVHighlights' downloads) decoded at the
  dataset's 0.5 fps and resized/cropped to 224 px (ViT-B/32's input), wall and CPU seconds, and the
  bytes its preprocessed frames take in the frame memo;
* workers: videos per second decoded by 0, 1 and 2 DataLoader workers (the throughput a GPU
  training step must not outrun);
* memo: RSS growth while 200 such frame tensors stream through a 256 MiB byte-bounded memo.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--videos", type=int, default=6)
    args = p.parse_args()
    from r2bench.core.memo import ByteLRU, nbytes
    from r2bench.datasets.video import read_frames
    from tests.realformat import h264_videos
    result = {"threads": torch.get_num_threads(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0, c0 = time.perf_counter(), cpu_s()
        h264_videos(folder, {f"v{i}": 150.0 for i in range(args.videos)}, fps=30, size=(640, 360))
        result["write_s_per_video"] = round((time.perf_counter() - t0) / args.videos, 2)
        paths = sorted(folder.glob("*.mp4"))
        result["video_bytes"] = paths[0].stat().st_size
        walls, cpus = [], []
        for path in paths:
            t0, c0 = time.perf_counter(), cpu_s()
            frames = read_frames(path, 0.5, 224)
            walls.append(time.perf_counter() - t0)
            cpus.append(cpu_s() - c0)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()      # what the frame memo holds (fp32, CHW)
        result["decode"] = dict(frames=int(frames.shape[0]), wall_s=round(sorted(walls)[len(walls) // 2], 3),
                                cpu_s=round(sorted(cpus)[len(cpus) // 2], 3), memo_mb=round(nbytes(x) / 1e6, 1))

        from torch.utils.data import DataLoader, Dataset

        class Decode(Dataset):
            def __len__(self):
                return len(paths) * 2

            def __getitem__(self, i):
                return torch.from_numpy(read_frames(paths[i % len(paths)], 0.5, 224)).shape[0]
        result["workers"] = {}
        for workers in (0, 1, 2):
            loader = DataLoader(Decode(), batch_size=1, num_workers=workers)
            t0 = time.perf_counter()
            n = sum(1 for _ in loader)
            result["workers"][workers] = round(n / (time.perf_counter() - t0), 2)

    budget = 256 * 2**20
    memo = ByteLRU(lambda vid: torch.ones(75, 3, 224, 224), max_bytes=budget)
    before, peak = rss(), 0
    for vid in range(200):
        memo(vid)
        peak = max(peak, rss() - before)
    result["memo"] = dict(videos=200, video_mb=round(75 * 3 * 224 * 224 * 4 / 1e6, 1), budget_mib=256,
                          held_mib=round(memo.bytes / 2**20, 1), rss_growth_peak_mib=round(peak / 2**20, 1),
                          unbounded_would_hold_gb=round(200 * 75 * 3 * 224 * 224 * 4 / 1e9, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
