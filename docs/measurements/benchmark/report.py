"""Statistics of the runs written by ``experiments.py run`` (called as ``experiments.py report``)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as st

from r2bench.reports.stats import (bootstrap_ci, estimate_variance_components, holm, minimum_detectable_effect, paired_test,
                         per_query_matrix, seed_summary)

LABELS = {"frozen": "w/o Tuning (K=1)", "r2_tuning": "R²-Tuning (K=4)", "r2_k2": "R²-Tuning K=2",
          "r2_nocal": "R²-Tuning K=4, no calibration losses", "control_shuffled_queries": "Control: shuffled queries",
          "control_mean_frame": "Control: mean frame"}
HEADLINE = ("MR-full-mAP", "HL-min-VeryGood-mAP")
ALL_METRICS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")
PLANNED = [("r2_tuning", "frozen", "R² (K=4) vs w/o Tuning (K=1)"), ("r2_k2", "frozen", "K=2 vs K=1"),
           ("r2_tuning", "r2_k2", "K=4 vs K=2"), ("r2_tuning", "r2_nocal", "with vs without calibration losses")]
FINE_WORDS = ("small", "large", "half", "moving", "still")


def load(folder: Path) -> dict[str, dict[int, pd.DataFrame]]:
    runs: dict[str, dict[int, pd.DataFrame]] = {}
    for path in sorted(folder.glob("*-per_query.csv")):
        name, seed = path.name[: -len("-per_query.csv")].rsplit("-s", 1)
        runs.setdefault(name, {})[int(seed)] = pd.read_csv(path)
    return runs


def fine_qids(folder: Path) -> set:
    record = json.loads(next(folder.glob("frozen-s*.json")).read_text())
    preds = Path(record["predictions"]).read_text().splitlines()
    return {p["qid"] for p in map(json.loads, preds) if any(w in p["query"].split() for w in FINE_WORDS)}


def seed_t_test(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Welch's t-test on the per-seed headline metrics (retraining variance included)."""
    x, y = a.mean(0).to_numpy(), b.mean(0).to_numpy()
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    return float(st.ttest_ind(x, y, equal_var=False).pvalue)


def report(args) -> None:
    folder = args.out / args.size
    runs = load(folder)
    fine = fine_qids(folder)
    lines, out = [], {"size": args.size}
    mats = {m: {name: per_query_matrix(seeds, m) for name, seeds in runs.items()} for m in ALL_METRICS}
    n_q = len(next(iter(mats["MR-full-mAP"].values())))
    lines.append(f"### Rows ({args.size}: {n_q} val queries, {len(fine)} of them fine)\n")
    lines.append("| row | seeds | " + " | ".join(ALL_METRICS) + " | MR mAP coarse | MR mAP fine |")
    lines.append("|---|---:|" + "---:|" * (len(ALL_METRICS) + 2))
    for name in [n for n in LABELS if n in runs]:
        cells = []
        for m in ALL_METRICS:
            mean, sd, k = seed_summary(mats[m][name])
            ci = bootstrap_ci(mats[m][name].mean(1))
            cells.append(f"{mean:.2f} ± {sd:.2f} [{ci.low:.1f}, {ci.high:.1f}]" if k > 1 else
                         f"{mean:.2f} [{ci.low:.1f}, {ci.high:.1f}]")
            out.setdefault("rows", {}).setdefault(name, {})[m] = dict(mean=mean, seed_std=sd, n_seeds=k,
                                                                      ci=[ci.low, ci.high])
        avg = mats["MR-full-mAP"][name].mean(1)
        is_fine = avg.index.isin(list(fine)) if avg.index.name == "qid" else None
        cells += [f"{avg[~is_fine].mean():.2f}", f"{avg[is_fine].mean():.2f}"]
        lines.append(f"| {LABELS[name]} | {len(runs[name])} | " + " | ".join(cells) + " |")
    lines.append("\nCells: mean ± seed std (ddof 1) [95 % BCa bootstrap interval over queries of the seed-averaged "
                 "per-query values].\n")

    for metric in HEADLINE:
        lines.append(f"### Planned comparisons, {metric} (Holm over the {len(PLANNED)} comparisons)\n")
        lines.append("| comparison | diff | 95 % CI (queries) | p (per-query perm.) | p Holm | significant | "
                     "p (seed-level Welch t) |")
        lines.append("|---|---:|---:|---:|---:|---|---:|")
        rows = [(a, b, text) for a, b, text in PLANNED if a in runs and b in runs]
        res = [paired_test(mats[metric][a].mean(1), mats[metric][b].mean(1)) for a, b, _ in rows]
        adj = holm([r.p_value for r in res])
        for (a, b, text), r, p_adj in zip(rows, res, adj):
            t_p = seed_t_test(mats[metric][a], mats[metric][b])
            lines.append(f"| {text} | {r.diff:+.2f} | [{r.low:+.2f}, {r.high:+.2f}] | {r.p_value:.4f} | {p_adj:.4f} | "
                         f"{'yes' if p_adj <= 0.05 else 'no'} | {t_p:.3f} |")
            out.setdefault("planned", {}).setdefault(metric, {})[text] = dict(
                diff=r.diff, ci=[r.low, r.high], p=r.p_value, p_holm=float(p_adj), p_seed_t=t_p)
        lines.append("")

        controls = [c for c in ("control_shuffled_queries", "control_mean_frame") if c in runs]
        if controls and "frozen" in runs:
            res = [paired_test(mats[metric][c].mean(1), mats[metric]["frozen"].mean(1)) for c in controls]
            adj = holm([r.p_value for r in res])
            lines.append(f"Positive controls, {metric}, against w/o Tuning (Holm over {len(controls)}):\n")
            for c, r, p_adj in zip(controls, res, adj):
                lines.append(f"* {LABELS[c]}: {r.diff:+.2f} [{r.low:+.2f}, {r.high:+.2f}], p = {r.p_value:.4g}, "
                             f"Holm p = {p_adj:.4g}")
                out.setdefault("controls", {}).setdefault(metric, {})[c] = dict(diff=r.diff, p_holm=float(p_adj))
            lines.append("")

        lines.append(f"Negative control, {metric}: one method, two seeds, compared as two methods "
                     "(per-query paired permutation test, single seeds):\n")
        for name in ("frozen", "r2_tuning"):
            if name not in runs:
                continue
            for s, t in itertools.combinations(sorted(runs[name]), 2):
                m = mats[metric][name]
                r = paired_test(m[t], m[s])
                lines.append(f"* {LABELS[name]} seed {t} − seed {s}: {r.diff:+.2f} [{r.low:+.2f}, {r.high:+.2f}], "
                             f"p = {r.p_value:.4f}{' (significant)' if r.p_value <= 0.05 else ''}")
                out.setdefault("negative", {}).setdefault(metric, []).append(
                    dict(row=name, seeds=[t, s], diff=r.diff, p=r.p_value))
        lines.append("")

        if "frozen" in runs and "r2_tuning" in runs:
            vc = estimate_variance_components(mats[metric]["r2_tuning"], mats[metric]["frozen"])
            mde = {f"{k} seed(s)": minimum_detectable_effect(vc.sd_diff, vc.n_queries, k, vc.seed_sd) for k in (1, 3, 5)}
            mde_fixed = minimum_detectable_effect(vc.sd_diff, vc.n_queries, 1, 0.0)
            lines.append(f"Power, {metric}: sd of per-query differences {vc.sd_diff:.2f}, seed sd {vc.seed_sd:.2f} "
                         f"({vc.n_queries} queries). MDE (80 % power, α = 0.05): "
                         + ", ".join(f"{k}: {v:.2f}" for k, v in mde.items())
                         + f"; per-query test alone (seed sd 0): {mde_fixed:.2f}.\n")
            out.setdefault("power", {})[metric] = dict(sd_diff=vc.sd_diff, seed_sd=vc.seed_sd, n_queries=vc.n_queries,
                                                       mde=mde, mde_per_query_only=mde_fixed)
    text = "\n".join(lines)
    print(text)
    (folder / "report.md").write_text(text + "\n")
    (folder / "report.json").write_text(json.dumps(out, indent=1, default=float))
