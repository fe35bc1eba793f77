"""The primary test against statsmodels' cluster-robust logit, and its small-sample rules."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as st

from studyapp.stats.clustered import METHOD_NO_SIDE, METHOD_NONE, METHOD_SIDE, METHOD_SIGN, clustered_tests


def _data(seed, n=300, n_ann=12, n_prompt=15, beta0=0.3, side=0.2, sd=0.5):
    rng = np.random.default_rng(seed)
    ann = rng.integers(0, n_ann, n)
    pr = rng.integers(0, n_prompt, n)
    left = rng.random(n) < 0.5
    u, v = rng.normal(0, sd, n_ann), rng.normal(0, sd, n_prompt)
    eta = beta0 + u[ann] + v[pr] + side * np.where(left, 1, -1)
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return y, left, ann, pr


def _sm_cov(y, left, groups):
    """Reference: statsmodels Logit(y ~ 1 + side) with cov_type='cluster' (one or two group columns;
    two columns give Cameron-Gelbach-Miller two-way clustering with statsmodels' default small-sample
    correction)."""
    X = np.column_stack([np.ones(len(y)), np.where(left, 1.0, -1.0)])
    fit = sm.Logit(y, X).fit(disp=0, cov_type="cluster", cov_kwds={"groups": groups})
    return fit.params[0], fit.cov_params()[0, 0]


@pytest.mark.parametrize("seed", range(6))
def test_matches_statsmodels_two_way_cluster_robust_logit(seed):
    y, left, ann, pr = _data(seed)
    r = clustered_tests(np.zeros(len(y), int), y, left, ann, pr, 1, min_clusters=2)
    b0, v2 = _sm_cov(y, left, np.column_stack([ann, pr]))
    _, va = _sm_cov(y, left, ann)
    _, vp = _sm_cov(y, left, pr)
    # The larger of the two-way and the one-way variances (CGM 2011, section 2.3).
    v = max(v2, va, vp)
    assert r.method == [METHOD_SIDE]
    assert r.log_odds[0] == pytest.approx(b0, rel=1e-8)
    assert r.se[0] == pytest.approx(np.sqrt(v), rel=1e-8)
    df = min(len(np.unique(ann)), len(np.unique(pr))) - 1
    assert r.df[0] == df
    assert r.p_value[0] == pytest.approx(2 * st.t.sf(abs(b0) / np.sqrt(v), df), rel=1e-8)
    # Naive (model-based) SE: statsmodels' default covariance.
    X = np.column_stack([np.ones(len(y)), np.where(left, 1.0, -1.0)])
    assert r.se_naive[0] == pytest.approx(sm.Logit(y, X).fit(disp=0).bse[0], rel=1e-6)
    lo, hi = 1 / (1 + np.exp(-(b0 + np.array([-1, 1]) * st.t.isf(0.025, df) * np.sqrt(v))))
    assert (r.ci_low[0], r.ci_high[0]) == pytest.approx((lo, hi), rel=1e-8)


def test_cells_are_independent_of_each_other():
    parts = [_data(s, n=200) for s in range(3)]
    y = np.concatenate([p[0] for p in parts])
    left = np.concatenate([p[1] for p in parts])
    ann = np.concatenate([p[2] for p in parts])
    pr = np.concatenate([p[3] for p in parts])
    cell = np.repeat(np.arange(3), 200)
    r = clustered_tests(cell, y, left, ann, pr, 3, min_clusters=2)
    for k, (yk, lk, ak, pk) in enumerate(parts):
        one = clustered_tests(np.zeros(200, int), yk, lk, ak, pk, 1, min_clusters=2)
        assert r.p_value[k] == pytest.approx(one.p_value[0], rel=1e-10)
        assert r.se[k] == pytest.approx(one.se[0], rel=1e-10)


def test_min_clusters_at_below_and_above():
    y, left, ann, pr = _data(1, n_ann=10, n_prompt=30)
    for m, tested in ((9, True), (10, True), (11, False)):
        r = clustered_tests(np.zeros(len(y), int), y, left, ann, pr, 1, min_clusters=m)
        assert (not np.isnan(r.p_value[0])) == tested, m
        if not tested:
            assert r.method == [METHOD_NONE] and "10 annotator(s)" in r.note[0] and "at least 11" in r.note[0]


def test_side_dropped_when_one_side_is_all_one_way():
    y, left, ann, pr = _data(2)
    y[left] = 1.0
    r = clustered_tests(np.zeros(len(y), int), y, left, ann, pr, 1, min_clusters=2)
    assert r.method == [METHOD_NO_SIDE]
    # Reference: statsmodels intercept-only logit, two-way clustered.
    fit = sm.Logit(y, np.ones((len(y), 1))).fit(disp=0, cov_type="cluster", cov_kwds={"groups": np.column_stack([ann, pr])})
    va = sm.Logit(y, np.ones((len(y), 1))).fit(disp=0, cov_type="cluster", cov_kwds={"groups": ann}).cov_params()[0, 0]
    vp = sm.Logit(y, np.ones((len(y), 1))).fit(disp=0, cov_type="cluster", cov_kwds={"groups": pr}).cov_params()[0, 0]
    assert r.log_odds[0] == pytest.approx(fit.params[0], rel=1e-8)
    assert r.se[0] == pytest.approx(np.sqrt(max(fit.cov_params()[0, 0], va, vp)), rel=1e-8)


def test_every_vote_one_way_is_a_cluster_sign_test():
    n = 40
    ann, pr = np.arange(n) % 12, np.arange(n) % 20
    r = clustered_tests(np.zeros(n, int), np.ones(n), np.arange(n) % 2 == 0, ann, pr, 1)
    assert r.method == [METHOD_SIGN]
    # 12 annotators (the scarcer clusters) all one way: exact two-sided sign test of 12 of 12.
    assert r.p_value[0] == pytest.approx(st.binomtest(12, 12).pvalue, rel=1e-12)
    assert r.ci_high[0] == 1.0 and r.ci_low[0] == pytest.approx(st.binomtest(12, 12).proportion_ci().low, rel=1e-9)
    r0 = clustered_tests(np.zeros(n, int), np.zeros(n), np.arange(n) % 2 == 0, ann, pr, 1)
    assert r0.p_value[0] == r.p_value[0] and r0.ci_low[0] == 0.0 and r0.estimate[0] == 0.0


def test_empty_cell():
    r = clustered_tests(np.zeros(0, int), np.zeros(0), np.zeros(0, bool), np.zeros(0, int), np.zeros(0, int), 2)
    assert np.isnan(r.p_value).all() and r.method == [METHOD_NONE, METHOD_NONE] and r.note == ["no votes", "no votes"]


def test_fast_enough_for_simulation():
    import time

    y, left, ann, pr = _data(3, n=1800, n_ann=30, n_prompt=50)
    cell = np.arange(1800) % 6
    t0 = time.perf_counter()
    for _ in range(50):
        clustered_tests(cell, y, left, ann, pr, 6)
    assert (time.perf_counter() - t0) / 50 < 0.02  # a 6-cell study of 1,800 votes: well under 20 ms
