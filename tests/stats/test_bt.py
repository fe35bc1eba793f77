"""Bradley-Terry fits against closed forms and statsmodels' logistic regression."""

import numpy as np
import pytest
import statsmodels.api as sm

from studyapp.stats import AnalysisSettings, analyse, bt_fit

from .helpers import table, vote


def test_two_items_closed_form():
    # By hand: with one pair the MLE is s_0 - s_1 = log(wins / losses); centred: +-log(3)/2.
    np.testing.assert_allclose(bt_fit(2, [(0, 1)], [6.0], [2.0]), [np.log(3) / 2, -np.log(3) / 2])


def _logit_reference(n_items, pairs, wins, losses):
    """statsmodels Logit on one row per vote: x = e_i - e_j (last item dropped), y = i won."""
    rows, ys = [], []
    for (i, j), w, l in zip(pairs, wins, losses):
        x = np.zeros(n_items)
        x[i], x[j] = 1.0, -1.0
        rows += [x[:-1]] * int(w + l)
        ys += [1] * int(w) + [0] * int(l)
    fit = sm.Logit(np.array(ys), np.array(rows)).fit(disp=0, tol=1e-12, maxiter=200)
    s = np.append(fit.params, 0.0)
    return s - s.mean()


def test_matches_statsmodels_logit_on_five_items():
    # Reference: statsmodels.api.Logit without intercept on the expanded design (FastChat's
    # "BT as logistic regression"), strengths centred to mean 0.
    pairs = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (0, 4), (1, 3), (2, 4)]
    wins = [12, 9, 7, 14, 10, 5, 8, 6]
    losses = [8, 11, 13, 6, 10, 9, 9, 12]
    np.testing.assert_allclose(bt_fit(5, pairs, wins, losses), _logit_reference(5, pairs, wins, losses), atol=1e-7)


def test_ties_as_half_equal_logit_on_doubled_data():
    # A tie as half a win for each side has the same likelihood, up to a factor 2, as data with
    # 2w + t wins and 2l + t losses; the MLE is therefore statsmodels' Logit on those counts.
    pairs = [(0, 1), (1, 2), (0, 2)]
    w, l, t = np.array([10, 7, 12]), np.array([6, 9, 4]), np.array([5, 3, 8])
    ours = bt_fit(3, pairs, w + 0.5 * t, l + 0.5 * t)
    np.testing.assert_allclose(ours, _logit_reference(3, pairs, 2 * w + t, 2 * l + t), atol=1e-7)


def test_no_mle_gives_nan():
    # Item 2 never wins: the likelihood increases without bound as s_2 -> -inf (Ford 1957).
    assert np.isnan(bt_fit(3, [(0, 1), (1, 2)], [3.0, 2.0], [1.0, 0.0])).all()
    # Disconnected comparison graph.
    assert np.isnan(bt_fit(4, [(0, 1), (2, 3)], [3.0, 2.0], [1.0, 1.0])).all()


def test_batched_equals_one_by_one():
    rng = np.random.default_rng(0)
    pairs = [(0, 1), (0, 2), (1, 2), (2, 3), (0, 3)]
    wins = rng.integers(1, 20, (7, 5)).astype(float)
    losses = rng.integers(1, 20, (7, 5)).astype(float)
    wins[3, :] = 0  # one unidentified data set in the batch
    batch = bt_fit(4, pairs, wins, losses)
    for b in range(7):
        np.testing.assert_allclose(batch[b], bt_fit(4, pairs, wins[b], losses[b]), atol=1e-10)
    assert np.isnan(batch[3]).all() and not np.isnan(batch[[0, 1, 2, 4, 5, 6]]).any()


def test_analysis_strengths_follow_tie_rule():
    # SHIFT vs ITC on realism: 6 wins, 2 losses, 4 ties, spread over prompts.
    rows = []
    for i, outcome in enumerate(["a"] * 6 + ["b"] * 2 + ["tie"] * 4):
        rows.append(vote(annotator=f"ann{i}", prompt=f"p{i % 4}", outcome=outcome, a_left=i % 2 == 0))
    t = table(rows)
    for rule, (w, l) in {"exclude": (6, 2), "half": (8, 4)}.items():
        s = AnalysisSettings(baselines=("ITC",), criteria=("realism",), tie_rule=rule, bt_replicates=200)
        bt = analyse(t, s)["results"]["all"]["bradley_terry"]["realism"]
        strengths = {o["objective"]: o["strength"] for o in bt["objectives"]}
        # By hand: two items, s_SHIFT - s_ITC = log(w / l).
        assert strengths["SHIFT"] - strengths["ITC"] == pytest.approx(np.log(w / l), abs=1e-5)
        shift = next(o for o in bt["objectives"] if o["objective"] == "SHIFT")
        assert shift["rank"] == 1 and shift["ci"][0] <= shift["strength"] <= shift["ci"][1]
