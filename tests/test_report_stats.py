"""The report's paired statistics on constructed per-subject vectors (pure functions, no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_model.metrics import classification_metrics
from orchestrator.report import significance, stats, tables


def _subjects(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 0.7, n), rng.integers(3, 20, n).astype(float)


def test_permutation_and_wilcoxon_see_a_consistent_improvement():
    base, _ = _subjects(16)
    better = np.clip(base + np.random.default_rng(1).uniform(0.08, 0.15, 16), 0, 1)
    assert stats.permutation_p(better, base) < 0.001 and stats.wilcoxon_p(better, base) < 0.001


def test_identical_or_single_pairs_get_p_one():
    base, _ = _subjects(16)
    assert stats.permutation_p(base.copy(), base) == 1.0 and stats.wilcoxon_p(base.copy(), base) == 1.0
    assert stats.permutation_p(np.array([0.9]), np.array([0.1])) == 1.0


def test_three_subjects_cannot_reach_significance():
    base, _ = _subjects(3)
    assert stats.min_attainable_p(3) == 0.25
    assert stats.permutation_p(base + 0.3, base) == pytest.approx(0.25)


def _holm_reference(p: np.ndarray) -> np.ndarray:
    """Holm by its definition: reject in ascending order while p_(i) <= alpha / (m - i + 1); the adjusted
    p of H_i is the smallest alpha at which it is rejected (searched on a fine grid)."""
    grid = np.linspace(0, 1, 20001)
    m, order = len(p), np.argsort(p)
    adj = np.ones(m)
    for alpha in grid[::-1]:
        for rank, i in enumerate(order):
            if p[i] > alpha / (m - rank):
                break
            adj[i] = alpha
    return adj


def test_holm_and_bh_on_a_hand_checked_family():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert stats.adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p*4/rank = 0.02, 0.02, 0.04, 0.04 (already monotone)
    assert stats.adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert stats.adjust_pvalues(p, "none") == pytest.approx(p)
    # a test that could not be run (NaN) is neither counted in the family nor given a p
    with_nan = stats.adjust_pvalues(np.array([0.01, np.nan, 0.04]), "holm")
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])
    with pytest.raises(ValueError, match="holm"):
        stats.adjust_pvalues(p, "bonferoni")


def test_holm_matches_its_definition_on_random_families():
    rng = np.random.default_rng(7)
    for _ in range(5):
        p = np.round(rng.uniform(0, 0.2, 6), 4)
        assert stats.holm(p) == pytest.approx(_holm_reference(p), abs=1e-4)


def _preds(seed: int, subject: str, y_true, y_pred) -> pd.DataFrame:
    return pd.DataFrame({"seed": seed, "subject": subject, "y_true": y_true, "y_pred": y_pred})


def test_bootstrap_resamples_whole_subjects():
    # subject A: the arm is right on all 10 clips, the baseline wrong on all; subject B: both identical.
    # Resampling subjects, a resample is AA (diff 1), AB/BA (0.5) or BB (0), each pair of draws 1/4, 1/2,
    # 1/4: the 95% percentile interval is exactly [0, 1]. Resampling clips would give a narrow interval.
    y = np.array([0, 1] * 5)
    arm = pd.concat([_preds(0, "A", y, y), _preds(0, "B", y, 1 - y)])
    base = pd.concat([_preds(0, "A", y, 1 - y), _preds(0, "B", y, 1 - y)])
    ca = stats.subject_confusions(arm, ["A", "B"], [0], 2)
    cb = stats.subject_confusions(base, ["A", "B"], [0], 2)
    diff, lo, hi = stats.bootstrap_pooled_diff(ca, cb, "accuracy", n_resamples=2000)
    assert diff == pytest.approx(0.5) and lo == 0.0 and hi == 1.0


def test_bootstrap_point_is_the_seed_mean_of_scikit_learn_pooled_differences():
    rng = np.random.default_rng(3)
    subjects, seeds, frames = ["s1", "s2", "s3", "s4"], [0, 1], {"arm": [], "base": []}
    for k in seeds:
        for s in subjects:
            yt = rng.integers(0, 3, 7)
            frames["arm"].append(_preds(k, s, yt, np.where(rng.random(7) < 0.7, yt, rng.integers(0, 3, 7))))
            frames["base"].append(_preds(k, s, yt, rng.integers(0, 3, 7)))
    arm, base = pd.concat(frames["arm"]), pd.concat(frames["base"])
    ca, cb = (stats.subject_confusions(d, subjects, seeds, 3) for d in (arm, base))
    for m in ("accuracy", "uf1", "uar"):
        want = np.mean(
            [
                classification_metrics(a.y_true, a.y_pred, 3)[m]
                - classification_metrics(b.y_true, b.y_pred, 3)[m]
                for a, b in ((arm[arm.seed == k], base[base.seed == k]) for k in seeds)
            ]
        )
        diff, lo, hi = stats.bootstrap_pooled_diff(ca, cb, m, n_resamples=500)
        assert diff == pytest.approx(want) and lo <= diff <= hi


def test_seed_paired_differences_give_the_seed_noise_of_the_difference():
    """d_k = pooled arm - pooled baseline per seed; SE = sd(d) / sqrt(k); resolved when the t interval on
    k - 1 df excludes 0. Three all-positive seed differences (the AAU frozen case of issue 24) are
    resolved when they are tight, not when they straddle 0."""
    from scipy import stats as sps

    from orchestrator.report import seednoise

    def conf(acc_per_seed):  # one subject of 100 clips, 2 classes, per-seed accuracy as given
        out = np.zeros((len(acc_per_seed), 1, 2, 2))
        for k, a in enumerate(acc_per_seed):
            out[k, 0] = [[50 * a, 50 * (1 - a)], [50 * (1 - a), 50 * a]]
        return out

    base = conf([0.50, 0.50, 0.50])
    tight = seednoise.seed_paired(conf([0.52, 0.51, 0.515]), base, "accuracy")
    d = np.array([0.02, 0.01, 0.015])
    assert tight.diffs == pytest.approx(d) and tight.se == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert tight.resolved is True and abs(d.mean()) > sps.t.ppf(0.975, 2) * tight.se
    loose = seednoise.seed_paired(conf([0.56, 0.47, 0.50]), base, "accuracy")
    assert loose.resolved is False
    assert seednoise.seed_paired(conf([0.6]), conf([0.5]), "accuracy").resolved is None  # one seed


def _two_seed_sweep(shift: dict[str, float], subjects, fail=()):
    """configs / folds / predictions frames of arms whose clip predictions are right with probability
    0.4 + shift[arm] (+ a seed-dependent wobble), two seeds, 12 clips per subject, 3 classes."""
    rng = np.random.default_rng(11)
    configs = pd.DataFrame(
        {
            "run_id": [f"r-{a}" for a in shift],
            "arm": list(shift),
            "table": "V",
            "status": "complete",
            "baseline": False,
            "run_status": "FINISHED",
            "param.num_classes": "3",
        }
    )
    folds, preds = [], {}
    for arm, d in shift.items():
        frames = []
        for k in (0, 1):
            for s in subjects:
                yt = rng.integers(0, 3, 12)
                yp = np.where(rng.random(12) < 0.4 + d + 0.03 * k, yt, (yt + 1) % 3)
                frames.append(_preds(k, s, yt, yp))
                m = classification_metrics(yt, yp, 3)
                failed = (arm, k, s) in fail
                folds.append(
                    {"config_run_id": f"r-{arm}", "subject": s, "seed": k, "n_test": 12.0,
                     "status": "failed" if failed else "complete",
                     **{x: np.nan if failed else m[x] for x in ("accuracy", "uf1", "uar")}}
                )  # fmt: skip
        preds[f"r-{arm}"] = pd.concat(frames)
    return configs, pd.DataFrame(folds), preds


def test_per_subject_averages_seeds_and_drops_a_subject_failed_on_one_seed():
    subjects = ["s1", "s2", "s3"]
    configs, folds, _ = _two_seed_sweep({"a": 0.0}, subjects, fail={("a", 1, "s2")})
    ps = significance.per_subject(folds, "r-a")
    assert list(ps.index) == ["s1", "s3"]
    f = folds[folds.subject == "s3"]
    assert ps.loc["s3", "uf1"] == pytest.approx(f["uf1"].mean())


def test_significance_table_corrects_the_primary_family_and_words_the_seed_noise():
    from orchestrator.report import seednoise, swap

    subjects = [f"s{i}" for i in range(1, 9)]
    configs, folds, preds = _two_seed_sweep({"base": 0.0, "big": 0.5, "same": 0.0}, subjects)
    sig = significance.significance_table(configs, folds, "V", preds, correction="holm")  # primary: uf1
    assert list(sig["metric"]) == ["accuracy", "uf1", "uar"] * 2 and set(sig["baseline"]) == {"base"}
    prim = sig[sig["metric"] == "uf1"]
    assert (prim["role"] == "primary").all() and (sig.loc[sig.metric != "uf1", "role"] != "primary").all()
    assert prim["p_adj"].to_numpy() == pytest.approx(stats.holm(prim["p_swap"].to_numpy()))
    assert sig.loc[sig.metric != "uf1", "p_adj"].isna().all()  # secondary: uncorrected, not in the family
    assert not sig.loc[sig.metric != "uf1", "significant"].any()
    assert (sig["significant"] == (sig["p_adj"] < 0.05)).all() and (sig["correction"] == "holm").all()
    assert "2 pooled swap tests" in sig.loc[0, "family"] and "secondary" in sig.loc[0, "family"]
    # the primary test is the pooled swap test on the clip predictions, exactly (2^8 <= 20,000)
    ca, cb = (stats.subject_confusions(preds[r], subjects, [0, 1], 3) for r in ("r-big", "r-base"))
    want = swap.swap_test(ca, cb, "uf1")
    big = sig[sig.arm == "big"].set_index("metric")
    assert big.loc["uf1", "p_swap"] == pytest.approx(want.p) and big.loc["uf1", "p_floor"] == 2 / 2**8
    assert big.loc["uf1", "significant"] and (big["ci_low"] > 0).all() and (big["n_seeds"] == 2).all()
    assert big.loc["uf1", "wins"] == 8 and big.loc["uf1", "ci_levels"] == "subjects and seeds"
    assert "8 subjects: only 6435 distinct" in big.loc["uf1", "verdict"]  # C(15, 8): flagged, under 15
    for _, row in sig.iterrows():  # the seed statement follows the seed-paired differences
        sp = seednoise.seed_paired(*(stats.subject_confusions(preds[f"r-{a}"], subjects, [0, 1], 3)
                                     for a in (row["arm"], "base")), row["metric"])
        assert row["seed_se"] == pytest.approx(sp.se) and row["seed_resolved"] == sp.resolved
        assert ("resolved from the seed noise" in row["verdict"]) == sp.resolved
    every = significance.significance_table(configs, folds, "V", preds, correction="holm", primary="all")
    assert "6 pooled swap tests" in every.loc[0, "family"] and every["p_adj"].notna().all()
    assert every["p_adj"].to_numpy() == pytest.approx(stats.holm(every["p_swap"].to_numpy()))
    none = significance.significance_table(configs, folds, "V", preds, correction="none", primary="all")
    assert none["p_adj"].to_numpy() == pytest.approx(none["p_swap"].to_numpy())
    assert (none["p_adj"] <= every["p_adj"] + 1e-12).all()


def test_significance_table_pairs_only_common_completed_subjects():
    # baseline completed s1..s6; arm "a" failed s2 and never ran s6; no predictions.csv: no pooled diff
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
    sig = significance.significance_table(configs, folds, "V", primary="accuracy")
    assert list(sig["arm"]) == ["a"] and sig.loc[0, "baseline"] == "base"
    assert sig.loc[0, "n_subjects"] == 4  # s1, s3, s4, s5
    assert sig.loc[0, "mean_diff"] == pytest.approx(0.25) and np.isnan(sig.loc[0, "pooled_diff"])
    assert sig.loc[0, "p_adj"] == sig.loc[0, "p_fold_permutation"]  # no predictions: per-fold test stands in
    assert "no predictions.csv" in sig.loc[0, "verdict"]
    # the baseline tag overrides the first-arm rule
    sig2 = significance.significance_table(configs.assign(baseline=[False, True]), folds, "V",
                                           primary="accuracy")
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


def test_table_viii_with_two_seeds_keeps_one_row_per_seed_and_averages_every_complete_fold():
    folds = pd.DataFrame(
        [
            {"config_run_id": "r", "subject": s, "seed": k, "status": "complete",
             "aau_weight_layer1": w, "aau_weight_layer2": 1 - w}
            for (s, k, w) in [("s1", 0, 0.2), ("s1", 1, 0.4), ("s2", 0, 0.6), ("s2", 1, 0.8)]
        ]
    )  # fmt: skip
    t = tables.aau_weight_table(folds, "r")
    assert list(t.loc["s1", "seed"]) == [0, 1]
    assert (
        t.loc["Average", "layer1"] == pytest.approx(0.5) and "4 complete folds" in t.loc["Average", "status"]
    )


def test_pruned_trials_take_no_place_in_the_significance_table():
    subjects = ["s1", "s2", "s3", "s4"]
    configs = pd.DataFrame(
        {
            "run_id": ["r0", "r1", "r2"],
            "arm": ["t-0", "t-1", "t-2"],
            "table": ["search"] * 3,
            "status": ["complete", "pruned", "complete"],
            "baseline": [False] * 3,
            "run_status": ["FINISHED"] * 3,
        }
    )
    folds = pd.DataFrame(
        [{"config_run_id": r, "subject": s, "status": "complete", "accuracy": acc, "n_test": 4}
         for r, acc, subs in (("r0", 0.5, subjects), ("r1", 0.25, subjects[:2]), ("r2", 0.75, subjects))
         for s in subs]
    )
    sig = significance.significance_table(configs, folds, "search", primary="accuracy")
    assert list(sig["arm"]) == ["t-2"] and set(sig["baseline"]) == {"t-0"}
    assert "(1 arm(s) x" in sig.loc[0, "family"]  # the pruned arm is not counted in the family
    assert "1 pruned trial(s) excluded" in sig.loc[0, "family"]  # and the note under the table says so
    alone = significance.significance_table(configs.iloc[[1]], folds, "search")
    assert alone.empty


def test_subject_confusions_of_an_arm_without_predictions_yet():
    """A running sweep's arm has no predictions: all-zero confusions, not an IndexError (empty index arrays
    came out as float)."""
    empty = pd.DataFrame({"seed": [], "subject": [], "y_true": [], "y_pred": []})
    out = stats.subject_confusions(empty, ["A", "B"], [0, 1], 3)
    assert out.shape == (2, 2, 3, 3) and not out.any()
