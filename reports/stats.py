"""Statistics for the suite's tables: intervals, the significance policy, Holm, power and safe
seed pooling.

Every trained run saves per-query metric values (``per_query.csv``: ``qid`` plus one column
per metric); the mean over queries of a column is the headline metric. This module turns
those vectors into what a table cell shows and into the significance marks:

* ``bootstrap_ci``: a BCa bootstrap interval of the mean over queries (``scipy.stats.bootstrap``).
* ``method_test``: **the significance policy for methods**: the difference of two rows, with
  training-seed variance and query variance both counted (Welch–Satterthwaite t on variance
  components; seed variance measured from the rows' seeds, or a calibrated one for a one-seed
  row). Marks ``*``. See ``docs/statistics.md``.
* ``paired_test``: mean per-query difference of two *trained models* with a paired permutation
  p-value (``scipy.stats.permutation_test``). It treats the models as fixed ("do these two runs
  differ on these queries"). Used for a mark only where a row has one seed and no calibrated
  seed variance exists, and then marked ``†``, not ``*``.
* ``seed_summary``: mean ± std (ddof=1) of per-seed headline metrics.
* ``holm`` / ``significant``: Holm's step-down correction. scipy has no Holm (or any
  multiple-testing correction for p-values), so it is hand-written here: sort the m p-values,
  multiply the i-th smallest by (m − i + 1), take the running maximum, cap at 1.
* ``compare_to_reference``: all of the above for one metric of one table.
* ``minimum_detectable_effect`` / ``estimate_variance_components``: the power of the policy.
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

from r2bench.core.identity import POOL_FIELDS, SEED_FIELD, canonical, pool_identity

N_RESAMPLES = 10_000
ROUNDING = 1e-12  # per-query differences this small (relative or absolute) are rounding, set to 0
BATCH = 1_000  # resamples per vectorised batch: bounds memory at BATCH × n_queries floats

# The identity of a run apart from its seed (r2bench.core.identity, the one definition): runs
# pooled into one table row must agree on all of it. A field may be absent from a record (it
# then counts as None, so "absent" and "present" differ).
IDENTITY_FIELDS = POOL_FIELDS
NOT_COUNTED = "not counted"   # ``seed_variance`` of a one-seed comparison made per query (models fixed)
QUERY_MARK = "†"               # its mark: these trained models differ on these queries


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


class SeedVariance(NamedTuple):
    """A calibrated training-seed variance of one metric on one benchmark version: what a one-seed
    row cannot measure itself. Measured by ``docs/measurements/benchmark/calibrate.py`` and stored
    with the benchmark (``datasets.synthetic.presets.seed_calibration``)."""

    seed_sd: float    # sd (ddof=1) over training seeds of one row's headline metric (pooled over rows)
    df: float         # its degrees of freedom (sum of seeds − 1 over the rows pooled)
    noise_sd: float   # sd of the seed × query residual of per-query values (NaN if unknown)
    source: str = ""  # what it was measured on, for notes


class MethodTest(NamedTuple):
    """Row a − row b under the significance policy (``method_test``).

    ``diff``: difference of the seed-averaged headline metrics; ``low``/``high``: its confidence
    interval (t, ``df`` degrees of freedom); ``p_value``: two-sided; ``se``: standard error;
    ``seed_variance``: ``"measured"`` (both rows have ≥ 2 seeds), ``"calibrated"`` (a one-seed row
    used a ``SeedVariance``) or ``"unknown"`` (a one-seed row without one: no test, NaN p and CI).
    """

    diff: float
    low: float
    high: float
    p_value: float
    se: float
    df: float
    n_queries: int
    seed_variance: str


class VarianceComponents(NamedTuple):
    """Variance components of two rows' runs (inputs of ``minimum_detectable_effect``).

    ``seed_sd``: pooled sd (ddof=1) over seeds of the per-seed headline metric (``seed_df``
    degrees of freedom; NaN if neither row has two seeds); ``noise_sd``: sd of the seed × query
    residual of per-query values (what averaging seeds removes; NaN without two seeds);
    ``interaction_sd``: sd over queries of the row × query interaction (how the two methods'
    per-query values differ beyond seed noise; the query term of the policy's variance);
    ``sd_diff``: sd over queries of the per-query differences of two single-seed runs."""

    seed_sd: float
    seed_df: int
    noise_sd: float
    interaction_sd: float
    sd_diff: float
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


def _check_same_qids(a: pd.Index, b: pd.Index, who: str) -> None:
    """Both rows must be scored on the same, unique qids (``ValueError`` saying how they differ)."""
    for name, index in (("a", a), ("b", b)):
        if index.has_duplicates:
            raise ValueError(f"{who}: {name} has {int(index.duplicated().sum())} duplicated qids")
    only_a, only_b = a.difference(b), b.difference(a)
    if len(only_a) or len(only_b):
        raise ValueError(f"{who}: the two rows were scored on different queries: {len(only_a)} qids "
                         f"only in a, {len(only_b)} only in b (e.g. {list(only_a[:3]) + list(only_b[:3])})")


def _paired_arrays(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Align two per-query vectors. Two Series are matched on their index (qid) and must hold
    the same qids; otherwise both are taken by position and must have equal length."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        _check_same_qids(a.index, b.index, "paired_test")
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


# --------------------------------------------------------------------------- the significance policy

def _aligned(a, b) -> tuple[np.ndarray, np.ndarray, int]:
    """Two rows' qid × seed matrices on their common, complete queries: (A, B, n dropped).

    The qid sets must be equal (``ValueError`` otherwise); a query with NaN in any seed of either
    row is dropped."""
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    _check_same_qids(a.index, b.index, "method_test")
    x, y = a.to_numpy(float), b.reindex(a.index).to_numpy(float)
    keep = ~(np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1))
    return x[keep], y[keep], int((~keep).sum())


def residual_variance(matrix) -> float:
    """Seed × query residual variance of a qid × seed matrix (two-way additive fit, ddof
    (Q − 1)(S − 1)): the per-query noise that averaging over seeds divides by S. NaN for one seed."""
    y = np.asarray(matrix, dtype=float)
    q, s = y.shape
    if s < 2 or q < 2:
        return float("nan")
    r = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    return float((r ** 2).sum() / ((q - 1) * (s - 1)))


def _satterthwaite(parts: list[tuple[float, float]]) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of independent variance estimates
    ``[(variance, df), ...]`` (zero-variance parts carry no uncertainty and are skipped)."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / d for v, d in parts if v > 0 and np.isfinite(d))
    return float(total * total / denom) if denom > 0 else float("inf")


def method_test(a, b, calibration_a: SeedVariance | None = None, calibration_b: SeedVariance | None = None,
                confidence: float = 0.95) -> MethodTest:
    """Is row ``a`` (one method) different from row ``b`` (another)? The test behind every mark.

    ``a``/``b``: qid × seed DataFrames (``per_query_matrix``; a Series is one seed) scored on the
    same qids. Model of a per-query value: y[r, s, q] = mean_r + u[r, s] (training seed) + v[q]
    (query difficulty, shared by the rows, cancels in the pairing) + w[r, q] (method × query) +
    e[r, s, q] (seed × query noise). The statistic is the difference of the seed-averaged headline
    metrics; its variance has three estimated parts:

    * per row with S ≥ 2 seeds: var(per-seed headline metrics) / S (df S − 1) — retraining
      variance, measured; a row with one seed uses ``calibration_*`` (``SeedVariance``: a seed
      variance measured for this benchmark version and metric; df from that measurement). With
      one seed and no calibration the training variance is unknown: no test (``seed_variance
      "unknown"``, NaN p-value and interval) — a fixed-model per-query difference is never
      presented as a method difference. Two one-seed rows share one calibration: one part.
    * the query part, var over queries of the per-query differences of the seed averages, minus
      the seed × query noise already inside the seed parts (``residual_variance`` / S per row;
      truncated at 0), divided by the number of queries (df Q − 1): the method × query
      interaction, so the result generalises to other queries of the same kind.

    t = diff / se with Welch–Satterthwaite degrees of freedom; two-sided p from Student's t
    (``scipy.stats.t``); CI diff ± t_{df} · se. Why not a two-level (seeds within rows × queries)
    bootstrap: with 2–5 seeds per row a bootstrap over seeds underestimates the seed variance by
    (S − 1)/S and uses normal-like quantiles where t with few df is needed; in simulation
    (``docs/measurements/benchmark/policy_simulation.py``) it rejects a true null far more often
    than 5 % at 3 seeds per row. The t on variance components is calibrated (simulation and
    ``tests/test_stats.py``); it assumes the per-seed headline metric is near normal (a mean over
    hundreds of queries) and that seeds of different rows are independent.
    Identical rows give diff 0, p = 1. Differences within floating-point rounding count as 0.
    """
    x, y, _ = _aligned(a, b)
    n_q = x.shape[0]
    if n_q < 2:
        raise ValueError("method_test: fewer than two queries with values in both rows")
    heads = [x.mean(axis=0), y.mean(axis=0)]
    diff = float(heads[0].mean() - heads[1].mean())
    if abs(diff) <= ROUNDING * max(1.0, abs(heads[0].mean())):
        diff = 0.0
    parts, noise, shared, kinds = [], 0.0, None, set()
    for m, h, cal in ((x, heads[0], calibration_a), (y, heads[1], calibration_b)):
        n_seeds = m.shape[1]
        if n_seeds >= 2:
            parts.append((float(np.var(h, ddof=1)) / n_seeds, n_seeds - 1))
            noise += residual_variance(m) / n_seeds
            kinds.add("measured")
        elif cal is not None and np.isfinite(cal.seed_sd):
            if shared is not None and cal == shared[0]:      # one estimate used twice: one part, its df
                parts[shared[1]] = (parts[shared[1]][0] + cal.seed_sd ** 2, cal.df)
            else:
                shared = (cal, len(parts))
                parts.append((cal.seed_sd ** 2, cal.df))
            noise += cal.noise_sd ** 2 if np.isfinite(cal.noise_sd) else 0.0
            kinds.add("calibrated")
        else:
            return MethodTest(diff, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), n_q,
                              "unknown")
    d = x.mean(axis=1) - y.mean(axis=1)
    interaction = max(0.0, float(np.var(d, ddof=1)) - noise)
    parts.append((interaction / n_q, n_q - 1))
    var = sum(v for v, _ in parts)
    kind = "calibrated" if "calibrated" in kinds else "measured"
    if var <= 0:
        p = 1.0 if diff == 0 else 0.0
        return MethodTest(diff, diff, diff, p, 0.0, float("inf"), n_q, kind)
    se, df = float(np.sqrt(var)), _satterthwaite(parts)
    p = float(2 * st.t.sf(abs(diff) / se, df))
    half = float(st.t.ppf(0.5 + confidence / 2, df)) * se
    return MethodTest(diff, diff - half, diff + half, min(1.0, p), se, df, n_q, kind)


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
                         seed: int = 0, calibration: SeedVariance | None = None) -> pd.DataFrame:
    """Per-row statistics of one metric of one table, each row against the reference row.

    ``table``: ``{row name: per-query values}``, each a DataFrame indexed by qid with one
    column per seed (see ``per_query_matrix``) or a Series (one seed). Every row must be scored
    on the reference's qids. ``metric`` only labels the output. ``calibration``: the calibrated
    seed variance of this metric on this benchmark version, used for one-seed rows. Without one,
    a comparison that involves a one-seed row falls back to ``paired_test`` over queries of the
    seed-averaged values (``seed_variance "not counted"``: these trained models differ on these
    queries; retraining variance is not in it, so it overstates method differences — see
    docs/statistics.md, negative control; the cell gets ``QUERY_MARK`` instead of ``*``).

    Returns a DataFrame indexed by row name (input order) with columns:
    ``metric``; ``n_seeds``; ``n_queries`` (non-NaN queries of the seed-averaged values);
    ``mean`` (mean over queries of the seed-averaged values = mean of the per-seed headline
    metrics when nothing is NaN); ``seed_std`` (ddof=1 over per-seed headline metrics, NaN for
    one seed); ``ci_low``/``ci_high`` (``bootstrap_ci`` over queries of the seed-averaged values);
    ``spread`` (what the table cell shows: ``"seed std"`` if n_seeds > 1 else ``"bootstrap"``);
    ``diff``/``diff_low``/``diff_high``/``p_value``/``df``/``seed_variance`` (``method_test``,
    row − reference, or ``paired_test`` as above; the CI is per comparison, not
    multiplicity-adjusted); ``p_holm`` (Holm over the tested non-reference rows of this call);
    ``significant`` (p_holm ≤ alpha). The reference row has diff 0 and NaN p-values, never
    significant.
    """
    if reference not in table:
        raise ValueError(f"compare_to_reference: reference row {reference!r} not in table {list(table)}")
    matrices = {name: _as_matrix(values, name) for name, values in table.items()}
    ref = matrices[reference]
    rows = []
    for name, m in matrices.items():
        averaged = m.mean(axis=1, skipna=False)   # NaN in any seed → NaN
        ci = bootstrap_ci(averaged, confidence, n_resamples, seed)
        _, seed_std, _ = seed_summary(m)
        row = dict(row=name, metric=metric, n_seeds=m.shape[1], n_queries=ci.n, mean=ci.mean, seed_std=seed_std,
                   ci_low=ci.low, ci_high=ci.high, spread="seed std" if m.shape[1] > 1 else "bootstrap")
        if name == reference:
            row.update(diff=0.0, diff_low=0.0, diff_high=0.0, p_value=np.nan, df=np.nan, seed_variance="")
        else:
            try:
                res = method_test(m, ref, calibration, calibration, confidence)
                if res.seed_variance == "unknown":   # one seed, no calibration: these models, these queries
                    q = paired_test(averaged, ref.mean(axis=1, skipna=False), confidence, n_resamples, seed)
                    res = res._replace(diff=q.diff, low=q.low, high=q.high, p_value=q.p_value,
                                       seed_variance=NOT_COUNTED)
            except ValueError as e:
                raise ValueError(f"row {name!r} vs reference {reference!r}: {e}") from None
            row.update(diff=res.diff, diff_low=res.low, diff_high=res.high, p_value=res.p_value, df=res.df,
                       seed_variance=res.seed_variance)
        rows.append(row)
    out = pd.DataFrame(rows).set_index("row")
    out["p_holm"] = holm(out["p_value"].to_numpy(dtype=float))
    out["significant"] = significant(out["p_holm"].to_numpy(), alpha)
    return out


def cell_text(row: Mapping, digits: int = 1, mark: str = "*", query_mark: str = QUERY_MARK) -> str:
    """A table cell from one row of ``compare_to_reference``: ``"41.3 ± 0.6"`` (several seeds) or
    ``"41.3 [39.8, 42.9]"`` (one seed: bootstrap interval), with ``mark`` appended if significant
    under the seed-aware policy, or ``query_mark`` if significant only as a fixed-model per-query
    difference (``seed_variance == "not counted"``)."""
    f = f"{{:.{digits}f}}"
    if row["spread"] == "seed std":
        text = f"{f.format(row['mean'])} ± {f.format(row['seed_std'])}"
    else:
        text = f"{f.format(row['mean'])} [{f.format(row['ci_low'])}, {f.format(row['ci_high'])}]"
    if not row["significant"]:
        return text
    return text + (query_mark if row.get("seed_variance") == NOT_COUNTED else mark)


# --------------------------------------------------------------------------- power

def _power(effect: float, se: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test at level ``alpha`` for a true difference ``effect``
    (noncentral t; normal when df is infinite)."""
    if not np.isfinite(df):
        z = st.norm.ppf(1 - alpha / 2)
        return float(st.norm.sf(z - effect / se) + st.norm.cdf(-z - effect / se))
    crit = st.t.ppf(1 - alpha / 2, df)
    nc = effect / se
    value = st.nct.sf(crit, df, nc) + st.nct.cdf(-crit, df, nc)
    return float(value) if np.isfinite(value) else 1.0   # scipy's nct gives NaN far in the tail


def minimum_detectable_effect(seed_sd: float, n_seeds: int = 1, interaction_sd: float = 0.0, n_queries: int = 1,
                              alpha: float = 0.05, power: float = 0.8, calibrated_df: float | None = None) -> float:
    """Smallest true difference between two rows that ``method_test`` finds at level ``alpha``
    with probability ``power``, both rows with ``n_seeds`` seeds and seed sd ``seed_sd``.

    Variance of the difference: 2 · seed_sd² / n_seeds + interaction_sd² / n_queries, with
    Welch–Satterthwaite df (n_seeds − 1 per row, n_queries − 1 for the query part). With one seed
    per row the seed variance comes from a calibration (``calibrated_df`` degrees of freedom,
    one estimate for both rows); without one there is no test (``ValueError``). The MDE solves
    power(effect) = ``power`` on the noncentral t (``scipy.stats.nct``, ``scipy.optimize.brentq``).
    ``seed_sd = 0`` with infinite df gives the fixed-model (per-query) MDE, ≈ 2.80 · se for
    α = 0.05, power 0.8. Holm makes the effective α smaller (α/m at worst for the smallest p).
    """
    from scipy.optimize import brentq
    if n_queries < 1 or n_seeds < 1:
        raise ValueError("minimum_detectable_effect: n_queries and n_seeds must be ≥ 1")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("minimum_detectable_effect: alpha and power must lie in (0, 1)")
    query = (interaction_sd ** 2 / n_queries, max(n_queries - 1, 1))
    if n_seeds >= 2:
        parts = [(seed_sd ** 2 / n_seeds, n_seeds - 1)] * 2 + [query]
    elif calibrated_df is not None:
        parts = [(2 * seed_sd ** 2, calibrated_df), query]
    else:
        raise ValueError("minimum_detectable_effect: one seed per row needs a calibrated seed variance "
                         "(calibrated_df): without one the policy does not test")
    var = sum(v for v, _ in parts)
    if var <= 0:
        return 0.0
    se, df = float(np.sqrt(var)), _satterthwaite(parts)
    high = se
    while _power(high, se, df, alpha) < power:
        high *= 2
    return float(brentq(lambda e: _power(e, se, df, alpha) - power, 0.0, high, xtol=1e-10 * se))


def estimate_variance_components(per_query_by_seed_a, per_query_by_seed_b) -> VarianceComponents:
    """Estimate the policy's variance components from two rows' runs (qid × seed DataFrames, a
    Series = one seed, scored on the same qids; queries NaN in any seed of either row dropped).

    ``seed_sd``: pooled sd (ddof=1, weighted by degrees of freedom) of the per-seed headline
    metrics of both rows (NaN when neither row has two seeds; 3 seeds per row: 4 dof, rough).
    ``noise_sd``: pooled ``residual_variance`` of both rows, square-rooted. ``interaction_sd``:
    var over queries of the seed-averaged differences minus the seed noise in them (≥ 0).
    ``sd_diff``: root mean over all (seed of a, seed of b) pairs of the variance over queries of
    a − b (the spread the fixed-model per-query test sees).
    """
    x, y, _ = _aligned(per_query_by_seed_a, per_query_by_seed_b)
    if x.shape[0] < 2:
        raise ValueError("estimate_variance_components: fewer than two queries with values in both rows")
    sd_diff = float(np.sqrt(np.mean([np.var(x[:, i] - y[:, j], ddof=1)
                                     for i in range(x.shape[1]) for j in range(y.shape[1])])))
    dof, ss, noise_dof, noise_ss = 0, 0.0, 0, 0.0
    for m in (x, y):
        s = m.shape[1]
        if s > 1:
            dof += s - 1
            ss += np.var(m.mean(axis=0), ddof=1) * (s - 1)
            noise_dof += s - 1
            noise_ss += residual_variance(m) * (s - 1)
    seed_sd = float(np.sqrt(ss / dof)) if dof else float("nan")
    noise = noise_ss / noise_dof if noise_dof else float("nan")
    d = x.mean(axis=1) - y.mean(axis=1)
    seed_noise = (noise / x.shape[1] + noise / y.shape[1]) if noise_dof else 0.0
    interaction = max(0.0, float(np.var(d, ddof=1)) - seed_noise)
    return VarianceComponents(seed_sd, dof, float(np.sqrt(noise)), float(np.sqrt(interaction)), sd_diff,
                              int(x.shape[0]), (x.shape[1], y.shape[1]))


# --------------------------------------------------------------------------- pooling runs

_identity = pool_identity
_canonical = canonical


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
