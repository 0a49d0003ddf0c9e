"""Calibrate the seed variance of the built-in benchmark from a suite run with several seeds, and
write the file that one-seed tables read (``datasets/synthetic/seed_calibration.json``).

    python run_all.py --suite table9 --seeds 0 1 2
    python docs/measurements/benchmark/calibrate.py out/table9 [--write datasets/synthetic/seed_calibration.json]

Per metric of Table 9: every row with ≥ 2 ok seeds contributes its per-seed headline values
(the means over its per-query values) and its seed × query residual (``stats.residual_variance``);
the seed variance is pooled over rows, weighted by their degrees of freedom (seeds − 1 each):
``seed_sd = sqrt(Σ (S_r − 1) var_r / Σ (S_r − 1))``, ``df = Σ (S_r − 1)``, and ``noise_sd`` the same
pooling of the residual. Pooling assumes every method has the same seed variance; Bartlett's
test over the rows (``scipy.stats.bartlett``) is printed and stored, with the rows whose own
sd is furthest from the pooled one, so that a reader sees where the assumption is strained.

The file names what it applies to — benchmark version, weights digest, training settings — and
``datasets.synthetic.presets.seed_calibration`` uses it only for runs that match all three.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date
from pathlib import Path

import numpy as np
import scipy.stats as st

from r2bench.datasets.synthetic.presets import training_settings
from r2bench.reports import records as rec
from r2bench.reports import stats

KEYS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")


def calibrate(suite_dir: Path) -> dict:
    records = [r for r in rec.load_records(suite_dir) if r.get("status") == "ok"]
    if not records:
        raise SystemExit(f"{suite_dir}: no ok runs")
    for field in ("benchmark_version", "weights"):
        values = {r.get(field) for r in records}
        if len(values) != 1:
            raise SystemExit(f"{suite_dir}: runs of several {field}s ({sorted(map(str, values))}): calibrate one")
    trainings = {json.dumps(training_settings(r.get("train_config")), sort_keys=True) for r in records}
    if len(trainings) != 1:
        raise SystemExit(f"{suite_dir}: runs with different training settings: calibrate one setting")
    rows: dict[str, list[dict]] = {}
    for r in records:
        rows.setdefault(r["row"], []).append(r)
    rows = {row: runs for row, runs in rows.items() if len(runs) >= 2}
    if len(rows) < 2:
        raise SystemExit(f"{suite_dir}: fewer than two rows with two or more seeds")
    metrics, detail = {}, {}
    for key in KEYS:
        per_row, residual = {}, {}
        for row, runs in rows.items():
            m = stats.per_query_matrix({r["seed"]: rec.per_query(r) for r in runs}, key)
            per_row[row] = m.mean(axis=0).to_numpy()
            residual[row] = stats.residual_variance(m)
        dfs = {row: len(v) - 1 for row, v in per_row.items()}
        df = sum(dfs.values())
        seed_var = sum(dfs[row] * float(np.var(v, ddof=1)) for row, v in per_row.items()) / df
        noise_var = sum(dfs[row] * residual[row] for row in per_row) / df
        bartlett = st.bartlett(*per_row.values())
        seeds = sorted({len(v) for v in per_row.values()})
        metrics[key] = dict(seed_sd=round(math.sqrt(seed_var), 4), df=df, noise_sd=round(math.sqrt(noise_var), 4),
                            source=f"{len(per_row)} rows × {'/'.join(map(str, seeds))} seeds of "
                                   f"{records[0]['suite']}, pooled (df {df}); Bartlett p = {bartlett.pvalue:.3g}")
        detail[key] = dict(per_row_sd={row: round(float(np.std(v, ddof=1)), 3) for row, v in per_row.items()},
                           bartlett_statistic=round(float(bartlett.statistic), 3), bartlett_p=float(bartlett.pvalue))
    first = records[0]
    return dict(match=dict(benchmark_version=first["benchmark_version"], weights=first["weights"],
                           train_config=training_settings(first.get("train_config"))),
                metrics=metrics, detail=detail, measured=str(date.today()),
                runs=sorted(r["run_id"] for runs in rows.values() for r in runs))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite_dir", type=Path, help="a suite folder with a ledger (e.g. out/table9)")
    p.add_argument("--write", type=Path, help="the calibration file to write (its other versions are kept)")
    a = p.parse_args(argv)
    entry = calibrate(a.suite_dir)
    for key, m in entry["metrics"].items():
        sds = entry["detail"][key]["per_row_sd"]
        spread = ", ".join(f"{row} {sd:.2f}" for row, sd in sorted(sds.items(), key=lambda kv: -kv[1])[:3])
        print(f"{key:22s} seed sd {m['seed_sd']:.3f} (df {m['df']}), noise sd {m['noise_sd']:.2f}; "
              f"Bartlett p {entry['detail'][key]['bartlett_p']:.3g}; largest per-row sd: {spread}")
    if a.write:
        try:
            shipped = json.loads(a.write.read_text())
        except (OSError, ValueError):
            shipped = {}
        keep = [c for c in shipped.get("calibrations", []) if c.get("match") != entry["match"]]
        doc = dict(about="Calibrated training-seed variance of the built-in benchmark, per metric; written by "
                         "docs/measurements/benchmark/calibrate.py; read by datasets.synthetic.presets.seed_calibration "
                         "for runs that match 'match' exactly (docs/statistics.md).",
                   calibrations=[*keep, entry])
        a.write.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"written: {a.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
