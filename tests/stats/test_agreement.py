"""Krippendorff's alpha (nominal) against published values and the krippendorff package."""

import krippendorff
import numpy as np
import pytest

from studyapp.stats import AnalysisSettings, alpha_from_matrix, analyse, krippendorff_alpha_nominal

from .helpers import table, vote


def test_krippendorff_2011_binary_two_coders():
    # Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section A (binary data,
    # two observers, no missing data): alpha = 0.095.
    m = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]
    assert alpha_from_matrix(m).alpha == pytest.approx(0.095, abs=5e-4)


def test_krippendorff_2011_nominal_missing_data():
    # Krippendorff (2011), section C (nominal data, four observers, 12 units, missing values):
    # alpha = 0.743.
    m = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    r = alpha_from_matrix(m)
    assert r.alpha == pytest.approx(0.743, abs=5e-4)
    # Same paper: 11 pairable units (unit 12 has one value), n = 40 pairable values.
    assert (r.units, r.values) == (11, 40)


def test_matches_krippendorff_package_on_random_data():
    # Reference: krippendorff.alpha(level_of_measurement='nominal') (fast-krippendorff 0.9.0).
    rng = np.random.default_rng(3)
    for _ in range(10):
        m = rng.integers(0, 3, (5, 40)).astype(float)
        m[rng.random(m.shape) < 0.4] = np.nan
        ref = krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
        assert alpha_from_matrix(m).alpha == pytest.approx(ref, rel=1e-10)


def test_perfect_agreement_and_percent_agreement():
    r = krippendorff_alpha_nominal([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2])
    assert r.alpha == 1.0 and r.percent_agreement == 1.0
    # By hand: unit 0 {a, a, b}: 2 agreeing ordered pairs of 6; unit 1 {b, b}: 2 of 2 -> 4/8.
    r = krippendorff_alpha_nominal([0, 0, 0, 1, 1], [0, 0, 1, 1, 1])
    assert r.percent_agreement == 0.5


def test_analysis_units_are_items_per_criterion():
    # Two items x 3 annotators, realism: item 1 all "a"; item 2 a, b, tie.
    rows = [vote(annotator=f"ann{i}", prompt="p1", outcome="a", a_left=i % 2 == 0) for i in range(3)]
    rows += [vote(annotator=f"ann{i}", prompt="p2", outcome=o) for i, o in enumerate(["a", "b", "tie"])]
    # A repeated vote by ann0 on p2 (side-swapped repeat) is dropped: alpha pairs different coders.
    rows.append(vote(annotator="ann0", prompt="p2", outcome="b", a_left=False))
    got = analyse(table(rows), AnalysisSettings(bootstrap_replicates=0, bt_replicates=0))
    ag = got["results"]["all"]["agreement"]["realism"]
    ref = krippendorff.alpha(reliability_data=[[0, 0], [0, 1], [0, 2]], level_of_measurement="nominal")
    assert ag["alpha"] == pytest.approx(ref, abs=1e-6) and ag["units"] == 2
