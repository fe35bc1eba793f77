"""Lan-DeMets O'Brien-Fleming boundaries against published values, and their error rate."""

import numpy as np
import pytest
from scipy import stats as st

from studyapp.stats.sequential import (
    boundaries,
    check_fractions,
    equal_looks,
    expected_fraction,
    obf_spending,
    stopping_probabilities,
)


def test_published_five_equal_looks():
    # Reference: Reboussin, DeMets, Kim & Lan (2000), Controlled Clinical Trials 21, 190-207
    # (program ld98 / R package ldbounds), and gsDesign's sfLDOF: O'Brien-Fleming-type spending,
    # five equally spaced looks, two-sided alpha 0.05: 4.8769, 3.3569, 2.6803, 2.2898, 2.0310.
    assert boundaries(equal_looks(5), 0.05) == pytest.approx([4.8769, 3.3569, 2.6803, 2.2898, 2.0310], abs=2e-4)


def test_published_three_equal_looks():
    # Same source, three looks: 3.7103, 2.5114, 1.9930.
    assert boundaries(equal_looks(3), 0.05) == pytest.approx([3.7103, 2.5114, 1.9930], abs=2e-4)


def test_one_look_is_the_fixed_test():
    assert boundaries((1.0,), 0.05)[0] == pytest.approx(st.norm.isf(0.025), rel=1e-8)
    assert obf_spending(1.0, 0.05) == 0.05


def test_spending_is_the_formula():
    # alpha/2 per side by Lan & DeMets (1983): 2 - 2 Phi(z_{alpha/4} / sqrt(t)), doubled.
    t = np.array([0.1, 0.5, 0.9])
    assert obf_spending(t, 0.05) == pytest.approx(2 * (2 - 2 * st.norm.cdf(st.norm.isf(0.0125) / np.sqrt(t))))


def test_total_error_under_h0_equals_alpha():
    for k in (2, 5, 20):
        fr = equal_looks(k)
        b = boundaries(fr, 0.05 / 6)
        assert stopping_probabilities(fr, b, 0.0).sum() == pytest.approx(0.05 / 6, rel=1e-4)


def test_monte_carlo_crossing_probability():
    # Independent check of the recursion: simulate Brownian motion at the looks.
    fr = np.array(equal_looks(20))
    b = boundaries(fr, 0.05)
    rng = np.random.default_rng(0)
    inc = rng.normal(size=(200_000, 20)) * np.sqrt(np.diff(np.concatenate([[0], fr])))
    z = np.cumsum(inc, axis=1) / np.sqrt(fr)
    crossed = (np.abs(z) >= b).any(axis=1).mean()
    assert crossed == pytest.approx(0.05, abs=0.0025)


def test_power_and_expected_size_under_alternative():
    # Drift giving 80% power to the fixed test; OBF keeps power close and stops early on average.
    drift = st.norm.isf(0.025) + st.norm.isf(0.2)
    r = expected_fraction(equal_looks(5), 0.05, drift)
    assert 0.76 < r["power"] < 0.80
    assert r["expected_fraction"] < 0.85


@pytest.mark.parametrize("bad", [(), (0.5,), (0.5, 0.4, 1.0), (0.0, 1.0), (0.5, 1.2)])
def test_bad_fractions(bad):
    with pytest.raises(ValueError, match="look fractions"):
        check_fractions(bad)
