"""The pooled subject-swap permutation test (issue 24) against an independent brute force, its calibration
under a known null, and the floor it reports. Pure functions, no MLflow."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mer_model.metrics import classification_metrics
from orchestrator.report import stats, swap

C = 3


def _clips(rng, n_subjects: int, seeds: int, p_arm: float, p_base: float, sizes=None) -> pd.DataFrame:
    """Clip-level predictions of two arms: one row per (seed, subject, clip) with y_true, arm, base."""
    sizes = sizes if sizes is not None else rng.integers(2, 9, n_subjects)
    truth = {s: rng.integers(0, C, sizes[s]) for s in range(n_subjects)}  # a subject's clips: every seed
    rows = []
    for k in range(seeds):
        for s in range(n_subjects):
            yt = truth[s]
            wrong = (yt + rng.integers(1, C, len(yt))) % C
            rows.append(pd.DataFrame({"seed": k, "subject": f"s{s}", "y_true": yt,
                                      "arm": np.where(rng.random(len(yt)) < p_arm, yt, wrong),
                                      "base": np.where(rng.random(len(yt)) < p_base, yt, wrong)}))
    return pd.concat(rows, ignore_index=True)


def _confs(clips: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    subjects = sorted(clips["subject"].unique(), key=lambda s: int(s[1:]))
    seeds = sorted(clips["seed"].unique())
    out = []
    for col in ("arm", "base"):
        pred = clips.rename(columns={col: "y_pred"})[["seed", "subject", "y_true", "y_pred"]]
        out.append(stats.subject_confusions(pred, subjects, seeds, C))
    return out[0], out[1]


def _brute_force_p(clips: pd.DataFrame, metric: str) -> float:
    """Every swap of arm / baseline predictions per subject, each seed's pooled metric by scikit-learn on
    the swapped clip lists, averaged over seeds; p = share of |T| >= |T_obs|."""
    subjects = sorted(clips["subject"].unique())

    def stat(swapped: set[str]) -> float:
        diffs = []
        for _, f in clips.groupby("seed"):
            sw = f["subject"].isin(swapped).to_numpy()
            arm = np.where(sw, f["base"], f["arm"])
            base = np.where(sw, f["arm"], f["base"])
            diffs.append(classification_metrics(f["y_true"], arm, C)[metric]
                         - classification_metrics(f["y_true"], base, C)[metric])
        return float(np.mean(diffs))

    t0 = stat(set())
    t = [stat({s for s, z in zip(subjects, bits, strict=True) if z})
         for bits in itertools.product([0, 1], repeat=len(subjects))]
    return float(np.mean(np.abs(t) >= abs(t0) - 1e-12))


@pytest.mark.parametrize("metric", ["accuracy", "uf1", "uar"])
def test_exact_swap_test_equals_a_brute_force_enumeration(metric):
    clips = _clips(np.random.default_rng(5), n_subjects=6, seeds=2, p_arm=0.7, p_base=0.4)
    ca, cb = _confs(clips)
    res = swap.swap_test(ca, cb, metric)
    assert res.exact and res.n_resamples == 2**6 and res.floor == pytest.approx(2 / 64)
    assert res.p == pytest.approx(_brute_force_p(clips, metric))
    want = np.mean([classification_metrics(f.y_true, f.arm, C)[metric]
                    - classification_metrics(f.y_true, f.base, C)[metric] for _, f in clips.groupby("seed")])
    assert res.statistic == pytest.approx(want)


def test_pooled_test_weights_subjects_by_their_clips_unlike_the_per_fold_mean():
    """A big subject the arm wins on and several tiny ones it loses by a little: the pooled statistic and
    the per-subject mean point different ways, and each test follows its own number."""
    rng = np.random.default_rng(0)
    clips = _clips(rng, n_subjects=8, seeds=1, p_arm=0.5, p_base=0.5, sizes=[40, 2, 2, 2, 2, 2, 2, 2])
    big = clips["subject"] == "s0"
    clips.loc[big, "arm"] = clips.loc[big, "y_true"]  # the arm is right on every clip of the big subject
    ca, cb = _confs(clips)
    res = swap.swap_test(ca, cb, "accuracy")
    assert res.statistic > 0 and res.p == pytest.approx(_brute_force_p(clips, "accuracy"))


def test_monte_carlo_p_is_floored_at_two_over_b_plus_one_and_says_so():
    clips = _clips(np.random.default_rng(2), n_subjects=20, seeds=2, p_arm=1.0, p_base=0.0,
                   sizes=np.full(20, 6))
    ca, cb = _confs(clips)
    res = swap.swap_test(ca, cb, "accuracy", n_resamples=999)
    assert not res.exact and res.n_resamples == 999
    assert res.floor == pytest.approx(2 / 1000) and res.p == pytest.approx(res.floor)
    assert swap.floor_p(20, 999) == res.floor and swap.floor_p(6, 999) == pytest.approx(2 / 64)
    more = swap.swap_test(ca, cb, "accuracy", n_resamples=9999)  # --resamples raises B: a lower floor
    assert more.p == pytest.approx(2 / 10000) and more.p < res.p


def test_identical_arms_give_p_one():
    clips = _clips(np.random.default_rng(1), n_subjects=5, seeds=2, p_arm=0.5, p_base=0.5)
    ca, _ = _confs(clips)
    assert swap.swap_test(ca, ca.copy(), "uf1").p == 1.0


def test_a_known_null_gives_uniform_p_values():
    """Both arms draw their predictions from the same distribution: over 300 simulated tables (10
    subjects of 4-14 clips, exact test) P(p <= a) is about a at every level a (a discrete test is uniform
    up to its atoms, so within three binomial standard errors) and never far above it (validity)."""
    rng = np.random.default_rng(42)
    ps = []
    for _ in range(300):
        clips = _clips(rng, n_subjects=10, seeds=1, p_arm=0.5, p_base=0.5, sizes=rng.integers(4, 15, 10))
        ca, cb = _confs(clips)
        ps.append(swap.swap_test(ca, cb, "uf1").p)
    ps = np.array(ps)
    for a in (0.05, 0.1, 0.25, 0.5, 0.75):
        se = np.sqrt(a * (1 - a) / len(ps))
        assert a - 3 * se <= (ps <= a).mean() <= a + 3 * se, a
    assert len(np.unique(ps)) > 100  # a real spread of p-values, not a few atoms


def test_strata_mean_weights_each_stratum_once_and_swaps_stay_within_subjects():
    clips = _clips(np.random.default_rng(9), n_subjects=6, seeds=2, p_arm=0.6, p_base=0.45)
    ca, cb = _confs(clips)
    strata = ["A", "A", "A", "A", "B", "B"]
    res = swap.swap_test(ca, cb, "uf1", strata=strata, combine="strata_mean")
    by = [swap.swap_test(ca[:, sl], cb[:, sl], "uf1").statistic for sl in (slice(0, 4), slice(4, 6))]
    assert res.statistic == pytest.approx(np.mean(by))
    pooled = swap.swap_test(ca, cb, "uf1", strata=strata)  # strata given, statistic pooled: as without
    assert pooled.p == pytest.approx(swap.swap_test(ca, cb, "uf1").p)
    with pytest.raises(ValueError, match="one per subject"):
        swap.swap_test(ca, cb, "uf1", strata=["A"], combine="strata_mean")
