"""reports.stats: intervals, the significance policy (``method_test``), the fixed-model paired test,
Holm, power and safe seed pooling — on hand cases and synthetic data with a known answer (including
a small simulation of the policy's false-positive rate). Few resamples keep the file fast."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from r2bench.reports.stats import (SeedVariance, aggregation_key, bootstrap_ci, cell_text, compare_to_reference,
                         estimate_variance_components, group_runs, holm, method_test, minimum_detectable_effect,
                         paired_test, per_query_matrix, residual_variance, seed_summary, significant)

R = 2_000  # resamples in tests


def noisy(n=50, seed=0, scale=5.0):
    return pd.Series(np.random.default_rng(seed).normal(40, scale, n), index=[f"q{i}" for i in range(n)])


# ------------------------------------------------------------------ paired test

def test_identical_vectors_p_is_one_and_not_significant():
    a = noisy()
    res = paired_test(a, a.copy(), n_resamples=R)
    assert res.p_value == 1.0 and res.diff == 0.0 and (res.low, res.high) == (0.0, 0.0)
    assert not significant(holm([res.p_value]))[0]


def test_constant_shift_is_detected_and_ci_covers_it():
    a = noisy(50, seed=1)
    b = a - 1.0 + np.random.default_rng(2).normal(0, 1.0, 50)  # a − b = 1 + noise
    res = paired_test(a, b, n_resamples=R)
    assert res.p_value < 0.01
    assert res.low < 1.0 < res.high and res.low > 0
    assert res.n == 50


def test_paired_test_aligns_on_qid_and_refuses_different_queries():
    a = noisy(20, seed=3)
    b = (a - 1.0).sample(frac=1.0, random_state=0)  # same qids, shuffled order
    res = paired_test(a, b, n_resamples=R)  # paired on qid: every difference is exactly 1
    assert (res.diff, res.low, res.high) == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="1 qids only in a, 2 only in b"):
        paired_test(a, pd.concat([b.drop("q0"), pd.Series([1.0, 2.0], index=["x", "y"])]), n_resamples=R)


def test_paired_test_drops_nan_pairs_and_is_deterministic():
    a, b = noisy(30, seed=5), noisy(30, seed=6)
    a.iloc[0], b.iloc[1] = np.nan, np.nan
    first, second = paired_test(a, b, n_resamples=R, seed=7), paired_test(a, b, n_resamples=R, seed=7)
    assert first == second and first.n == 28


# ------------------------------------------------------------------ bootstrap

def test_bootstrap_ci_covers_true_mean_of_normal_sample():
    x = np.random.default_rng(8).normal(10.0, 2.0, 400)
    ci = bootstrap_ci(x, n_resamples=R)
    assert ci.low < 10.0 < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * 2.0 / 20, rel=0.25)  # ≈ normal-theory width


@pytest.mark.filterwarnings("error")  # scipy warns on constant data; we must not reach it
def test_bootstrap_ci_constant_vector_is_degenerate_and_nan_dropped():
    assert bootstrap_ci([100.0] * 30, n_resamples=R) == (100.0, 100.0, 100.0, 30)
    assert bootstrap_ci([0.0, np.nan, 0.0], n_resamples=R) == (0.0, 0.0, 0.0, 2)
    with pytest.raises(ValueError):
        bootstrap_ci([np.nan], n_resamples=R)


def test_bootstrap_ci_on_binary_metric_is_finite_and_ordered():
    x = np.r_[np.zeros(99), 100.0]  # R1-like 0/100 values, very skewed
    ci = bootstrap_ci(x, n_resamples=R)
    assert ci.mean == 1.0 and 0.0 <= ci.low <= ci.mean < ci.high <= 100.0


# ------------------------------------------------------------------ Holm

def test_holm_hand_case():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06
    adj = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    assert significant(adj).tolist() == [True, False, False, True]


def test_holm_caps_at_one_and_keeps_nan():
    adj = holm([0.5, np.nan, 0.4])
    np.testing.assert_allclose(adj, [0.8, np.nan, 0.8])  # m = 2: 0.4·2 = 0.8, max(0.8, 0.5·1)
    assert holm([0.9, 0.6])[1] == 1.0
    assert significant([np.nan, 0.05]).tolist() == [False, True]


# ------------------------------------------------------------------ seeds and power

def test_seed_summary():
    mean, std, n = seed_summary([40.0, 42.0, 44.0])
    assert (mean, std, n) == (42.0, 2.0, 3)
    frame = pd.DataFrame({0: [0.0, 100.0], 1: [100.0, 100.0]})  # per-seed headline 50 and 100
    assert seed_summary(frame)[:2] == pytest.approx((75.0, math.sqrt(1250.0)))
    assert math.isnan(seed_summary([41.0])[1])


def test_mde_hand_case_and_shrinks_with_seeds():
    # fixed models (no seed term) and ~infinite df: (z_.975 + z_.8) · se = 2.801585 · 1000/sqrt(10**6)
    assert minimum_detectable_effect(0.0, 1, 1000.0, 10**6, calibrated_df=math.inf) == pytest.approx(2.801585, rel=1e-4)
    # 100 queries: the query part's t has 99 df, a little wider than normal
    assert 2.8016 < minimum_detectable_effect(0.0, 1, 10.0, 100, calibrated_df=math.inf) < 2.85
    # 5 seeds per row, no query term: se = sqrt(2/5), df = 8 (Satterthwaite of two equal parts of df 4);
    # exact noncentral-t solution, checked against the normal approximation with t quantiles
    mde = minimum_detectable_effect(1.0, 5)
    approx = (st.t.ppf(0.975, 8) + st.t.ppf(0.8, 8)) * math.sqrt(2 / 5)
    assert mde == pytest.approx(approx, rel=0.03) and mde > 2.801585 * math.sqrt(2 / 5)
    mdes = [minimum_detectable_effect(1.5, k, 12.0, 600) for k in (2, 3, 5, 10)]
    assert mdes == sorted(mdes, reverse=True)
    # one seed: only with a calibration; fewer calibration df → larger MDE
    with pytest.raises(ValueError, match="calibrated"):
        minimum_detectable_effect(1.5, 1)
    assert minimum_detectable_effect(1.5, 1, calibrated_df=8) > minimum_detectable_effect(1.5, 1, calibrated_df=40)


def test_estimate_variance_components_recovers_known_components():
    rng = np.random.default_rng(9)
    q, s = 3000, 4
    base = rng.normal(50, 20, (q, 1))                  # query difficulty, shared
    w = rng.normal(0, 5, (q, 1))                       # method × query interaction, sd 5
    u_a, u_b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 0.0, 2.0])   # seed effects, sd 1.29
    a = pd.DataFrame(base + w + u_a + rng.normal(0, 8, (q, s)))   # seed × query noise, sd 8
    b = pd.DataFrame(base + u_b + rng.normal(0, 8, (q, s)))
    vc = estimate_variance_components(a, b)
    assert vc.seed_sd == pytest.approx(np.std(u_a, ddof=1), rel=0.1)   # + noise/Q: negligible here
    assert vc.noise_sd == pytest.approx(8.0, rel=0.03)
    assert vc.interaction_sd == pytest.approx(5.0, rel=0.1)
    assert vc.sd_diff == pytest.approx(math.sqrt(25 + 2 * 64), rel=0.05)   # seed effects are constant per run
    assert vc.n_queries == q and vc.n_seeds == (4, 4) and vc.seed_df == 6
    one = estimate_variance_components(a[0], b[0])
    assert math.isnan(one.seed_sd) and math.isnan(one.noise_sd)


def test_residual_variance_of_an_additive_table_is_zero():
    y = np.add.outer(np.arange(5.0), [0.0, 2.0, 7.0])   # query effect + seed effect, no interaction
    assert residual_variance(y) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(residual_variance(y[:, :1]))


# ------------------------------------------------------------------ the significance policy

def simulate(rng, q=120, seeds=(3, 3), effect=0.0, seed_sd=1.5, noise_sd=10.0, inter_sd=3.0):
    """Two rows from the policy's model: query difficulty (shared), method × query interaction,
    training-seed effect and seed × query noise."""
    base = rng.normal(40, 20, (q, 1))
    rows = []
    for k, (s, shift) in enumerate(zip(seeds, (effect, 0.0))):
        y = base + rng.normal(0, inter_sd, (q, 1)) + rng.normal(0, seed_sd, (1, s)) + rng.normal(0, noise_sd, (q, s))
        rows.append(pd.DataFrame(y + shift, index=[f"q{i}" for i in range(q)]))
    return rows


def test_method_test_identical_rows_are_not_significant():
    a, _ = simulate(np.random.default_rng(0))
    res = method_test(a, a.copy())
    assert res.diff == 0.0 and res.p_value == 1.0 and res.seed_variance == "measured"
    assert not significant(holm([res.p_value]))[0]
    one = a[[0]]
    res = method_test(one, one.copy(), SeedVariance(1.5, 10, 10.0), SeedVariance(1.5, 10, 10.0))
    assert res.diff == 0.0 and res.p_value == 1.0


def test_method_test_detects_a_constant_shift_of_one_point():
    rng = np.random.default_rng(1)
    a, b = simulate(rng, q=400, seeds=(3, 3), effect=1.0, seed_sd=0.15, noise_sd=4.0, inter_sd=1.0)
    res = method_test(a, b)
    assert res.p_value < 0.01 and res.low < 1.0 < res.high and res.low > 0
    assert res.n_queries == 400 and res.seed_variance == "measured"


def test_one_seed_without_calibration_is_not_tested():
    a, b = simulate(np.random.default_rng(2), seeds=(1, 3), effect=30.0)
    res = method_test(a, b)
    assert res.seed_variance == "unknown" and math.isnan(res.p_value) and math.isnan(res.low)
    assert res.diff == pytest.approx(a.to_numpy().mean() - b.to_numpy().mean())
    cal = SeedVariance(1.5, 12, 10.0)
    res = method_test(a, b, calibration_a=cal)
    assert res.seed_variance == "calibrated" and res.p_value < 1e-4


def test_two_one_seed_rows_share_one_calibration():
    a, b = simulate(np.random.default_rng(3), seeds=(1, 1), effect=2.0)
    cal = SeedVariance(1.5, 6, 10.0)
    res = method_test(a, b, cal, cal)
    # both seed parts come from one estimate: df stays near its 6 (the query part adds a little)
    assert 6 <= res.df < 8
    assert math.sqrt(2 * 1.5 ** 2) < res.se < math.sqrt(2 * 1.5 ** 2 + 3.0)   # + query part ≈ (3² + 3²)/120


def test_method_test_refuses_rows_on_different_queries():
    a, b = simulate(np.random.default_rng(4))
    with pytest.raises(ValueError, match="1 qids only in a, 0 only in b"):
        method_test(a, b.iloc[1:])


@pytest.mark.parametrize("seeds, calibrated", [((3, 3), False), ((3, 5), False), ((1, 1), True)])
def test_policy_false_positive_rate_is_nominal_and_power_is_high(seeds, calibrated):
    """A small simulation with known seed and query variance: under H0 the policy rejects about
    5 % of the time (the per-query test on the same data: far more), and it finds a large effect."""
    rng = np.random.default_rng(5)
    n_sim, seed_sd, noise_sd, q = 600, 1.5, 10.0, 120

    def cal():   # an independent calibration measurement: 4 rows × 5 seeds → 16 df
        heads = [rng.normal(0, math.sqrt(seed_sd ** 2 + noise_sd ** 2 / q), 5) for _ in range(4)]
        return SeedVariance(float(np.sqrt(np.mean([np.var(h, ddof=1) for h in heads]))), 16, noise_sd)

    rejections, naive = 0, 0
    for _ in range(n_sim):
        a, b = simulate(rng, q=q, seeds=seeds, seed_sd=seed_sd, noise_sd=noise_sd)
        c = cal() if calibrated else None
        rejections += method_test(a, b, c, c).p_value <= 0.05
        d = a.mean(axis=1) - b.mean(axis=1)   # fixed-model paired test (t form of the permutation test)
        naive += st.ttest_1samp(d, 0.0).pvalue <= 0.05
    assert 0.025 <= rejections / n_sim <= 0.08, rejections / n_sim
    assert naive / n_sim > 0.2                       # models-as-fixed: not a test of methods
    found = 0
    for _ in range(100):
        a, b = simulate(rng, q=q, seeds=seeds, effect=8.0, seed_sd=seed_sd, noise_sd=noise_sd)
        c = cal() if calibrated else None
        found += method_test(a, b, c, c).p_value <= 0.05
    assert found >= 80, found


# ------------------------------------------------------------------ tables

def test_compare_to_reference_flags_shifted_row_only():
    rng = np.random.default_rng(10)
    ref, shifted = simulate(rng, q=80, seeds=(3, 3), effect=-12.0, seed_sd=1.0)
    same_seeds, _ = simulate(rng, q=80, seeds=(3, 1))
    same_seeds = same_seeds - same_seeds.mean(axis=1).to_numpy()[:, None] + ref.mean(axis=1).to_numpy()[:, None]
    one = ref[[0]] + 20.0
    table = {"ref": ref, "same": ref.copy(), "seeds": same_seeds, "shifted": shifted, "one seed": one}
    out = compare_to_reference(table, "ref", "MR-full-mAP", n_resamples=R)
    assert list(out.index) == ["ref", "same", "seeds", "shifted", "one seed"]
    assert out.loc["same", "p_value"] == 1.0 and not out.loc["same", "significant"]
    assert out.loc["seeds", "diff"] == pytest.approx(0.0, abs=1e-9) and not out.loc["seeds", "significant"]
    assert out.loc["shifted", "significant"] and out.loc["shifted", "p_holm"] < 0.01
    assert out.loc["shifted", "diff_low"] < 12.0 < out.loc["shifted", "diff_high"]
    # one seed, no calibration: training variance unknown → the fixed-model per-query test, marked †
    assert out.loc["one seed", "seed_variance"] == "not counted" and out.loc["one seed", "significant"]
    assert math.isnan(out.loc["one seed", "df"])
    q = paired_test(one[0], ref.mean(axis=1), n_resamples=R)
    assert out.loc["one seed", "p_value"] == pytest.approx(q.p_value) and out.loc["one seed", "diff"] == pytest.approx(q.diff)
    assert math.isnan(out.loc["ref", "p_value"]) and not out.loc["ref", "significant"]
    np.testing.assert_allclose(out["p_holm"].dropna(), holm(out["p_value"].dropna()))
    assert out.loc["seeds", "spread"] == "seed std" and out.loc["seeds", "n_seeds"] == 3
    assert out.loc["seeds", "mean"] == pytest.approx(same_seeds.mean().mean())
    assert out.loc["seeds", "seed_std"] == pytest.approx(same_seeds.mean().std(ddof=1))
    assert cell_text(out.loc["seeds"]).count("±") == 1 and cell_text(out.loc["shifted"]).endswith("*")
    assert cell_text(out.loc["one seed"]).endswith("]†")
    # with a calibrated seed variance the one-seed row is tested (and a 20-point shift found)
    cal = compare_to_reference(table, "ref", "MR-full-mAP", n_resamples=R, calibration=SeedVariance(1.0, 16, 10.0))
    assert cal.loc["one seed", "seed_variance"] == "calibrated" and cal.loc["one seed", "significant"]
    assert cell_text(cal.loc["one seed"]).endswith("]*")
    with pytest.raises(ValueError, match="'bad'.*qids"):
        compare_to_reference({**table, "bad": ref.iloc[:-1]}, "ref", "MR-full-mAP", n_resamples=R)


def test_per_query_matrix_from_per_query_frames():
    f0 = pd.DataFrame({"qid": [1, 2, 3], "mIoU": [10.0, 20.0, 30.0]})
    f1 = pd.DataFrame({"qid": [3, 1, 2], "mIoU": [33.0, 11.0, 22.0]})
    m = per_query_matrix({0: f0, 1: f1}, "mIoU")
    assert m.loc[3].tolist() == [30.0, 33.0] and list(m.columns) == [0, 1]
    with pytest.raises(ValueError, match="differ in 2 qids"):
        per_query_matrix([f0, f1.assign(qid=[4, 1, 2])], "mIoU")


# ------------------------------------------------------------------ pooling runs

def record(seed, run_id, **changes):
    rec = dict(run_id=run_id, method="r2_tuning", label="R²-Tuning", dataset="qvhighlights", seed=seed,
               backbone="ViT-B-32", weights="openai", config={"num_layers": 4, "lr_scale": 1.0},
               train_config={"epochs": 30, "lr": 5e-4, "seed": seed}, status="ok", wall_s=100.0 + seed)
    rec.update(changes)
    return rec


def test_group_runs_pools_seeds_of_one_config():
    runs = [record(1, "r-s1"), record(0, "r-s0"), record(0, "f-s0", method="frozen")]
    groups = group_runs(runs)
    assert [r["run_id"] for r in groups["r2_tuning"]] == ["r-s0", "r-s1"]
    assert len(groups["frozen"]) == 1
    assert aggregation_key(runs[0]) == aggregation_key(runs[1])
    assert aggregation_key(runs[0]) != aggregation_key(record(0, "x", code_version="abc"))


@pytest.mark.parametrize("field, change, named", [
    ("config", {"num_layers": 2, "lr_scale": 1.0}, "config (num_layers)"),
    ("weights", "random-init", "weights"),
    ("train_config", {"epochs": 10, "lr": 5e-4, "seed": 1}, "train_config (epochs)"),
    ("code_version", "abc123", "code_version"),
])
def test_group_runs_refuses_runs_differing_beyond_seed(field, change, named):
    with pytest.raises(ValueError) as err:
        group_runs([record(0, "r-s0"), record(1, "r-s1", **{field: change})])
    message = str(err.value)
    assert named in message and "r-s0" in message and "r-s1" in message


def test_group_runs_refuses_duplicate_seed_and_accepts_row_function():
    with pytest.raises(ValueError, match="seed"):
        group_runs([record(0, "a"), record(0, "b")])
    groups = group_runs([record(0, "a"), record(1, "b", weights="random-init")],
                        row=lambda r: f"{r['method']} / {r['weights']}")
    assert sorted(groups) == ["r2_tuning / openai", "r2_tuning / random-init"]
