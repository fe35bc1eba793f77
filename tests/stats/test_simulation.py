"""The whole pipeline's power and size by simulation (STUDY.md 4.8, last bullet)."""

import doctest

import numpy as np

import studyapp.stats.agreement
import studyapp.stats.binomial
import studyapp.stats.bt
from studyapp.stats import AnalysisSettings, analyse, simulate_votes

NO_BOOT = AnalysisSettings(bootstrap_replicates=0, bt_replicates=0)


def _study_pvalues(p: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # 300 non-tie votes per comparison x criterion (3 x 2 = 6 tests, Holm over the family).
    t = simulate_votes(trials_per_baseline=300, n_prompts=100, n_annotators=60, preference=p, seed=seed)
    results = analyse(t, NO_BOOT)["results"]
    assert all(c["n"] == 300 for c in results["all"]["preference"])
    # The declared pipeline is what is tested; its side-rate rule now and then drops an honest
    # annotator with few votes, so a cell may have slightly fewer than 300 votes.
    cells = results["declared"]["preference"]
    # p_holm: Holm over the clustered primary test (the verdict); p_binomial: the secondary test.
    return np.array([c["p_binomial"] for c in cells]), np.array([c["p_holm"] for c in cells])


def test_power_at_065_with_300_votes():
    # Exact power at n = 300, p = 0.65 and alpha = 0.05/6 is about 0.99 (studyapp.stats.exact_power);
    # the brief asks for >= 90% of 200 seeded studies.
    rejected = np.array([_study_pvalues(0.65, seed)[1] <= 0.05 for seed in range(200)])
    assert rejected.mean() >= 0.90
    assert rejected[:, 0].mean() >= 0.90  # one test of the family on its own


def test_size_at_050():
    # Under H0 the exact test has size <= 0.05 and Holm keeps the family-wise rate <= 0.05;
    # allow up to 7% in 200 seeded studies.
    raw, fam = [], []
    for seed in range(200):
        p, p_holm = _study_pvalues(0.5, 1000 + seed)
        raw.append(p[0] <= 0.05)
        fam.append((p_holm <= 0.05).any())
    assert np.mean(raw) <= 0.07
    assert np.mean(fam) <= 0.07


def test_docstring_examples():
    for mod in (studyapp.stats.binomial, studyapp.stats.bt, studyapp.stats.agreement):
        result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


def test_clustered_verdict_keeps_its_error_rate_where_the_binomial_does_not():
    # Issue 12: annotators and prompts each with a Beta(5, 5) tendency, 300 votes per cell, no
    # true preference. The naive verdict (pooled binomial + Holm) fires in about a quarter of such
    # studies; the clustered one, watched at 20 looks or not, near 5%. 150 seeded studies here
    # (the full 1,000-study run is tests/benchmarks/validate_inference.py, numbers in
    # docs/statistics.md); the bound leaves room for Monte Carlo error (sd ~ 1.8%).
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from validate_inference import run_scenario

    r = run_scenario("both_beta55", studies=150, votes=300, seed0=5000)
    assert r["fwer_naive"]["rate"] >= 0.15
    assert r["fwer_primary"]["rate"] <= 0.09
    assert r["fwer_monitored"]["rate"] <= 0.09
