"""What every metric family shares: the result type, official rounding, stable ranking, and
the trapezoid AP of the highlight-detection evaluators (UMT/UniVTG/R²-Tuning)."""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from r2bench.core.errors import InputError
from r2bench.datasets.formats.base import Sample


@dataclass
class MetricResult:
    """``brief``: the headline numbers (official names, round(100·x, 2)). ``per_query``: one
    row per query (per video for YouTube Highlights / TVSum), index ``qid``, a column per brief
    key, values unrounded, so that each column's mean (NaN skipped) is its brief value before
    rounding. ``full``: the complete nested result."""

    brief: dict[str, float]
    per_query: pd.DataFrame
    full: dict


def pct(x: float) -> float:
    """Official reporting: round(100·x, 2); NaN stays NaN."""
    return round(100.0 * float(x), 2)


def rank_desc(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties in their given order (stable): the official evaluators'
    ``torch.argsort(descending=True)`` does not promise an order for ties, so we fix one."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")


def trapezoid_ap(ranked_labels: np.ndarray) -> float:
    """AP of binary labels in ranked order, as the YouTube Highlights / TVSum evaluators compute
    it: with P positives (P = 0 → 0), walk the ranking; recall = hits/P, precision = hits/j;
    add (recall − prev_recall) × (prev_precision + precision) / 2, starting from recall 0,
    precision 1."""
    y = np.asarray(ranked_labels, dtype=float)
    positives = y.sum()
    if positives == 0:
        return 0.0
    hits = np.cumsum(y)
    recall = hits / positives
    precision = hits / np.arange(1, len(y) + 1)
    prev_recall = np.concatenate([[0.0], recall[:-1]])
    prev_precision = np.concatenate([[1.0], precision[:-1]])
    return float(np.sum((recall - prev_recall) * (prev_precision + precision) / 2))


def per_query_frame(qids: list, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """A per-query table: index ``qid`` (object dtype, ints and strings kept as they are)."""
    index = pd.Index(list(qids), name="qid", dtype=object)
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in columns.items()}, index=index)


def qid_set_error(path: str | PathLike | None, missing: list, extra: list, line: int | None = None,
                  key: str = "qid") -> InputError:
    """The error for a submission whose qids (or ``key``s) differ from the ground truth's, listing them."""
    def listing(qids: list) -> str:
        shown = ", ".join(repr(q) for q in qids[:5])
        return shown + (f", ... ({len(qids)} in all)" if len(qids) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} ground-truth {key}(s) missing from the submission: {listing(missing)}")
    if extra:
        parts.append(f"{len(extra)} {key}(s) not in the ground truth: {listing(extra)}")
    return InputError(path if path is not None else "<submission>", line, key,
                      f"expected exactly the ground truth's {key}s; found " + "; ".join(parts))


def by_domain(submission: list[dict], ground_truth: list[Sample], video_value: Callable[[Sample, np.ndarray], float],
              prefix: str, domain_order: Sequence[str]) -> MetricResult:
    """Score every video with ``video_value(sample, scores)``, average per domain, then over the
    domains present (``domain_order`` first, others after); ``brief`` keys ``<prefix>-<domain>``
    and ``<prefix>``. Per-query columns: see :mod:`bench.metrics.youtube`."""
    by_vid = {s.vid: s for s in ground_truth}
    seen: dict[str, int] = {}
    for p in submission:
        seen[p["vid"]] = seen.get(p["vid"], 0) + 1
    dups = [v for v, n in seen.items() if n > 1]
    if dups:
        raise InputError("<submission>", None, "vid", f"expected one prediction per video, found duplicates: {dups[:5]}")
    missing = [v for v in by_vid if v not in seen]
    extra = [v for v in seen if v not in by_vid]
    if missing or extra:
        raise qid_set_error(None, missing, extra, key="vid")
    pred = {p["vid"]: np.asarray(p["pred_saliency_scores"], dtype=float) for p in submission}
    values = np.array([video_value(s, pred[s.vid]) for s in ground_truth])
    domains = [s.domain or "all" for s in ground_truth]
    present = [d for d in domain_order if d in domains] + sorted({d for d in domains if d not in domain_order})
    counts = {d: domains.count(d) for d in present}
    per_domain = {d: float(np.mean([v for v, dd in zip(values, domains) if dd == d])) for d in present}
    headline = float(np.mean(list(per_domain.values())))

    brief = {f"{prefix}-{d}": pct(per_domain[d]) for d in present}
    brief[prefix] = pct(headline)
    columns = {f"{prefix}-{d}": np.where(np.array(domains) == d, 100.0 * values, np.nan) for d in present}
    weight = np.array([len(values) / (len(present) * counts[d]) for d in domains])
    columns[prefix] = 100.0 * values * weight
    full = {"brief": brief, "per_domain": {d: {prefix: pct(per_domain[d]), "videos": counts[d]} for d in present},
            "domains": present}
    return MetricResult(brief=brief, per_query=per_query_frame([s.qid for s in ground_truth], columns), full=full)
