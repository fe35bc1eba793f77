"""analyse(): counts, tests, tie rules, exclusions, bootstraps, QC, categories."""

import dataclasses
import json

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from studyapp.stats import (
    AnalysisSettings,
    Exclusions,
    analyse,
    annotator_qc,
    category_breakdown,
    resample_totals,
    simulate_votes,
)
from studyapp.stats.resample import STREAM_PROMPTS, rng_for

from .helpers import attention, table, vote

FAST = AnalysisSettings(bootstrap_replicates=0, bt_replicates=0)


def _cell(summary, subset, baseline, criterion):
    return next(
        c
        for c in summary["results"][subset]["preference"]
        if c["baseline"] == baseline and c["criterion"] == criterion
    )


@pytest.fixture
def small():
    """SHIFT vs ITC realism: 7 wins, 3 losses, 2 ties (SHIFT on either side); one attention
    failure (annotator 'bad'); one fast vote; practice rows that must be ignored."""
    rows = []
    outcomes = ["a"] * 7 + ["b"] * 3 + ["tie"] * 2
    for i, o in enumerate(outcomes):
        rows.append(vote(annotator=f"good{i % 3}", prompt=f"p{i}", outcome=o, a_left=i % 2 == 0, category="animals" if i < 6 else "text"))
    rows += [attention(annotator="good0", correct=True), attention(annotator="good1", correct=True)]
    # 'bad' fails 2 of 3 attention checks and votes for ITC twice.
    rows += [attention(annotator="bad", correct=c) for c in (True, False, False)]
    rows += [vote(annotator="bad", prompt="p0", outcome="b"), vote(annotator="bad", prompt="p1", outcome="b")]
    rows.append(vote(annotator="good2", prompt="p3", outcome="a", response_ms=300))  # fast
    rows += [vote(annotator="good0", prompt="p9", outcome="b", kind="practice") for _ in range(5)]
    # SHIFT vs CAP alignment, BLEND empty.
    rows += [vote(annotator="good1", prompt=f"p{i}", b="CAP", criterion="alignment", outcome="a") for i in range(4)]
    return table(rows)


def test_counts_rates_and_exact_test(small):
    s = analyse(small, FAST)
    c = _cell(s, "all", "ITC", "realism")
    assert (c["wins"], c["losses"], c["ties"], c["n"]) == (8, 5, 2, 15)
    assert c["rate_excl_ties"] == pytest.approx(8 / 13, rel=1e-5)
    assert c["rate_ties_half"] == pytest.approx(9 / 15, rel=1e-5)
    assert c["rate"] == c["rate_excl_ties"]  # tie_rule "exclude"
    # Reference: scipy.stats.binomtest(8, 13).pvalue and its proportion_ci.
    ref = binomtest(8, 13)
    assert c["p_binomial"] == pytest.approx(ref.pvalue, rel=1e-5)
    assert c["ci_exact"] == pytest.approx(list(ref.proportion_ci(method="exact")), rel=1e-5)
    assert c["ci_wilson"] == pytest.approx(list(ref.proportion_ci(method="wilson")), rel=1e-5)
    # Declared: 'bad' (attention 1/3 < 0.8) and the 300 ms vote are gone.
    d = _cell(s, "declared", "ITC", "realism")
    assert (d["wins"], d["losses"], d["ties"]) == (7, 3, 2)
    empty = _cell(s, "declared", "BLEND", "realism")
    assert empty["n"] == 0 and empty["p_value"] is None and empty["p_binomial"] is None and empty["rate"] is None and empty["ci"] == [None, None]


def test_holm_over_the_nonempty_family(small):
    s = analyse(small, FAST)
    cells = s["results"]["declared"]["preference"]
    tested = [c for c in cells if c["p_binomial"] is not None]
    # Reference: statsmodels multipletests(method='holm') over the cells that have votes.
    ref = multipletests([c["p_binomial"] for c in tested], method="holm")[1]
    assert [c["p_binomial_holm"] for c in tested] == pytest.approx(list(ref), rel=1e-5)
    # The verdict is the clustered test's: too few annotators and prompts here for one.
    assert all(c["p_value"] is None and not c["significant"] and c["verdict"] == "no_verdict" for c in cells)
    assert all("too few clusters" in c["primary"]["note"] for c in tested)


def test_exclusion_report(small):
    s = analyse(small, FAST)
    ex = s["exclusions"]
    assert ex["attention"] == {"annotators": 1, "votes": 2}
    assert ex["fast_votes"] == {"votes": 1}
    assert ex["side_rate"] == {"annotators": 0, "votes": 0}
    assert ex["total"]["votes"] == 3 and ex["total"]["annotators"] == 1
    assert ex["excluded_annotators"] == [{"annotator": "bad", "reasons": ["attention"]}]
    assert s["data"] == {"rows": 29, "regular_votes": 19, "attention_votes": 5, "practice_votes": 5}
    assert s["results"]["all"]["votes"] == 19 and s["results"]["declared"]["votes"] == 16


def test_tie_rule_half_changes_headline_only(small):
    s = analyse(small, AnalysisSettings(tie_rule="half", bootstrap_replicates=0, bt_replicates=0))
    c = _cell(s, "all", "ITC", "realism")
    assert c["rate"] == c["rate_ties_half"] == pytest.approx(9 / 15, rel=1e-5)
    assert c["ci"] == c["ci_wilson_ties_half"]
    assert c["p_binomial"] == pytest.approx(binomtest(8, 13).pvalue, rel=1e-5)  # always on non-ties


def test_side_rate_rule():
    # 'line' picks left in 25 of 25 votes (>= 0.9 of >= 20 votes); 'ok' alternates.
    rows = [vote(annotator="line", prompt=f"p{i}", outcome="a" if i % 2 else "b", a_left=i % 2 == 1) for i in range(25)]
    rows += [vote(annotator="ok", prompt=f"p{i}", outcome="a", a_left=i % 2 == 0) for i in range(25)]
    t = table(rows)
    qc = {r["annotator"]: r for r in annotator_qc(t)}
    assert qc["line"]["left"] == 25 and qc["line"]["side_rate"] == 1.0 and qc["line"]["reasons"] == ["side_rate"]
    # Reference: scipy.stats.binomtest(25, 25).pvalue for the left-choice rate.
    assert qc["line"]["left_p"] == pytest.approx(binomtest(25, 25).pvalue, rel=1e-5)
    assert not qc["ok"]["excluded"] and qc["ok"]["left_rate"] == pytest.approx(13 / 25, rel=1e-5)
    s = analyse(t, FAST)
    assert s["exclusions"]["side_rate"] == {"annotators": 1, "votes": 25}
    off = dataclasses.replace(FAST, exclusions=Exclusions(max_side_rate=None))
    assert analyse(t, off)["exclusions"]["total"]["votes"] == 0


def test_annotator_qc_fields(small):
    qc = {r["annotator"]: r for r in annotator_qc(small)}
    bad = qc["bad"]
    assert bad["attention_checks"] == 3 and bad["attention_correct"] == 1
    assert bad["attention_accuracy"] == pytest.approx(1 / 3, rel=1e-5)
    assert bad["excluded"] and bad["reasons"] == ["attention"]
    g2 = qc["good2"]
    assert g2["attention_checks"] == 0 and g2["attention_accuracy"] is None and not g2["excluded"]
    assert g2["fast_votes"] == 1 and g2["fast_share"] == pytest.approx(1 / 5)
    # By hand: good2's response times are 3000 x 4 and 300 -> median 3000.
    assert g2["median_response_ms"] == 3000


def test_position_bias_counts(small):
    s = analyse(small, FAST)
    pb = s["results"]["all"]["position_bias"]["all_criteria"]
    assert pb["left"] + pb["right"] + pb["ties"] == 19
    assert pb["p_value"] == pytest.approx(binomtest(pb["left"], pb["left"] + pb["right"]).pvalue, rel=1e-5)
    pos = _cell(s, "all", "ITC", "realism")["position"]
    assert pos["focal_left"]["wins"] + pos["focal_right"]["wins"] == 8


def test_detects_position_bias_in_simulation():
    t = simulate_votes(trials_per_baseline=400, preference=0.5, side_bias=0.8, seed=5)
    pb = analyse(t, FAST)["results"]["all"]["position_bias"]["all_criteria"]
    assert pb["left_rate"] > 0.6 and pb["p_value"] < 1e-6


def test_resample_totals_equals_explicit_loop():
    # Reference: the plain cluster bootstrap, written as a loop over replicates with the same
    # draws (index resampling of clusters, then summing their counts).
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, (13, 4, 3))
    got = resample_totals(counts, 50, rng_for(7, STREAM_PROMPTS), chunk=40)
    draws = rng_for(7, STREAM_PROMPTS).integers(0, 13, size=(50, 13))
    ref = np.stack([counts[d].sum(axis=0) for d in draws])
    np.testing.assert_array_equal(got, ref)


def test_prompt_bootstrap_interval_close_to_wilson_with_independent_votes():
    # One vote per prompt: the prompt bootstrap is the ordinary bootstrap of a proportion, whose
    # percentile interval is close to Wilson's for n = 600 (general knowledge; tolerance 0.015).
    t = simulate_votes(trials_per_baseline=300, n_prompts=100_000, n_annotators=1000, preference=0.6, seed=3)
    s = analyse(t, AnalysisSettings(bootstrap_replicates=2000, bt_replicates=0))
    c = _cell(s, "all", "ITC", "realism")
    np.testing.assert_allclose(c["ci_bootstrap_prompt"], c["ci_wilson"], atol=0.015)


def test_prompt_bootstrap_wider_with_prompt_effects():
    t = simulate_votes(trials_per_baseline=1500, n_prompts=30, n_annotators=300, preference=0.6, prompt_sd=1.0, seed=4)
    s = analyse(t, AnalysisSettings(bootstrap_replicates=500, bt_replicates=0))
    c = _cell(s, "all", "ITC", "realism")
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(c["ci_bootstrap_prompt"]) > 1.5 * width(c["ci_wilson"])


def test_deterministic_and_row_order_free():
    t = simulate_votes(trials_per_baseline=200, attention_per_annotator=4, careless_annotators=3, tie_rate=0.2, seed=8)
    a = analyse(t, AnalysisSettings(bootstrap_replicates=200, bt_replicates=100))
    b = analyse(t, AnalysisSettings(bootstrap_replicates=200, bt_replicates=100))
    assert json.dumps(a) == json.dumps(b)
    perm = np.random.default_rng(0).permutation(len(t))
    c = analyse(t.take(perm), AnalysisSettings(bootstrap_replicates=200, bt_replicates=100))
    assert json.dumps(a) == json.dumps(c)
    other_seed = analyse(t, AnalysisSettings(bootstrap_replicates=200, bt_replicates=100, bootstrap_seed=1))
    assert json.dumps(a) != json.dumps(other_seed)


def test_summary_is_strict_json():
    t = simulate_votes(trials_per_baseline=50, seed=1)
    json.dumps(analyse(t), allow_nan=False)


def test_category_breakdown_bh():
    t = simulate_votes(trials_per_baseline=300, n_categories=4, preference=0.62, seed=2)
    rows = category_breakdown(t, FAST, declared=False)
    assert len(rows) == 3 * 2 * 4
    ref = multipletests([r["p_value"] for r in rows], method="fdr_bh")[1]
    assert [r["p_bh"] for r in rows] == pytest.approx(list(ref), rel=1e-4)
    for r in rows:
        assert r["p_value"] == pytest.approx(binomtest(r["wins"], r["wins"] + r["losses"]).pvalue, rel=1e-5)
    summary_cats = analyse(t, FAST)["results"]["all"]["categories"]
    assert summary_cats == rows


def test_focal_may_be_objective_b():
    # In all-pairs rounds a SHIFT-vs-ITC item may list ITC first.
    rows = [vote(a="ITC", b="SHIFT", prompt=f"p{i}", outcome="b") for i in range(5)]
    rows.append(vote(a="ITC", b="SHIFT", prompt="p9", outcome="a"))
    c = _cell(analyse(table(rows), FAST), "all", "ITC", "realism")
    assert (c["wins"], c["losses"]) == (5, 1)


def test_annotators_kept_counts_only_annotators_with_a_kept_vote():
    # Issue 12 audit: an annotator whose every vote fell under the speed floor was counted as kept.
    rows = [vote(annotator="slow", prompt=f"p{i}") for i in range(3)]
    rows += [vote(annotator="fast", prompt=f"p{i}", response_ms=100) for i in range(3)]
    rows += [vote(annotator="mixed", prompt="p0", response_ms=100), vote(annotator="mixed", prompt="p1")]
    total = analyse(table(rows), FAST)["exclusions"]["total"]
    assert total["annotators_kept"] == 2 and total["votes_kept"] == 4 and total["annotators"] == 0
