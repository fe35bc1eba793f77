"""Binomial tests, intervals, multiplicity and the planner against independent references."""

import numpy as np
import pytest
from scipy.stats import binom, binomtest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from studyapp.stats import (
    benjamini_hochberg,
    clopper_pearson,
    exact_power,
    holm,
    sign_test_pvalue,
    votes_needed,
    wilson,
)


def test_worked_example_60_of_100():
    # STUDY.md 4.1 worked example: 60 of 100 -> p = 0.057; exact CI [0.497, 0.697];
    # Wilson [0.502, 0.691].
    assert sign_test_pvalue(60, 100) == pytest.approx(0.057, abs=5e-4)
    assert np.round(clopper_pearson(60, 100), 3).tolist() == [0.497, 0.697]
    assert np.round(wilson(60, 100), 3).tolist() == [0.502, 0.691]


@pytest.mark.parametrize("n", [1, 2, 7, 20, 51, 100, 333])
def test_sign_test_matches_scipy_binomtest(n):
    # Reference: scipy.stats.binomtest(k, n, p=0.5), an independent implementation (it sums
    # the pmf of outcomes no more likely than k, with a relative tolerance).
    k = np.arange(n + 1)
    expected = [binomtest(int(x), n, 0.5).pvalue for x in k]
    np.testing.assert_allclose(sign_test_pvalue(k, np.full_like(k, n)), expected, rtol=1e-10)


def test_sign_test_without_votes_is_nan():
    assert np.isnan(sign_test_pvalue(0, 0))


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_intervals_match_statsmodels(confidence):
    # Reference: statsmodels.stats.proportion.proportion_confint, method='beta' (Clopper-Pearson)
    # and method='wilson'.
    k = np.array([0, 1, 5, 17, 50, 99, 100])
    n = np.array([10, 10, 12, 40, 100, 100, 100])
    lo, hi = clopper_pearson(k, n, confidence)
    rlo, rhi = proportion_confint(k, n, alpha=1 - confidence, method="beta")
    np.testing.assert_allclose(lo, np.nan_to_num(rlo, nan=0.0), atol=1e-12)
    np.testing.assert_allclose(hi, np.nan_to_num(rhi, nan=1.0), atol=1e-12)
    lo, hi = wilson(k, n, confidence)
    rlo, rhi = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    np.testing.assert_allclose(lo, rlo, atol=1e-12)
    np.testing.assert_allclose(hi, rhi, atol=1e-12)


def test_wilson_half_counts_by_hand():
    # By hand (Wilson 1927): k = 2.5 of n = 5, z = 1.959964:
    # centre = (2.5 + z^2/2) / (5 + z^2) = 0.5; half = z / (5 + z^2) * sqrt(2.5 * 2.5 / 5 + z^2 / 4)
    z = 1.959963984540054
    half = z / (5 + z * z) * np.sqrt(1.25 + z * z / 4)
    np.testing.assert_allclose(wilson(2.5, 5), [0.5 - half, 0.5 + half])


def test_empty_interval_is_nan():
    assert all(np.isnan(clopper_pearson(0, 0))) and all(np.isnan(wilson(0, 0)))


def test_holm_by_hand_and_statsmodels():
    # By hand: sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04;
    # running maximum 0.02, 0.03, 0.06, 0.06.
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    # Reference: statsmodels multipletests(method='holm') (not its default 'hs').
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.random(6) ** 3
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])


def test_holm_ignores_missing_tests():
    # A cell without votes is not part of the family: Holm over the 2 others.
    out = holm([0.01, np.nan, 0.04])
    np.testing.assert_allclose(out[[0, 2]], multipletests([0.01, 0.04], method="holm")[1])
    assert np.isnan(out[1])


def test_bh_matches_statsmodels():
    # Reference: statsmodels multipletests(method='fdr_bh').
    rng = np.random.default_rng(2)
    for m in (1, 5, 33):
        p = rng.random(m) ** 2
        np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1])


@pytest.mark.parametrize("n,p", [(30, 0.7), (100, 0.6), (199, 0.6), (57, 0.5)])
def test_exact_power_by_enumeration(n, p):
    # Reference: enumerate every outcome k, reject where scipy.stats.binomtest's p <= 0.05,
    # and sum the binomial pmf of the rejected outcomes.
    k = np.arange(n + 1)
    reject = np.array([binomtest(int(x), n, 0.5).pvalue <= 0.05 for x in k])
    assert exact_power(n, p, 0.05) == pytest.approx(binom.pmf(k[reject], n, p).sum(), rel=1e-10)


# STUDY.md 4.8, table and bullets: first n reaching 80% power with scipy's exact binomial,
# and (in parentheses) the n from which every larger n reaches it.
@pytest.mark.parametrize(
    "p,power,n_tests,first,stable",
    [
        (0.55, 0.8, 1, 786, 820),
        (0.60, 0.8, 1, 199, 210),
        (0.65, 0.8, 1, 90, 97),
        (0.70, 0.8, 1, 49, 54),
        (0.60, 0.8, 3, 262, 273),  # alpha = 0.05/3
        (0.60, 0.8, 6, 303, 312),  # alpha = 0.05/6: Holm's first step over 6 tests
        (0.65, 0.8, 6, 136, 141),
        (0.60, 0.9, 1, 263, 274),  # 90% power
    ],
)
def test_planner_matches_study_table(p, power, n_tests, first, stable):
    r = votes_needed(p, power=power, n_tests=n_tests)
    assert (r.non_tie_first, r.non_tie_stable) == (first, stable)


def test_planner_normal_approximation():
    # STUDY.md 4.9: NormalIndPower().solve_power(proportion_effectsize(0.6, 0.5), alpha=.05,
    # power=.8, ratio=0) -> 193.6
    assert votes_needed(0.6, n_tests=1).normal_approx == pytest.approx(193.6, abs=0.05)


def test_planner_scales_for_ties_and_clustering():
    # STUDY.md 4.8: "25% ties, 210 -> 280 total votes"; the design effect multiplies.
    r = votes_needed(0.6, n_tests=1, tie_rate=0.25)
    assert r.votes_stable == 280
    r = votes_needed(0.6, n_tests=1, tie_rate=0.25, design_effect=1.5)
    assert r.votes_stable == 420 and r.votes_first == int(np.ceil(199 * 1.5 / 0.75))


def test_planner_is_symmetric_and_validates():
    a, b = votes_needed(0.4, n_tests=1), votes_needed(0.6, n_tests=1)
    assert (a.non_tie_first, a.non_tie_stable) == (b.non_tie_first, b.non_tie_stable)
    with pytest.raises(ValueError) as exc:
        votes_needed(0.5, power=1.2, tie_rate=1.0)
    msg = str(exc.value)
    assert "p (0.5)" in msg and "power (1.2)" in msg and "tie_rate (1.0)" in msg


@pytest.mark.parametrize("n", [1, 3, 6, 9, 12, 17, 19, 20, 50, 333])
def test_wilson_contains_the_rate_at_zero_and_n(n):
    # Issue 12 audit: at 0 of 3 the lower bound came out 5.6e-17, above the rate 0.
    for k in (0, n):
        lo, hi = wilson(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0


def test_holm_does_not_call_gc_collect(monkeypatch):
    import gc

    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    holm([0.01, 0.02, 0.5])
    benjamini_hochberg([0.01, 0.02, 0.5])
    assert calls == []
