"""The paper-in-miniature's test of the paper's claims: directions, Holm, and the report's tables.

Independent references: statsmodels' ``sign_test`` (its own binomial computation) and
``multipletests(method="holm")``.
"""

import numpy as np
import pytest
from statsmodels.stats.descriptivestats import sign_test as sm_sign_test
from statsmodels.stats.multitest import multipletests

from generation.toyworld.paper import PAPER_CLAIMS, paper_expectations, report_markdown

CONDS = ["NONE", "ITC", "ITM", "CAP", "SHIFT", "BLEND"]


def _ev(n_per_cat=12):
    cats = ["Binding"] * n_per_cat + ["Positional"] * n_per_cat + ["Objects"] * n_per_cat
    n = len(cats)
    ev = {c: {"hits": np.zeros(n), "realism": np.full(n, 0.5), "alignment": np.full(n, 0.5)} for c in CONDS}
    b = np.arange(n_per_cat)
    # Binding: ITM wins 10 pairs, loses 0 (2 ties) -> agrees; SHIFT ties all.
    # Positional: ITC hits every image, CAP none -> CAP vs ITC there disagrees
    ev["ITM"]["hits"][b[:10]] = 1
    ev["ITC"]["hits"][b[:10]] = 0
    ev["ITC"]["hits"][b[10:]] = 1
    ev["ITM"]["hits"][b[10:]] = 1
    ev["ITC"]["hits"][n_per_cat: 2 * n_per_cat] = 1
    ev["SHIFT"]["hits"][:] = ev["ITC"]["hits"]
    # realism: SHIFT above CAP on every image (agrees), equal to ITC (not shown)
    ev["SHIFT"]["realism"][:] = 0.7
    ev["CAP"]["realism"][:] = 0.4
    ev["ITC"]["realism"][:] = 0.7
    return ev, cats


def test_verdicts_follow_the_direction_and_holm():
    ev, cats = _ev()
    rows = paper_expectations(ev, cats, CONDS)
    assert len(rows) == len(PAPER_CLAIMS)
    by = {(r["category"], r["better"], r["worse"], r["criterion"]): r for r in rows}
    itm = by[("Binding", "ITM", "ITC", "hits")]
    assert (itm["wins"], itm["losses"], itm["ties"]) == (10, 0, 2)
    cap = by[("Positional", "CAP", "ITC", "hits")]
    assert (cap["wins"], cap["losses"], cap["ties"]) == (0, 12, 0)
    # raw p against statsmodels' sign test: the median of the differences, ties dropped
    d = ev["ITM"]["hits"][:12] - ev["ITC"]["hits"][:12]
    assert itm["p"] == pytest.approx(sm_sign_test(d[d != 0], 0)[1], rel=1e-9)
    holm = multipletests([r["p"] for r in rows], method="holm")[1]
    assert [r["p_holm"] for r in rows] == pytest.approx(list(holm), rel=1e-9)
    assert itm["verdict"] == "agrees" and cap["verdict"] == "disagrees"
    assert by[("Binding", "SHIFT", "ITC", "hits")]["verdict"] == "not shown"  # all ties: nothing to test
    assert by[("all", "SHIFT", "CAP", "realism")]["verdict"] == "agrees"
    assert by[("all", "SHIFT", "ITC", "realism")]["verdict"] == "not shown"


def test_the_holm_threshold_decides_at_alpha():
    """A claim whose adjusted p lands just under or just over 0.05 flips between agrees and not shown."""
    for wins, expected in ((9, "agrees"), (5, "not shown")):
        ev, cats = _ev()
        ev["ITM"]["hits"][:] = 0
        ev["ITM"]["hits"][:wins] = 1
        ev["ITC"]["hits"][:] = 0
        rows = paper_expectations(ev, cats, CONDS)
        itm = next(r for r in rows if r["category"] == "Binding" and r["better"] == "ITM")
        assert itm["verdict"] == expected, itm


def test_conditions_left_out_leave_their_claims_out():
    ev, cats = _ev()
    rows = paper_expectations(ev, cats, ["NONE", "ITC", "SHIFT"])
    assert {(r["better"], r["worse"]) for r in rows} == {("SHIFT", "ITC")}


def test_the_shipped_report_is_what_its_results_render_to():
    """REPORT.md is generated from results.json (and the weights manifest): it cannot drift from them."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "docs" / "toyworld"
    results = json.loads((root / "results.json").read_text())
    assert report_markdown(results, results["conditions"]) == (root / "REPORT.md").read_text()
    for cat in ("Binding", "Positional", "Colors"):
        assert set(results["hit_rate_by_category"][cat]) == set(results["conditions"])
    assert sum(results["n_by_category"].values()) == results["n_images_per_condition"]
    # each category cell carries its Wilson interval (statsmodels computes it independently)
    from statsmodels.stats.proportion import proportion_confint

    n = results["n_by_category"]["Colors"]
    rate = results["hit_rate_by_category"]["Colors"]["CAP"]
    lo, hi = proportion_confint(round(rate * n), n, method="wilson")
    row = next(line for line in (root / "REPORT.md").read_text().splitlines() if line.startswith("| Colors |"))
    assert f"({lo:.2f}–{hi:.2f})" in row.split(" | ")[4], row


def test_the_toy_preset_is_the_reports_spec():
    """The demo and every toy round render with the settings the report measured (the pilot's scales,
    self-recurrence 3): a changed preset or a regenerated report without the other fails here."""
    import json
    from pathlib import Path

    from generation.presets import PRESETS
    from generation.spec import GenerationSpec

    results = json.loads((Path(__file__).resolve().parents[2] / "docs" / "toyworld" / "results.json").read_text())
    assert GenerationSpec.from_dict(results["spec"]) == GenerationSpec.toy()
    assert GenerationSpec.from_dict(PRESETS["toy"].values) == GenerationSpec.toy()
    assert GenerationSpec.toy().recurrence == 3


def test_relation_response_compares_a_relation_with_its_opposite():
    """Two seeds, unguided and CAP: one row per condition and pair, sign test against scipy's."""
    from scipy.stats import binomtest

    from generation.pipeline import load_models
    from generation.spec import GenerationSpec
    from generation.toyworld.oracle import load_oracle
    from generation.toyworld.relation_response import PAIRS, measure

    spec = GenerationSpec.toy()
    rows = measure(load_models(spec, weights_dir=None, device="cpu"), spec, load_oracle(), [0, 1], conditions=("NONE", "CAP"))
    assert [(r["condition"], r["relations"]) for r in rows] == [(c, list(p[3])) for c in ("NONE", "CAP") for p in PAIRS]
    for r in rows:
        assert 0 <= r["wins"] <= r["n"] <= 2
        assert r["p"] == (binomtest(r["wins"], r["n"], 0.5).pvalue if r["n"] else 1.0)


@pytest.mark.parametrize("bad", ["1,2", "a,b,c", "0,1,5", "1,0.1,5", "0.01,1,99", "0.01,1,5\x00"])
def test_pilot_scales_junk_is_refused_with_what_to_give(bad, capsys, tmp_path):
    from generation.toyworld.paper import main

    with pytest.raises(SystemExit) as exit_:
        main(["--pilot-scales", bad, "--out", str(tmp_path / "report")])
    assert exit_.value.code == 2
    assert "give LOW,HIGH,N" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_relation_response_needs_a_seed(bad, capsys):
    from generation.toyworld.relation_response import main

    with pytest.raises(SystemExit) as exit_:
        main(["--seeds", bad])
    assert exit_.value.code == 2 and "at least 1 seed" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["", ",", "ITC,FOO", "itc", "NONE\x00"])
def test_relation_response_junk_conditions_are_refused(bad, capsys):
    from generation.toyworld.relation_response import main

    with pytest.raises(SystemExit) as exit_:
        main(["--conditions", bad])
    assert exit_.value.code == 2 and "choose from NONE, ITC, ITM, CAP, SHIFT, BLEND" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "11", "-1"])
def test_paper_recurrence_out_of_range_is_refused(bad, capsys, tmp_path):
    from generation.toyworld.paper import main

    with pytest.raises(SystemExit) as exit_:
        main(["--recurrence", bad, "--out", str(tmp_path / "report")])
    assert exit_.value.code == 2 and "--recurrence" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
