"""Small hand-made suite folders for the report tests: ledger records as ``bench/run.py`` writes
them, each trained run with its ``per_query.csv`` and predictions file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")
DEFAULT_CONFIG = dict(k=4, layer_mode="recurrent", reverse=True, shared_block=True, attention_order="cross_self",
                      temporal_layers=1, video_calibration_weight=0.1, layer_calibration_weight=0.1)


def queries(n: int, seed: int = 0) -> list[str]:
    """``n`` queries of 2–13 words."""
    rng = np.random.default_rng(seed)
    words = "a small red circle moving left in the upper half of the frame".split()
    return [" ".join(words[: int(rng.integers(2, len(words) + 1))]) for _ in range(n)]


class SuiteDir:
    """Builds ``<root>/ledger.jsonl`` one record at a time."""

    def __init__(self, root: Path, suite: str):
        self.root, self.suite = Path(root), suite
        self.root.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = []

    def add(self, row: str, method: str = "r2_tuning", seed: int = 0, *, values: dict | None = None,
            status: str = "ok", error: str | None = None, config: dict | None = None, dataset: str = "synthetic",
            category: str = "METL", memory_gib: float = 8.0, memory_source: str = "estimate", params_M: float = 2.7,
            weights: str = "tiny.safetensors#00aa", per_query: bool = True, relative: bool = False,
            metrics: dict | None = None, qids=None, query_texts=None, **extra) -> dict:
        """Add a run. ``values``: {metric: per-query vector}; metrics are their means."""
        run_id = f"{self.suite}-{method}-{dataset}-s{seed}-{len(self.records):04d}"
        rec = dict(run_id=run_id, suite=self.suite, row=row, method=method, label=row, category=category,
                   dataset=dataset, dataset_version="v1", seed=seed, status=status, error=error,
                   backbone="R2Bench-Tiny", weights=weights, overrides={}, config={**DEFAULT_CONFIG, **(config or {})},
                   protocol=None, train_config=dict(epochs=9, batch_size=16, seed=seed),
                   versions=dict(torch="2.x", open_clip="3.3"), code_version="abc123+def", commit="abc123",
                   benchmark_version="synthetic-g2c2-default",
                   device="cpu", params=int(params_M * 2**20), params_M=params_M, memory_gib=memory_gib,
                   memory_source=memory_source, started="2026-11-24T10:00:00+00:00",
                   finished="2026-11-24T10:01:00+00:00", **extra)
        if status == "ok" and values is not None:
            n = len(next(iter(values.values())))
            qids = list(qids) if qids is not None else list(range(n))
            run_dir = self.root / "runs" / run_id
            run_dir.mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame({"qid": qids, **{k: np.asarray(v, float) for k, v in values.items()}})
            rec["metrics"] = metrics or {k: round(float(np.nanmean(v)), 2) for k, v in values.items()}
            texts = query_texts or queries(n)
            preds = run_dir / "val_preds.jsonl"
            preds.write_text("".join(json.dumps(dict(qid=q, query=t, vid=f"v{int(i) // 2}",
                                                     pred_relevant_windows=[[0.0, 10.0, 0.9]],
                                                     pred_saliency_scores=[0.1] * 10)) + "\n"
                                     for i, (q, t) in enumerate(zip(qids, texts))))
            rec["predictions"] = str(preds)
            if per_query:
                frame.to_csv(run_dir / "per_query.csv", index=False)
                rec["per_query"] = f"runs/{run_id}/per_query.csv" if relative else str(run_dir / "per_query.csv")
        elif status == "ok" and metrics is not None:
            rec["metrics"] = metrics
        self.records.append(rec)
        self.write()
        return rec

    def write(self) -> Path:
        path = self.root / "ledger.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        return path


def vectors(n: int, shift: float = 0.0, seed: int = 0, noise: float = 20.0) -> dict:
    """Per-query vectors for the five metrics: a base per query (same for every call), plus ``shift``,
    plus per-call noise (``seed``) of sd ``noise``·0.1."""
    base = np.random.default_rng(1234).uniform(10, 90, size=(len(METRICS), n))
    jitter = np.random.default_rng(seed).normal(0, noise * 0.1, size=base.shape) if seed else 0.0
    return {m: base[i] + shift + (jitter[i] if seed else 0.0) for i, m in enumerate(METRICS)}


def table9_build(records: list[dict], include_missing: bool = False):
    """Table 9 as the suite declares it (``include_missing``: also the paper rows nobody ran)."""
    import dataclasses
    from r2bench.bench.suites import get_suite
    from r2bench.reports.tables.common import build_table
    return build_table(records, dataclasses.replace(get_suite("table9").layout(), show_missing=include_missing))


def table9_render(suite_dir, out_dir, include_missing: bool = False):
    """``table9.md``, ``.tex``, ``.csv`` of the ledger in ``suite_dir``, as ``r2bench report`` writes them."""
    from r2bench.reports import records as rec
    from r2bench.reports.tables.common import write_table
    return write_table(table9_build(rec.load_records(suite_dir), include_missing), out_dir)
