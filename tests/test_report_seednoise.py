"""The two-level bootstrap (subjects x seeds) and the power figures (issue 24); pure functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from orchestrator.report import power, seednoise


def _shared_seed_sweep(rng, n: int, k: int, delta: float, tau: float, clips: int = 30) -> tuple:
    """Two arms on n subjects x k seeds, 2 classes, accuracy-like: on seed j every subject of an arm is
    right with probability 0.6 + e_j (+ delta for the arm), e_j ~ N(0, tau) drawn per arm and seed: the
    shared seed effect of every fold starting from the same weights. True difference: delta."""
    out = []
    for shift in (delta, 0.0):
        e = rng.normal(0.0, tau, k)
        conf = np.zeros((k, n, 2, 2))
        p = np.clip(0.6 + shift + e, 0.01, 0.99)[:, None] * np.ones((k, n))
        right = rng.binomial(clips, p)  # (k, n) correct clips, classes balanced
        conf[..., 0, 0] = conf[..., 1, 1] = right / 2
        conf[..., 0, 1] = conf[..., 1, 0] = (clips - right) / 2
        out.append(conf)
    return out[0], out[1]


def test_two_level_interval_covers_a_shared_seed_effect_at_about_its_nominal_rate():
    """With a seed effect shared by all subjects of a seed (tau = 0.04, clip noise smaller), the subject
    bootstrap misses it and under-covers badly; the two-level interval covers the true difference at
    about 95% (10 seeds: the seed level has enough draws to estimate its share)."""
    rng = np.random.default_rng(0)
    hit2 = hit1 = 0
    sims = 200
    for i in range(sims):
        ca, cb = _shared_seed_sweep(rng, n=16, k=10, delta=0.05, tau=0.04)
        two = seednoise.bootstrap_diff(ca, cb, "accuracy", n_resamples=600, seed=i)
        one = seednoise.bootstrap_diff(ca, cb, "accuracy", seeds=False, n_resamples=600, seed=i)
        hit2 += two.low <= 0.05 <= two.high
        hit1 += one.low <= 0.05 <= one.high
    assert 0.88 <= hit2 / sims <= 0.995
    assert hit1 / sims < 0.8  # what the subject-only interval of before issue 24 gave


def test_two_level_bootstrap_point_and_levels():
    rng = np.random.default_rng(1)
    ca, cb = _shared_seed_sweep(rng, n=6, k=3, delta=0.1, tau=0.01)
    r = seednoise.bootstrap_diff(ca, cb, "accuracy", n_resamples=500)
    acc = lambda c: (c[..., 0, 0] + c[..., 1, 1]).sum(axis=1) / c.sum(axis=(1, 2, 3))  # noqa: E731
    assert r.point == pytest.approx(np.mean(acc(ca) - acc(cb))) and r.low <= r.point <= r.high
    assert r.levels == "subjects and seeds" and r.distinct == math.comb(11, 6) == 462
    assert seednoise.bootstrap_diff(ca[:1], cb[:1], "accuracy", n_resamples=200).levels == "subjects"
    assert "462 distinct" in seednoise.few_subjects_note(6, r.distinct)
    assert seednoise.few_subjects_note(15, 0) == ""


def test_stratified_bootstrap_keeps_each_stratum_size():
    rng = np.random.default_rng(2)
    w = seednoise._subject_draws(rng, 5, 300, ["A", "A", "A", "B", "B"])
    assert (w[:, :3].sum(axis=1) == 3).all() and (w[:, 3:].sum(axis=1) == 2).all()


def test_mde_and_subjects_needed_follow_the_normal_power_formula():
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)  # 2.80
    assert power.mde(0.01) == pytest.approx(z * 0.01)
    assert power.per_test_alpha(0.05, "holm", 5) == pytest.approx(0.01)
    assert power.per_test_alpha(0.05, "none", 5) == 0.05
    a, b = power.variance_components(se_subjects=0.02, n_subjects=25, seed_sd=0.01)
    assert (a, b) == pytest.approx((25 * 0.02**2, 0.01**2))
    # with n subjects and k seeds the MDE is z * sqrt(A/n + B/k); subjects_needed inverts it
    n = power.subjects_needed(a, b, 0.03, k=3, alpha=0.05)
    assert power.mde_at(a, b, int(n), 3, 0.05) <= 0.03 < power.mde_at(a, b, int(n) - 1, 3, 0.05)
    assert power.subjects_needed(a, b, 0.01, k=1, alpha=0.05) == math.inf  # the seed share alone is too big
