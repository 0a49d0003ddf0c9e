"""Seeds × configurations on the built-in benchmark, with per-query metrics, for docs/benchmark.md.

    OMP_NUM_THREADS=1 python docs/measurements/benchmark/experiments.py run --size default --seeds 0 1 2 \\
        --configs frozen r2_tuning r2_k2 r2_nocal control_shuffled_queries control_mean_frame
    python docs/measurements/benchmark/experiments.py report --size default

``run`` trains and evaluates each (configuration, seed) with ``bench.run.execute`` (the tiny
CLIP of seed 0, as the Quickstart uses) and writes ``<out>/<size>/<config>-s<seed>.json`` (the
run record plus ``benchmark_version``) and ``...-per_query.csv``; finished runs are skipped.
``report`` prints the comparisons (reports.stats) as Markdown and writes ``report.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CONFIGS = {  # name -> (registered method, overrides)
    "frozen": ("frozen", {}),
    "r2_tuning": ("r2_tuning", {}),
    "r2_k2": ("r2_tuning", {"k": 2}),
    "r2_k1": ("r2_tuning", {"k": 1}),
    "r2_nocal": ("r2_tuning", {"video_calibration_weight": 0.0, "layer_calibration_weight": 0.0}),
    "control_shuffled_queries": ("control_shuffled_queries", {}),
    "control_mean_frame": ("control_mean_frame", {}),
}
METRICS = ("MR-full-mAP", "MR-full-R1@0.5", "MR-full-R1@0.7", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")


def per_query_metrics(lines: list[dict], ground_truth: list[dict]) -> pd.DataFrame:
    """Per-query values (in points) whose means are the official brief metrics of ``METRICS``."""
    from r2bench.bench.metrics.qvhighlights import CLIP_SECONDS, MAX_PRED_WINDOWS, SALIENCY_LEVELS, _hl_ap, _mr_ap, temporal_iou
    gt = {g["qid"]: g for g in ground_truth}
    qids = [ln["qid"] for ln in lines]
    gts = [np.asarray(gt[q]["relevant_windows"], float).reshape(-1, 2) for q in qids]
    preds = [np.asarray(ln["pred_relevant_windows"], float).reshape(-1, 3)[:MAX_PRED_WINDOWS] for ln in lines]
    ap = _mr_ap(gts, preds).mean(1) * 100
    top1 = np.array([temporal_iou(p[None, :1, :2], g[None])[0, 0].max() for p, g in zip(preds, gts)])
    level = SALIENCY_LEVELS["VeryGood"]
    hd_ap, hit = [], []
    for ln, q in zip(lines, qids):
        g = gt[q]
        n_clips = int(g["duration"] / CLIP_SECONDS)
        scores = np.zeros((n_clips, 3))
        scores[np.asarray(g["relevant_clip_ids"])] = np.asarray(g["saliency_scores"])
        positive = scores >= level
        pred = np.asarray(ln["pred_saliency_scores"], float)
        k = int(np.argmax(pred))
        hit.append(100.0 * bool(k < n_clips and positive[k].any()))
        fitted = np.zeros(n_clips)
        fitted[:min(n_clips, len(pred))] = pred[:n_clips]
        hd_ap.append(100.0 * _hl_ap(positive.astype(float), fitted).mean())
    return pd.DataFrame({"qid": qids, "MR-full-mAP": ap, "MR-full-R1@0.5": 100.0 * (top1 >= 0.5),
                         "MR-full-R1@0.7": 100.0 * (top1 >= 0.7), "HL-min-VeryGood-mAP": hd_ap,
                         "HL-min-VeryGood-Hit1": hit})


def run(args) -> None:
    import torch
    from r2bench.bench.run import RunContext, RunSpec, execute
    from r2bench.datasets.registry import synthetic_dataset
    from r2bench.datasets.synthetic.presets import benchmark_version
    from r2bench.datasets.synthetic.tiny_clip import ensure_tiny_clip
    torch.set_num_threads(args.threads)
    spec = synthetic_dataset(seed=0, progress=False, size=args.size)
    weights = str(args.weights or ensure_tiny_clip())
    out = args.out / args.size
    out.mkdir(parents=True, exist_ok=True)
    gt = [s.raw for s in spec.samples(spec.eval_split)]
    for seed in args.seeds:
        for name in args.configs:
            path = out / f"{name}-s{seed}.json"
            if path.exists():
                continue
            method, overrides = CONFIGS[name]
            ctx = RunContext("benchmark", spec, "R2Bench-Tiny", weights, torch.device("cpu"), out / "runs", seed,
                             progress=False)
            record = execute(RunSpec(method, overrides), ctx, f"{name}-s{seed}")
            lines = [json.loads(x) for x in Path(record["predictions"]).read_text().splitlines()]
            pq = per_query_metrics(lines, gt)
            for m in METRICS:  # the per-query values reproduce the official evaluator
                assert abs(pq[m].mean() - record["metrics"][m]) < 0.01, (m, pq[m].mean(), record["metrics"][m])
            pq.to_csv(out / f"{name}-s{seed}-per_query.csv", index=False)
            record.update(benchmark_version=benchmark_version(args.size), config_name=name)
            path.write_text(json.dumps(record, indent=1))
            print(f"{name} seed {seed}: MR mAP {record['metrics']['MR-full-mAP']:.2f}, HD mAP "
                  f"{record['metrics']['HL-min-VeryGood-mAP']:.2f}, {record['wall_s']:.0f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=("run", "report"))
    p.add_argument("--size", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--weights", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(".cache/experiments"))
    args = p.parse_args()
    if args.command == "run":
        run(args)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import report  # noqa: E402  (beside this file)
        report(args)


if __name__ == "__main__":
    main()
