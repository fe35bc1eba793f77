"""Planning: units, pilot design effect, monitoring inflation, and the README's numbers."""

import json
import math

import numpy as np
import pytest
from scipy import stats as st

from studyapp.stats import simulate_votes, votes_needed, write_votes_csv
from studyapp.stats.__main__ import main
from studyapp.stats.planner import pilot_design_effect, plan_study
from studyapp.stats.sequential import equal_looks, expected_fraction


def test_readme_plan_06_with_the_default_six_tests_is_303(capsys):
    # README "Statistics and exports": --plan 0.6 with its default 6 tests (Holm's first step,
    # alpha/6) needs 303 non-tie votes (STUDY.md 4.8: "60% at alpha = 0.05/6 ... exact 303-312").
    assert main(["--plan", "0.6"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["non_tie_first"], plan["non_tie_stable"]) == (303, 312)
    assert plan["study"]["votes_per_cell"] == 312


def test_votes_needed_keeps_its_signature():
    # The new-round form calls it positionally by these names.
    r = votes_needed(0.6, power=0.8, alpha=0.05, n_tests=6, tie_rate=0.25, design_effect=2.0)
    assert r.votes_stable == math.ceil(312 * 2.0 / 0.75)


def test_units_follow_from_votes_per_cell():
    p = plan_study(0.65, design_effect=1.5, tie_rate=0.2, comparisons=3, trials_per_annotator=50,
                   seeds_per_prompt=2, votes_per_item=3)
    base = votes_needed(0.65, n_tests=6, tie_rate=0.2, design_effect=1.5)
    assert p.votes_per_cell == p.planned_votes_per_cell == base.votes_stable
    assert p.prompts == math.ceil(p.votes_per_cell / 6)
    assert p.trials == 3 * p.votes_per_cell and p.annotators == math.ceil(p.trials / 50)
    assert p.expected_votes_h1 is None and p.warnings == []


def test_min_cluster_warnings_at_the_threshold():
    # 0.9 needs few votes: 1 seed x 3 votes per item -> few prompts.
    small = plan_study(0.9, votes_per_item=3, trials_per_annotator=1000, min_clusters=10)
    assert any("prompts" in w for w in small.warnings) and any("annotators" in w for w in small.warnings)
    ok = plan_study(0.9, votes_per_item=1, trials_per_annotator=1, min_clusters=small.prompts * 3)
    assert ok.prompts == ok.votes_per_cell
    edge = plan_study(0.9, votes_per_item=1, trials_per_annotator=1, min_clusters=ok.prompts)
    assert not any("prompts" in w for w in edge.warnings)
    above = plan_study(0.9, votes_per_item=1, trials_per_annotator=1, min_clusters=ok.prompts + 1)
    assert any("prompts" in w for w in above.warnings)


def test_monitoring_inflation_keeps_power_and_saves_votes_under_h1():
    p = plan_study(0.6, looks=20)
    assert p.planned_votes_per_cell > p.votes_per_cell
    assert p.power_monitored == pytest.approx(0.8, abs=2e-3)
    assert p.expected_votes_h1 < p.votes_per_cell < p.planned_votes_per_cell
    assert p.expected_votes_h0 == pytest.approx(p.planned_votes_per_cell, rel=0.01)
    # Independent check of E[N | H1] by simulating the z process at the 20 looks.
    level = 0.05 / 6
    r = p.planned_votes_per_cell / p.votes_per_cell
    drift = (st.norm.isf(level / 2) + st.norm.ppf(0.8)) * math.sqrt(r)
    b = np.array(expected_fraction(equal_looks(20), level, drift)["boundaries"])
    fr = np.array(equal_looks(20))
    rng = np.random.default_rng(1)
    inc = rng.normal(size=(100_000, 20)) * np.sqrt(np.diff(np.concatenate([[0], fr]))) + drift * np.diff(np.concatenate([[0], fr]))
    z = np.cumsum(inc, axis=1) / np.sqrt(fr)
    hit = np.abs(z) >= b
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), 19)
    assert (fr[first].mean() * p.planned_votes_per_cell) == pytest.approx(p.expected_votes_h1, rel=0.01)


def test_pilot_design_effect_grows_with_clustering(tmp_path, capsys):
    flat = simulate_votes(trials_per_baseline=300, n_prompts=50, n_annotators=30, preference=0.5, seed=3)
    spread = simulate_votes(trials_per_baseline=300, n_prompts=50, n_annotators=30, preference=0.5,
                            annotator_beta=3, prompt_beta=3, seed=3)
    d_flat, d_spread = pilot_design_effect(flat)["design_effect"], pilot_design_effect(spread)["design_effect"]
    assert d_flat < 1.4 and d_spread > 2.0
    path = tmp_path / "pilot.csv"
    write_votes_csv(spread, path)
    assert main(["--plan", "0.6", "--pilot", str(path), "--looks", "5"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["design_effect"] == pytest.approx(d_spread) and plan["pilot"]["design_effect"] == pytest.approx(d_spread)
    assert plan["study"]["looks"] == 5 and plan["study"]["expected_votes_h1"] < plan["study"]["planned_votes_per_cell"]


def test_pilot_without_usable_cells_is_an_error(tmp_path, capsys):
    t = simulate_votes(trials_per_baseline=4, n_prompts=2, n_annotators=2, seed=1)
    path = tmp_path / "tiny.csv"
    write_votes_csv(t, path)
    assert main(["--plan", "0.6", "--pilot", str(path)]) == 2
    assert "--pilot" in capsys.readouterr().err


@pytest.mark.parametrize("kw", [{"looks": 0}, {"trials_per_annotator": 0}, {"votes_per_item": 1.5}, {"comparisons": True}])
def test_plan_validates(kw):
    with pytest.raises(ValueError):
        plan_study(0.6, **kw)
