"""Agreement of automatic scores with people; alpha's item bootstrap; the optional score columns."""

import io

import numpy as np
import pytest

from studyapp.stats import AnalysisSettings, analyse, read_votes_csv, write_votes_csv
from studyapp.stats.agreement import alpha_bootstrap, krippendorff_alpha_nominal
from studyapp.stats.resample import rng_for

from .helpers import table, vote

FAST = AnalysisSettings(bootstrap_replicates=0, bt_replicates=0)


def _scored(row, left, right):
    """Scores of the left/right image: (itc, itm, cap) each."""
    for side, vals in (("left", left), ("right", right)):
        for name, v in zip(("itc", "itm", "cap"), vals):
            row[f"{side}_{name}_score"] = v
    return row


def _rows():
    rows = []
    # 4 votes where people chose the left image, 1 right, 1 tie; ITC scores the left higher in
    # all six; ITM ties once; CAP is missing on the last two (an imported render).
    for i, (outcome, a_left) in enumerate([("a", True), ("a", True), ("b", False), ("b", False), ("b", True), ("tie", True)]):
        r = vote(annotator=f"a{i}", prompt=f"p{i % 3}", outcome=outcome, a_left=a_left)
        itm_right = 0.5 if i == 0 else 0.1
        cap = (1.0, 0.0) if i < 4 else ("", "")
        rows.append(_scored(r, (0.9, 0.5, cap[0]), (0.1, itm_right, cap[1])))
    return rows


def test_counts_by_hand():
    s = analyse(table(_rows()), FAST)["results"]["all"]["score_agreement"]
    assert s["available"]
    itc = s["criteria"]["realism"]["itc"]
    # chose left: votes 0, 1 (a on left, a won), 2 and 3 (b on left: a_left False, b won -> left);
    # vote 4: a left, b won -> right (disagree); vote 5: tie.
    assert (itc["agree"], itc["disagree"], itc["human_ties"], itc["score_ties"], itc["missing"]) == (4, 1, 1, 0, 0)
    assert itc["rate"] == pytest.approx(0.8)
    itm = s["criteria"]["realism"]["itm"]
    assert (itm["agree"], itm["score_ties"]) == (3, 1)
    cap = s["criteria"]["realism"]["cap"]
    assert cap["missing"] == 2 and cap["agree"] + cap["disagree"] + cap["human_ties"] == 4
    assert "2 vote-score pair(s)" in s["note"]


def test_prompt_bootstrap_interval_by_hand():
    rows = _rows()
    settings = AnalysisSettings(bootstrap_replicates=300, bt_replicates=0, bootstrap_seed=7)
    s = analyse(table(rows), settings)["results"]["all"]["score_agreement"]["criteria"]["realism"]["itc"]
    # Hand-coded bootstrap: prompts p0, p1, p2 hold (agree, disagree) = (2,0), (2,0)... computed here.
    from studyapp.stats.resample import cluster_weights, percentile_interval
    from studyapp.stats.scores import STREAM_SCORES

    per_prompt = np.zeros((3, 2))
    for i, r in enumerate(rows):
        if r["choice"] == "tie":
            continue
        agree = r["choice"] == "left"  # ITC always favours the left image
        per_prompt[int(r["prompt_id"][1:]), 0 if agree else 1] += 1
    rng = rng_for(7, STREAM_SCORES * 100 + 0 * 10 + 0)
    w = cluster_weights(3, 300, rng)
    tot = w @ per_prompt
    lo, hi = percentile_interval((tot[:, 0] / tot.sum(axis=1))[:, None], 0.95)
    assert s["ci_bootstrap_prompt"] == pytest.approx([lo[0], hi[0]], rel=1e-5)


def test_older_exports_without_score_columns_still_load(tmp_path):
    rows = _rows()
    for r in rows:
        for k in [k for k in r if k.endswith("_score")]:
            del r[k]
    t = table(rows)
    path = tmp_path / "old.csv"
    write_votes_csv(t, path)
    assert "score" not in path.read_text().splitlines()[0]
    s = analyse(read_votes_csv(path), FAST)["results"]["all"]["score_agreement"]
    assert s["available"] is False and "no score columns" in s["note"]


def test_score_columns_round_trip_and_junk_is_named(tmp_path):
    t = table(_rows())
    buf = io.StringIO()
    write_votes_csv(t, buf)
    text = buf.getvalue()
    assert "left_itc_score" in text.splitlines()[0]
    back = read_votes_csv(io.StringIO(text))
    assert np.array_equal(np.isnan(back["left_cap_score"]), np.isnan(t["left_cap_score"]))
    bad = text.replace("0.9,", "nan,", 1)
    with pytest.raises(Exception, match="left_itc_score must be a number or empty"):
        read_votes_csv(io.StringIO(bad))


def test_alpha_bootstrap_by_hand():
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(30), 3)
    values = np.where(rng.random(90) < 0.7, units % 2, rng.integers(0, 3, 90))
    lo, hi = alpha_bootstrap(units, values, 200, rng_for(3, 9), 0.9)
    # Hand-coded: resample units with the same generator, recompute alpha with the plain function.
    rng2 = rng_for(3, 9)
    from studyapp.stats.resample import cluster_weights

    w = cluster_weights(30, 200, rng2)
    reps = []
    for row in w:
        u, v = [], []
        new = 0
        for unit, times in enumerate(row):
            for _ in range(times):
                m = units == unit
                u += [new] * int(m.sum())
                v += list(values[m])
                new += 1
        reps.append(krippendorff_alpha_nominal(u, v).alpha)
    assert [lo, hi] == pytest.approx(list(np.quantile(reps, [0.05, 0.95])), rel=1e-9)
    assert lo < krippendorff_alpha_nominal(units, values).alpha < hi
