"""bench.stats: intervals, paired permutation test, Holm, power and safe seed pooling — on hand
cases and synthetic data with a known answer. Few resamples keep the file fast."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.stats import (aggregation_key, bootstrap_ci, cell_text, compare_to_reference,
                         estimate_variance_components, group_runs, holm, minimum_detectable_effect,
                         paired_test, per_query_matrix, seed_summary, significant)

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


def test_mde_hand_case_and_shrinks_with_n():
    # (z_.975 + z_.8) = 1.959964 + 0.841621 = 2.801585; sqrt(10²/100 + 2·1²/2) = sqrt(2)
    assert minimum_detectable_effect(10.0, 100, n_seeds=2, seed_sd=1.0) == pytest.approx(2.801585 * math.sqrt(2),
                                                                                          rel=1e-5)
    assert minimum_detectable_effect(10.0, 100) == pytest.approx(2.801585, rel=1e-5)
    mdes = [minimum_detectable_effect(10.0, n) for n in (50, 200, 1000)]
    assert mdes[0] > mdes[1] > mdes[2]
    assert minimum_detectable_effect(10.0, 100, 3, 1.0) < minimum_detectable_effect(10.0, 100, 1, 1.0)


def test_estimate_variance_components():
    rng = np.random.default_rng(9)
    qids = [f"q{i}" for i in range(2000)]
    base = rng.normal(50, 20, 2000)
    a = pd.DataFrame({s: base + rng.normal(0, 3, 2000) + off for s, off in enumerate([0.0, 1.0, 2.0])}, index=qids)
    b = pd.DataFrame({s: base + rng.normal(0, 3, 2000) + off for s, off in enumerate([0.0, 1.0, 2.0])}, index=qids)
    vc = estimate_variance_components(a, b)
    # a − b for one seed pair: noise sd sqrt(3² + 3²) ≈ 4.24, plus the seed offsets' spread (var 2/3·2)
    assert vc.sd_diff == pytest.approx(math.sqrt(18 + 4 / 3), rel=0.05)
    assert vc.seed_sd == pytest.approx(1.0, rel=0.05)  # per-seed headline offsets 0, 1, 2
    assert vc.n_queries == 2000 and vc.n_seeds == (3, 3)
    assert math.isnan(estimate_variance_components(a[0], b[0]).seed_sd)


# ------------------------------------------------------------------ tables

def test_compare_to_reference_flags_shifted_row_only():
    rng = np.random.default_rng(10)
    ref = noisy(60, seed=11)
    e = rng.normal(0, 0.5, 60)
    seeds = pd.DataFrame({0: ref - e, 1: ref + 0.3, 2: ref + e - 0.3})  # seed-averaged: equal to ref
    table = {"ref": ref, "same": ref.copy(), "seeds": seeds, "shifted": ref + 2.0 + rng.normal(0, 1.0, 60)}
    out = compare_to_reference(table, "ref", "MR-full-mAP", n_resamples=R)
    assert list(out.index) == ["ref", "same", "seeds", "shifted"]
    assert out.loc["same", "p_value"] == 1.0 and not out.loc["same", "significant"]
    assert out.loc["seeds", "p_value"] == 1.0 and not out.loc["seeds", "significant"]
    assert out.loc["shifted", "significant"] and out.loc["shifted", "p_holm"] < 0.01
    assert out.loc["shifted", "diff_low"] < 2.0 < out.loc["shifted", "diff_high"]
    assert math.isnan(out.loc["ref", "p_value"]) and not out.loc["ref", "significant"]
    np.testing.assert_allclose(out["p_holm"].dropna(), holm(out["p_value"].dropna()))
    assert out.loc["seeds", "spread"] == "seed std" and out.loc["seeds", "n_seeds"] == 3
    assert out.loc["seeds", "mean"] == pytest.approx(seeds.mean().mean())
    assert out.loc["seeds", "seed_std"] == pytest.approx(seeds.mean().std(ddof=1))
    assert cell_text(out.loc["seeds"]).count("±") == 1 and cell_text(out.loc["shifted"]).endswith("]*")
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
