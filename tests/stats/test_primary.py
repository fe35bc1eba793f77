"""The family verdict: Holm on the clustered test, fragility, and the declared monitoring."""

import json

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from studyapp.stats import AnalysisSettings, SettingsError, analyse, simulate_votes
from studyapp.stats.config import Monitoring
from studyapp.stats.primary import family_verdict
from studyapp.stats.sequential import boundaries

FAST = AnalysisSettings(bootstrap_replicates=0, bt_replicates=0)


def _arrays(table):
    f = table.factor
    a = f("objective_a").codes
    cell = (f("objective_b").codes - 1) * 2 + f("criterion").codes
    rank = np.empty(len(cell), np.int64)
    for c in range(6):
        idx = np.flatnonzero(cell == c)
        rank[idx] = np.arange(len(idx))
    return {"cell": cell.astype(np.int64), "y": (f("winner").codes == a).astype(float),
            "focal_left": f("left_objective").codes == a, "annotator": f("annotator").codes.astype(np.int64),
            "prompt": f("prompt_id").codes.astype(np.int64), "rank": rank}


def _ref_p(y, left, ann, pr):
    """Reference p of one cell: statsmodels two-way cluster logit (larger of two-way and one-way
    variances), t with G-1 df."""
    X = np.column_stack([np.ones(len(y)), np.where(left, 1.0, -1.0)])
    v = []
    for g in (np.column_stack([ann, pr]), ann, pr):
        fit = sm.Logit(y, X).fit(disp=0, cov_type="cluster", cov_kwds={"groups": g})
        v.append(fit.cov_params()[0, 0])
    df = min(len(np.unique(ann)), len(np.unique(pr))) - 1
    return 2 * st.t.sf(abs(fit.params[0]) / np.sqrt(max(v)), df)


def test_analyse_holm_runs_on_the_clustered_p_values():
    t = simulate_votes(trials_per_baseline=120, n_prompts=20, n_annotators=15, preference=0.7, seed=3)
    s = analyse(t, FAST)
    cells = s["results"]["all"]["preference"]
    arr = _arrays(t)
    ref = []
    for k in range(6):
        m = arr["cell"] == k
        ref.append(_ref_p(arr["y"][m], arr["focal_left"][m], arr["annotator"][m], arr["prompt"][m]))
    assert [c["p_value"] for c in cells] == pytest.approx(ref, rel=1e-4)
    holm_ref = multipletests(ref, method="holm")[1]
    assert [c["p_holm"] for c in cells] == pytest.approx(list(holm_ref), rel=1e-4)
    assert [c["significant"] for c in cells] == list(holm_ref <= 0.05)
    assert all(c["verdict"] == ("for" if c["significant"] else "no_difference") for c in cells)
    # Secondary columns: the exact binomial, labelled as such.
    c = cells[0]
    assert c["p_binomial"] == pytest.approx(st.binomtest(c["wins"], c["wins"] + c["losses"]).pvalue, rel=1e-5)


def test_fragility_is_the_first_flip_count_that_removes_the_verdict():
    t = simulate_votes(trials_per_baseline=80, n_prompts=15, n_annotators=12, preference=0.75, seed=4)
    arr = _arrays(t)
    v = family_verdict(arr, 6, FAST)
    assert v["significant"].any()
    for k in np.flatnonzero(v["significant"]):
        m = v["fragility"][k]
        assert m is not None and m >= 1
        # Hand recomputation with statsmodels: flip the first m (then m - 1) focal wins of the
        # cell in (annotator, prompt, side) order and redo Holm over the six cells.
        idx = np.flatnonzero((arr["cell"] == k) & (arr["y"] == 1))
        idx = idx[np.lexsort((arr["focal_left"][idx], arr["prompt"][idx], arr["annotator"][idx]))]

        def adj_after(n_flip):
            y = arr["y"].copy()
            y[idx[:n_flip]] = 0.0
            p = np.array(v["tests"].p_value)
            sel = arr["cell"] == k
            p[k] = _ref_p(y[sel], arr["focal_left"][sel], arr["annotator"][sel], arr["prompt"][sel])
            return multipletests(p, method="holm")[1][k]

        assert adj_after(m) > 0.05
        assert adj_after(m - 1) <= 0.05


def _monitored(planned, looks=5):
    return AnalysisSettings(bootstrap_replicates=0, bt_replicates=0, monitoring=Monitoring(planned_votes=planned, looks=looks))


def test_monitoring_decides_only_at_looks_and_says_when_next():
    t = simulate_votes(trials_per_baseline=130, n_prompts=30, n_annotators=20, preference=0.5, seed=8)
    arr = _arrays(t)
    v = family_verdict(arr, 6, _monitored(planned=400, looks=4))
    for c in v["monitoring"]["cells"]:
        assert c["looks_done"] == 1  # 130 votes: the first look is at 100, the second at 200
        assert c["status"] == "continue" and c["next_look_votes"] == 200
        assert c["next_look_boundary"] == pytest.approx(boundaries((0.25, 0.5, 0.75, 1.0), 0.05 / 6)[1])


def test_monitoring_for_and_against_and_end_without_difference():
    pref = {("ITC", "realism"): 0.85, ("ITC", "alignment"): 0.15}
    t = simulate_votes(trials_per_baseline=200, n_prompts=30, n_annotators=20, preference={
        **{(b, c): 0.5 for b in ("ITC", "CAP", "BLEND") for c in ("realism", "alignment")}, **pref}, seed=2)
    arr = _arrays(t)
    v = family_verdict(arr, 6, _monitored(planned=200, looks=4))
    st_ = [c["status"] for c in v["monitoring"]["cells"]]
    assert st_[0] == "for" and st_[1] == "against"
    assert all(s in ("no_difference", "for", "against") for s in st_[2:])
    assert v["monitoring"]["cells"][0]["decided_at_votes"] in (50, 100, 150, 200)
    # The summary flag follows the sequential decision.
    assert list(v["significant"][:2]) == [True, True]


def test_holm_recycling_uses_the_larger_level_after_a_decision():
    # One cell overwhelming, the others at a z between the alpha/6 and alpha/5 boundaries at the
    # single look: recycling decides the second one, Bonferroni alone would not.
    b6, b5 = boundaries((1.0,), 0.05 / 6)[0], boundaries((1.0,), 0.05 / 5)[0]
    assert b5 < b6
    from studyapp.stats import primary

    class T:  # the statistic at the look, as clustered_tests would give it
        def __init__(self, z):
            self.z = np.array(z)

        def z_equivalent(self):
            return self.z

    z_mid = (b5 + b6) / 2
    orig = primary._tests
    primary._tests = lambda arr, mask, n, s, index=None: T([10.0, z_mid, 0, 0, 0, 0])
    try:
        arr = {"cell": np.repeat(np.arange(6), 10), "rank": np.tile(np.arange(10), 6)}
        mon = primary.monitor(arr, 6, _monitored(planned=10, looks=1), index={})
    finally:
        primary._tests = orig
    assert [c["status"] for c in mon["cells"][:3]] == ["for", "for", "no_difference"]


def test_monitoring_settings_round_trip_and_are_validated():
    s = _monitored(planned=300, looks=20)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["monitoring"] == {"planned_votes": 300, "looks": 20, "spending": "obrien_fleming"}
    assert AnalysisSettings.from_dict(d) == s
    with pytest.raises(SettingsError) as e:
        AnalysisSettings.from_dict({"monitoring": {"planned_votes": 0, "looks": 0, "spending": "pocock", "x": 1}})
    msg = str(e.value)
    assert "monitoring.planned_votes" in msg and "monitoring.looks" in msg and "monitoring.spending" in msg
    assert "monitoring.x: unknown" in msg
    with pytest.raises(SettingsError, match="planned_votes: required"):
        AnalysisSettings.from_dict({"monitoring": {}})
    with pytest.raises(SettingsError, match="at most one look per vote"):
        AnalysisSettings.from_dict({"monitoring": {"planned_votes": 3, "looks": 4}})
    assert AnalysisSettings.from_dict({"monitoring": {"planned_votes": 4, "looks": 4}}).monitoring.look_votes() == [1, 2, 3, 4]
    assert AnalysisSettings().monitoring is None and AnalysisSettings().figure_interval == "primary"


def test_analyse_with_monitoring_is_independent_of_row_order():
    t = simulate_votes(trials_per_baseline=60, n_prompts=12, n_annotators=12, preference=0.7, seed=1)
    s = _monitored(planned=60, looks=3)
    a = analyse(t, s)
    perm = np.random.default_rng(0).permutation(len(t))
    b = analyse(t.take(perm), s)
    assert a["results"] == b["results"]
    assert a["results"]["declared"]["preference"][0]["monitoring"]["looks_done"] == 3


def test_looks_count_ties_too():
    # 100 votes per cell of which about 40% ties: with 4 looks of 25 votes, all 4 are reached.
    t = simulate_votes(trials_per_baseline=100, n_prompts=20, n_annotators=15, preference=0.5, tie_rate=0.4, seed=5)
    s = _monitored(planned=100, looks=4)
    cells = analyse(t, s)["results"]["all"]["preference"]
    assert all(c["n"] == 100 and c["ties"] > 20 for c in cells)
    assert all(c["monitoring"]["looks_done"] == 4 for c in cells)
    s3 = _monitored(planned=101, looks=4)  # the last look at 101 votes is not reached
    assert all(c["monitoring"]["looks_done"] == 3 and c["monitoring"]["next_look_votes"] == 101
               for c in analyse(t, s3)["results"]["all"]["preference"])
