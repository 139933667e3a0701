"""The report's paired statistics on constructed per-subject vectors (pure functions, no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.report import stats, tables


def _subjects(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 0.7, n), rng.integers(3, 20, n).astype(float)


def test_arm_better_on_every_subject_gets_a_small_p_and_a_ci_above_zero():
    base, n = _subjects(16)
    better = np.clip(base + np.random.default_rng(1).uniform(0.08, 0.15, 16), 0, 1)
    c = stats.compare_paired(better, base, n)
    assert c.p_permutation < 0.001 and c.p_wilcoxon < 0.001 and c.significant
    assert 0 < c.ci_low < c.pooled_diff < c.ci_high
    # the pooled difference is correct / total over subjects, not the mean of per-subject differences
    pooled = (np.round(better * n).sum() - np.round(base * n).sum()) / n.sum()
    assert c.pooled_diff == pytest.approx(pooled)


def test_identical_arms_get_p_one_and_a_zero_width_ci():
    base, n = _subjects(16)
    c = stats.compare_paired(base.copy(), base, n)
    assert c.p_permutation == 1.0 and c.p_wilcoxon == 1.0 and not c.significant
    assert c.pooled_diff == c.ci_low == c.ci_high == 0.0


def test_noise_only_is_not_significant_and_its_ci_covers_zero():
    base, n = _subjects(16, seed=3)
    noisy = np.clip(base + np.random.default_rng(4).normal(0, 0.05, 16), 0, 1)
    noisy -= np.mean(noisy - base)  # no systematic difference by construction
    c = stats.compare_paired(noisy, base, n)
    assert c.p_permutation > 0.3 and not c.significant
    assert c.ci_low < 0 < c.ci_high


def test_three_subjects_cannot_reach_significance_and_say_so():
    base, n = _subjects(3)
    c = stats.compare_paired(base + 0.3, base, n)
    assert c.min_p == 0.25 and c.p_permutation == pytest.approx(0.25) and not c.significant


def test_one_common_subject_gives_p_one_not_an_error():
    c = stats.compare_paired(np.array([0.9]), np.array([0.1]), np.array([5.0]))
    assert c.n_subjects == 1 and c.p_permutation == 1.0 and c.p_wilcoxon == 1.0 and not c.significant
    assert c.pooled_diff == pytest.approx(0.8)


def test_swapping_arms_flips_the_difference_not_the_p():
    base, n = _subjects(10, seed=5)
    other = np.clip(base + np.random.default_rng(6).normal(0.05, 0.05, 10), 0, 1)
    ab, ba = stats.compare_paired(other, base, n), stats.compare_paired(base, other, n)
    assert ab.pooled_diff == pytest.approx(-ba.pooled_diff)
    assert ab.p_permutation == pytest.approx(ba.p_permutation, abs=0.02)
    assert ab.p_wilcoxon == pytest.approx(ba.p_wilcoxon)


def test_significance_table_pairs_only_common_completed_subjects():
    # baseline completed s1..s6; arm "a" failed s2 and never ran s6
    subjects = [f"s{i}" for i in range(1, 7)]
    configs = pd.DataFrame(
        {
            "run_id": ["rb", "ra"],
            "arm": ["base", "a"],
            "table": ["V", "V"],
            "status": ["complete", "incomplete"],
            "baseline": [False, False],
            "run_status": ["FINISHED", "FINISHED"],
        }
    )
    folds = pd.DataFrame(
        [
            {"config_run_id": "rb", "subject": s, "status": "complete", "accuracy": 0.5, "n_test": 4}
            for s in subjects
        ]
        + [
            {
                "config_run_id": "ra",
                "subject": s,
                "status": "failed" if s == "s2" else "complete",
                "accuracy": np.nan if s == "s2" else 0.75,
                "n_test": 4,
            }
            for s in subjects[:5]
        ]
    )
    sig = tables.significance_table(configs, folds, "V")
    assert list(sig["arm"]) == ["a"] and sig.loc[0, "baseline"] == "base"
    assert sig.loc[0, "n_subjects"] == 4  # s1, s3, s4, s5
    assert sig.loc[0, "pooled_diff"] == pytest.approx(0.25)
    # the baseline tag overrides the first-arm rule
    sig2 = tables.significance_table(configs.assign(baseline=[False, True]), folds, "V")
    assert list(sig2["arm"]) == ["base"] and sig2.loc[0, "baseline"] == "a"


def test_table_vii_grid_puts_each_arm_in_its_fusion_layer_and_loss_cell():
    t = pd.DataFrame(
        {
            "arm": ["b1", "au1", "aau1", "b4", "au4"],
            "fusion_layer": ["1", "1", "1", "4", "4"],
            "au_loss": ["none", "layer:1", "aau", "none", "layer:4"],
            "accuracy": [0.70, 0.72, 0.75, 0.68, 0.69],
            "uf1": [0.60, 0.61, 0.65, 0.58, 0.59],
        }
    )
    g = tables.vii_grid(t).set_index("fusion_layer")
    assert list(g.columns) == [
        "Basic accuracy",
        "Basic uf1",
        "AU loss accuracy",
        "AU loss uf1",
        "AAU loss accuracy",
        "AAU loss uf1",
    ]
    assert g.loc["1", "AAU loss accuracy"] == 0.75 and g.loc["4", "AU loss uf1"] == 0.59
    assert np.isnan(g.loc["4", "AAU loss accuracy"])  # GTS-GN (layer 4) has no AAU arm, as in the paper
