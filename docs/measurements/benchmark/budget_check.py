"""The doubled-budget check (issue 14, item 3): every Table 9 row's MR mAP at the default budget
(3 epochs) beside twice the training steps (6 epochs), one seed, and whether the change exceeds
one seed sd of the default benchmark (0.88 MR mAP, docs/results.md).

    python run_all.py --suite table9 --out out_budget3                 # the default budget
    python run_all.py --suite table9 --epochs 6 --out out_budget6      # twice the steps
    python docs/measurements/benchmark/budget_check.py out_budget3/table9 out_budget6/table9 [--json FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

SEED_SD = 0.88     # MR mAP seed sd of benchmark synthetic-g3c3-default (3 seeds of w/o Tuning and R²-Tuning)


def rows(folder: Path) -> dict:
    out = {}
    for line in (folder / "ledger.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("status") == "ok" and r.get("seed") == 0:
            out[r["method"]] = dict(label=r["label"], mr_map=r["metrics"]["MR-full-mAP"],
                                    epochs=r.get("train_config", {}).get("epochs"), curve=r.get("curve"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", type=Path)
    p.add_argument("doubled", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    base, doubled = rows(a.base), rows(a.doubled)
    table = []
    print(f"| row | MR mAP, {next(iter(base.values()))['epochs']} epochs | MR mAP, "
          f"{next(iter(doubled.values()))['epochs']} epochs | change | beyond one seed sd ({SEED_SD}) |")
    print("|---|---:|---:|---:|---|")
    for method, b in base.items():
        if method not in doubled:
            continue
        d = doubled[method]
        change = d["mr_map"] - b["mr_map"]
        table.append(dict(method=method, label=b["label"], base=b["mr_map"], doubled=d["mr_map"], change=round(change, 2),
                          beyond_seed_sd=abs(change) > SEED_SD))
        print(f"| {b['label']} | {b['mr_map']:.2f} | {d['mr_map']:.2f} | {change:+.2f} | "
              f"{'yes' if abs(change) > SEED_SD else 'no'} |")
    if a.json:
        a.json.write_text(json.dumps(dict(seed_sd=SEED_SD, rows=table), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
