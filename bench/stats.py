"""Statistics for the suite's tables: intervals, paired tests, Holm, power and safe seed pooling.

Every trained run saves per-query metric values (``per_query.csv``: ``qid`` plus one column
per metric); the mean over queries of a column is the headline metric. This module turns
those vectors into what a table cell shows:

* ``bootstrap_ci``: a BCa bootstrap interval of the mean over queries (``scipy.stats.bootstrap``).
* ``paired_test``: the mean per-query difference of two rows, its bootstrap CI, and a two-sided
  paired permutation (sign-flip) p-value (``scipy.stats.permutation_test``).
* ``seed_summary``: mean ± std (ddof=1) of per-seed headline metrics.
* ``holm`` / ``significant``: Holm's step-down correction. scipy has no Holm (or any
  multiple-testing correction for p-values), so it is hand-written here: sort the m p-values,
  multiply the i-th smallest by (m − i + 1), take the running maximum, cap at 1.
* ``compare_to_reference``: all of the above for one metric of one table.
* ``minimum_detectable_effect`` / ``estimate_variance_components``: the power of such a table.
* ``aggregation_key`` / ``group_runs``: pool the seeds of one configuration, and refuse to pool
  runs whose identity differs in anything but the seed.

Conventions: NaN per-query values are dropped (pairwise in paired statistics); every random
procedure takes a ``seed`` (default 0) so results repeat exactly. See ``docs/statistics.md``.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as st

N_RESAMPLES = 10_000
ROUNDING = 1e-12  # per-query differences this small (relative or absolute) are rounding, set to 0
BATCH = 1_000  # resamples per vectorised batch: bounds memory at BATCH × n_queries floats

# The identity of a run apart from its seed. Runs pooled into one table row must agree on all
# of these; add a field here and both ``aggregation_key`` and ``group_runs`` use it. A field
# may be absent from a record (it then counts as None, so "absent" and "present" differ).
IDENTITY_FIELDS = (
    "method", "config", "train_config", "dataset", "benchmark_version",
    "backbone", "weights", "code_version", "protocol",
)
SEED_FIELD = "seed"  # dropped from the record and from ``train_config`` before comparing


class Interval(NamedTuple):
    """Mean of ``n`` values and a confidence interval [low, high] around it."""

    mean: float
    low: float
    high: float
    n: int


class PairedResult(NamedTuple):
    """Mean per-query difference a − b, its bootstrap CI, the two-sided permutation p-value, #queries."""

    diff: float
    low: float
    high: float
    p_value: float
    n: int


class VarianceComponents(NamedTuple):
    """Inputs of ``minimum_detectable_effect`` estimated from real runs."""

    sd_diff: float    # sd (ddof=1) over queries of single-seed per-query differences a − b
    seed_sd: float    # pooled seed-to-seed sd (ddof=1) of one row's headline metric; NaN if unknown
    n_queries: int
    n_seeds: tuple[int, int]


# --------------------------------------------------------------------------- intervals and tests

def _clean(values) -> np.ndarray:
    """1-D float array with NaNs dropped."""
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """Bootstrap interval of the mean over queries.

    NaN values are dropped first (``Interval.n`` counts the values used); no values left →
    ``ValueError``. A constant vector (including a single value) gives the degenerate interval
    ``[v, v]``: every resample has the same mean, and scipy would warn and return NaN.
    Method: BCa (bias-corrected and accelerated, scipy's default — second-order accurate and
    fine for the skewed, discrete 0/100 per-query metrics at our query counts); if BCa
    cannot be computed (NaN bounds, e.g. a nearly constant vector), the percentile interval.
    """
    x = _clean(values)
    if x.size == 0:
        raise ValueError("bootstrap_ci: no non-NaN values")
    mean = float(x.mean())
    if np.all(x == x[0]):
        return Interval(mean, mean, mean, int(x.size))
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", st.DegenerateDataWarning)
            res = st.bootstrap((x,), np.mean, n_resamples=n_resamples, batch=BATCH, vectorized=True,
                               confidence_level=confidence, method=method, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            break
    return Interval(mean, low, high, int(x.size))


def _paired_arrays(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Align two per-query vectors. Two Series are matched on their index (qid) and must hold
    the same qids; otherwise both are taken by position and must have equal length."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        for name, s in (("a", a), ("b", b)):
            if s.index.has_duplicates:
                raise ValueError(f"paired_test: {name} has {int(s.index.duplicated().sum())} duplicated qids")
        only_a, only_b = a.index.difference(b.index), b.index.difference(a.index)
        if len(only_a) or len(only_b):
            raise ValueError(f"paired_test: the two rows were scored on different queries: {len(only_a)} qids "
                             f"only in a, {len(only_b)} only in b (e.g. {list(only_a[:3]) + list(only_b[:3])})")
        return a.to_numpy(float), b.reindex(a.index).to_numpy(float)
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired_test: {x.size} values in a but {y.size} in b")
    return x, y


def paired_test(a, b, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0) -> PairedResult:
    """Compare two rows scored on the same queries: mean of the per-query differences a − b.

    ``a``/``b``: pandas Series indexed by qid (aligned on qid; the qid sets must be equal,
    else ``ValueError`` saying how many differ) or equal-length arrays (paired by position).
    Queries where either value is NaN are dropped. The p-value is a two-sided paired
    permutation test: under H0 (no difference) each per-query difference is equally likely
    to have either sign, so the null distribution of the mean is built from random sign flips
    (``scipy.stats.permutation_test``, ``permutation_type='samples'``; exact when
    2^n ≤ ``n_resamples``). The CI is ``bootstrap_ci`` of the differences. Per-query differences
    within floating-point rounding (``ROUNDING``, relative or absolute) count as 0, so that e.g. a
    seed average equal to the reference is not "different" by 1e-15; if every difference is 0
    (identical rows) the result is diff 0, CI [0, 0], p = 1 exactly.
    """
    x, y = _paired_arrays(a, b)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    d = np.where(np.isclose(x, y, rtol=ROUNDING, atol=ROUNDING), 0.0, x - y)  # rounding is no difference
    if d.size == 0:
        raise ValueError("paired_test: no query has a value in both rows")
    if np.all(d == 0):
        return PairedResult(0.0, 0.0, 0.0, 1.0, int(d.size))
    ci = bootstrap_ci(d, confidence, n_resamples, seed)
    res = st.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True, n_resamples=n_resamples,
                              batch=BATCH, alternative="two-sided", rng=np.random.default_rng(seed))
    return PairedResult(ci.mean, ci.low, ci.high, float(min(1.0, res.pvalue)), int(d.size))


# --------------------------------------------------------------------------- seeds

def seed_summary(per_seed_values) -> tuple[float, float, int]:
    """(mean, std with ddof=1, n) of per-seed headline metrics (NaNs dropped; std NaN if n < 2).

    ``per_seed_values``: one headline value per seed, or a per-query DataFrame with one column
    per seed (its column means are the per-seed headline metrics).
    """
    if isinstance(per_seed_values, pd.DataFrame):
        per_seed_values = per_seed_values.mean(axis=0, skipna=True)
    x = _clean(per_seed_values)
    if x.size == 0:
        raise ValueError("seed_summary: no non-NaN values")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else float("nan"), int(x.size)


def per_query_matrix(per_seed: Mapping | Sequence, metric: str) -> pd.DataFrame:
    """One row's per-query values of ``metric`` as a DataFrame (index qid, one column per seed).

    ``per_seed``: ``{seed: per_query frame}`` or a list of them (columns numbered 0, 1, …);
    each frame has a ``qid`` column (or qid index) and a ``metric`` column, as in
    ``per_query.csv``. All seeds must be scored on the same qids.
    """
    items = per_seed.items() if isinstance(per_seed, Mapping) else enumerate(per_seed)
    columns = {}
    for seed, frame in items:
        if "qid" in frame.columns:
            frame = frame.set_index("qid")
        if metric not in frame.columns:
            raise ValueError(f"per_query_matrix: seed {seed} has no column {metric!r}")
        if frame.index.has_duplicates:
            raise ValueError(f"per_query_matrix: seed {seed} has duplicated qids")
        columns[seed] = frame[metric].astype(float)
    if not columns:
        raise ValueError("per_query_matrix: no seeds given")
    first_seed, first = next(iter(columns.items()))
    for seed, col in columns.items():
        n_diff = len(first.index.symmetric_difference(col.index))
        if n_diff:
            raise ValueError(f"per_query_matrix: seeds {first_seed} and {seed} differ in {n_diff} qids")
    return pd.DataFrame({seed: col.reindex(first.index) for seed, col in columns.items()})


def _as_matrix(values, name: str) -> pd.DataFrame:
    if isinstance(values, pd.Series):
        return values.to_frame()
    if isinstance(values, pd.DataFrame):
        if values.shape[1] == 0:
            raise ValueError(f"row {name!r}: no seed columns")
        return values
    raise TypeError(f"row {name!r}: expected a DataFrame (qid × seed) or Series, got {type(values).__name__}")


# --------------------------------------------------------------------------- multiple comparisons

def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order (hand-written: scipy has no Holm).

    With the m non-NaN p-values sorted ascending, p_(1) ≤ … ≤ p_(m):
    adj_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)). NaN entries stay NaN and do not count in m.
    Rejecting where adj ≤ α controls the family-wise error rate at α.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if np.any((p[idx] < 0) | (p[idx] > 1)):
        raise ValueError("holm: p-values must lie in [0, 1]")
    m = idx.size
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def significant(adjusted, alpha: float = 0.05) -> np.ndarray:
    """Boolean array: adjusted p ≤ ``alpha`` (NaN → False)."""
    adj = np.asarray(adjusted, dtype=float)
    return np.where(np.isnan(adj), False, adj <= alpha)


# --------------------------------------------------------------------------- tables

def compare_to_reference(table: Mapping[str, pd.DataFrame | pd.Series], reference: str, metric: str,
                         alpha: float = 0.05, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                         seed: int = 0) -> pd.DataFrame:
    """Per-row statistics of one metric of one table, each row against the reference row.

    ``table``: ``{row name: per-query values}``, each a DataFrame indexed by qid with one
    column per seed (see ``per_query_matrix``) or a Series (one seed, or already averaged).
    Every row must be scored on the reference's qids. ``metric`` only labels the output.

    Returns a DataFrame indexed by row name (input order) with columns:
    ``metric``; ``n_seeds``; ``n_queries`` (non-NaN queries of the seed-averaged values);
    ``mean`` (mean over queries of the seed-averaged values = mean of the per-seed headline
    metrics when nothing is NaN); ``seed_std`` (ddof=1 over per-seed headline metrics, NaN for
    one seed); ``ci_low``/``ci_high`` (``bootstrap_ci`` over queries of the seed-averaged values);
    ``spread`` (what the table cell shows: ``"seed std"`` if n_seeds > 1 else ``"bootstrap"``);
    ``diff``/``diff_low``/``diff_high``/``p_value`` (``paired_test`` of the seed-averaged per-query
    values, row − reference; the diff CI is per comparison, not multiplicity-adjusted);
    ``p_holm`` (Holm over the non-reference rows of this call); ``significant`` (p_holm ≤ alpha).
    The reference row has diff 0 and NaN p-values, never significant.
    """
    if reference not in table:
        raise ValueError(f"compare_to_reference: reference row {reference!r} not in table {list(table)}")
    matrices = {name: _as_matrix(values, name) for name, values in table.items()}
    averaged = {name: m.mean(axis=1, skipna=False) for name, m in matrices.items()}  # NaN in any seed → NaN
    ref = averaged[reference]
    rows = []
    for name, m in matrices.items():
        ci = bootstrap_ci(averaged[name], confidence, n_resamples, seed)
        _, seed_std, _ = seed_summary(m)
        row = dict(row=name, metric=metric, n_seeds=m.shape[1], n_queries=ci.n, mean=ci.mean, seed_std=seed_std,
                   ci_low=ci.low, ci_high=ci.high, spread="seed std" if m.shape[1] > 1 else "bootstrap")
        if name == reference:
            row.update(diff=0.0, diff_low=0.0, diff_high=0.0, p_value=np.nan)
        else:
            try:
                res = paired_test(averaged[name], ref, confidence, n_resamples, seed)
            except ValueError as e:
                raise ValueError(f"row {name!r} vs reference {reference!r}: {e}") from None
            row.update(diff=res.diff, diff_low=res.low, diff_high=res.high, p_value=res.p_value)
        rows.append(row)
    out = pd.DataFrame(rows).set_index("row")
    out["p_holm"] = holm(out["p_value"].to_numpy())
    out["significant"] = significant(out["p_holm"].to_numpy(), alpha)
    return out


def cell_text(row: Mapping, digits: int = 1, mark: str = "*") -> str:
    """A table cell from one row of ``compare_to_reference``: ``"41.3 ± 0.6"`` (several seeds) or
    ``"41.3 [39.8, 42.9]"`` (one seed: bootstrap interval), with ``mark`` appended if significant."""
    f = f"{{:.{digits}f}}"
    if row["spread"] == "seed std":
        text = f"{f.format(row['mean'])} ± {f.format(row['seed_std'])}"
    else:
        text = f"{f.format(row['mean'])} [{f.format(row['ci_low'])}, {f.format(row['ci_high'])}]"
    return text + (mark if row["significant"] else "")


# --------------------------------------------------------------------------- power

def minimum_detectable_effect(sd_diff: float, n_queries: int, n_seeds: int = 1, seed_sd: float = 0.0,
                              alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired test at level ``alpha`` detects with
    probability ``power`` (normal approximation):

        MDE = (z_{1−α/2} + z_{power}) · sqrt(sd_diff² / n_queries + 2 · seed_sd² / n_seeds)

    ``sd_diff``: sd over queries of the per-query differences of two single-seed runs;
    ``seed_sd``: seed-to-seed sd of one row's headline metric; ``n_seeds``: seeds per row.
    Assumptions: the mean difference is approximately normal (many queries); query sampling
    and seed sampling are independent; both rows have the same seed variance and ``n_seeds``
    seeds each — the seed variance of each row's headline metric enters the difference once per
    row, hence the 2·. The query term does not shrink with seeds (every seed is scored on the
    same queries). ``seed_sd = 0`` treats the trained models as fixed — the question the
    per-query permutation test answers. Holm makes the effective α smaller (α/m at worst).
    """
    if n_queries < 1 or n_seeds < 1:
        raise ValueError("minimum_detectable_effect: n_queries and n_seeds must be ≥ 1")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("minimum_detectable_effect: alpha and power must lie in (0, 1)")
    z = st.norm.ppf(1 - alpha / 2) + st.norm.ppf(power)
    return float(z * np.sqrt(sd_diff ** 2 / n_queries + 2 * seed_sd ** 2 / n_seeds))


def estimate_variance_components(per_query_by_seed_a, per_query_by_seed_b) -> VarianceComponents:
    """Estimate ``sd_diff`` and ``seed_sd`` of ``minimum_detectable_effect`` from two rows' runs.

    Inputs: DataFrames indexed by qid with one column per seed (a Series = one seed), scored on
    the same qids. ``sd_diff``: root mean over all (seed of a, seed of b) pairs of the variance
    (ddof=1) over queries of a − b (queries NaN in either dropped). ``seed_sd``: pooled sd
    (ddof=1, weighted by degrees of freedom) of the per-seed headline metrics of both rows;
    NaN when neither row has two seeds. Few seeds give a rough ``seed_sd`` (3 seeds: 2 dof).
    """
    a, b = _as_matrix(per_query_by_seed_a, "a"), _as_matrix(per_query_by_seed_b, "b")
    variances = []
    for ca in a.columns:
        for cb in b.columns:
            x, y = _paired_arrays(a[ca], b[cb])
            keep = ~(np.isnan(x) | np.isnan(y))
            if keep.sum() < 2:
                raise ValueError("estimate_variance_components: fewer than two queries with values in both rows")
            variances.append(np.var(x[keep] - y[keep], ddof=1))
    dof, ss = 0, 0.0
    for m in (a, b):
        heads = _clean(m.mean(axis=0, skipna=True))
        if heads.size > 1:
            dof += heads.size - 1
            ss += np.var(heads, ddof=1) * (heads.size - 1)
    seed_sd = float(np.sqrt(ss / dof)) if dof else float("nan")
    n_queries = int(((~a.isna().any(axis=1)) & (~b.reindex(a.index).isna().any(axis=1))).sum())
    return VarianceComponents(float(np.sqrt(np.mean(variances))), seed_sd, n_queries, (a.shape[1], b.shape[1]))


# --------------------------------------------------------------------------- pooling runs

def _identity(record: dict) -> dict:
    """The identity fields of a run record (absent → None), seed removed from ``train_config``."""
    ident = {f: record.get(f) for f in IDENTITY_FIELDS}
    if isinstance(ident.get("train_config"), Mapping):
        ident["train_config"] = {k: v for k, v in ident["train_config"].items() if k != SEED_FIELD}
    return ident


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def aggregation_key(record: dict) -> str:
    """Canonical JSON of the record's ``IDENTITY_FIELDS`` (key order ignored, seed excluded):
    two runs may be pooled as seeds of one configuration iff their keys are equal."""
    return _canonical(_identity(record))


def _differences(records: list[dict]) -> list[str]:
    """Identity fields (and, for dicts, their keys) on which ``records`` disagree."""
    idents = [_identity(r) for r in records]
    fields = []
    for f in IDENTITY_FIELDS:
        values = [i[f] for i in idents]
        if len({_canonical(v) for v in values}) < 2:
            continue
        if all(isinstance(v, Mapping) for v in values):
            keys = sorted({k for v in values for k in v if len({_canonical(w.get(k)) for w in values}) > 1})
            fields.append(f"{f} ({', '.join(map(str, keys))})")
        else:
            fields.append(f)
    return fields


def group_runs(records: list[dict], row: str | Callable[[dict], str] = "method") -> dict[str, list[dict]]:
    """Pool run records into table rows: ``{row name: [records, sorted by seed]}``.

    ``row``: the record field naming the row (default ``method``) or a function of the record.
    Pass only the runs you mean to pool (e.g. ``status == "ok"``). Raises ``ValueError`` if runs
    of one row differ in any of ``IDENTITY_FIELDS`` (naming the fields, dict keys and run ids),
    or if two runs of one row share a seed (they would count as independent seeds).
    """
    row_of = row if callable(row) else (lambda r: r[row])
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(row_of(record), []).append(record)
    for name, runs in groups.items():
        ids = [r.get("run_id", f"#{i}") for i, r in enumerate(runs)]
        if len({aggregation_key(r) for r in runs}) > 1:
            raise ValueError(f"row {name!r}: runs differ in {'; '.join(_differences(runs))} — not seeds of one "
                             f"configuration, refusing to pool runs {ids}")
        seeds = [r.get(SEED_FIELD) for r in runs]
        dup = sorted({str(s) for s in seeds if seeds.count(s) > 1})
        if dup:
            raise ValueError(f"row {name!r}: seed(s) {', '.join(dup)} appear more than once among runs {ids}")
        runs.sort(key=lambda r: (r.get(SEED_FIELD) is None, r.get(SEED_FIELD)))
    return groups
