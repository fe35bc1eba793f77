"""Reading votes CSVs: the schema, clear errors with line numbers, round trips."""

import io
import json

import pytest

from studyapp.stats import (
    VOTE_COLUMNS,
    AnalysisSettings,
    VotesFileError,
    analyse,
    read_votes_csv,
    simulate_votes,
    write_votes_csv,
)

from .helpers import attention, table, vote


def _csv(rows, columns=VOTE_COLUMNS) -> io.StringIO:
    out = io.StringIO()
    out.write(",".join(columns) + "\n")
    for r in rows:
        out.write(",".join(str(r[c]) for c in columns) + "\n")
    out.seek(0)
    return out


def test_schema_is_the_documented_one():
    assert VOTE_COLUMNS == (
        "round_id", "vote_id", "trial_id", "annotator", "item_id", "prompt_id", "prompt", "category",
        "seed", "trial_kind", "criterion", "objective_a", "objective_b", "left_objective",
        "right_objective", "choice", "winner", "expected", "response_ms", "answered_at",
    )  # fmt: skip


def test_reads_rows_and_extra_columns():
    rows = [vote(prompt="p1"), vote(prompt="p2", outcome="tie"), attention(annotator="ann1", correct=True)]
    for r in rows:
        r["note"] = "x"
    t = read_votes_csv(_csv(rows, VOTE_COLUMNS + ("note",)))
    assert len(t) == 3
    assert list(t["choice"]) == [r["choice"] for r in rows]
    assert t["response_ms"].dtype.kind == "i" and list(t["seed"]) == [0, 0, 0]


def test_missing_columns_are_named():
    with pytest.raises(VotesFileError) as exc:
        read_votes_csv(_csv([], [c for c in VOTE_COLUMNS if c not in ("winner", "expected")]))
    assert "missing column(s): winner, expected" in str(exc.value)


def test_bad_values_are_reported_with_line_numbers():
    rows = [vote() for _ in range(4)]
    rows[0]["choice"] = "up"
    rows[1]["response_ms"] = "fast"
    rows[2]["winner"] = "ITC"  # choice says SHIFT won
    rows[3]["criterion"] = "beauty"
    with pytest.raises(VotesFileError) as exc:
        read_votes_csv(_csv(rows))
    problems = exc.value.problems
    assert "line 2: choice 'up' must be one of left, right, tie" in problems
    assert "line 3: response_ms must be an integer, got 'fast'" in problems
    assert "line 4: winner 'ITC' does not follow from choice 'left'" in problems
    assert "line 5: criterion 'beauty' must be one of realism, alignment" in problems


def test_sides_must_be_the_items_pair():
    r = vote()
    r["left_objective"] = "CAP"
    with pytest.raises(VotesFileError, match="line 2: left/right objectives 'CAP'/'ITC' are not the item's pair"):
        read_votes_csv(_csv([r]))


def test_ragged_and_empty_files():
    with pytest.raises(VotesFileError, match="no header"):
        read_votes_csv(io.StringIO(""))
    bad = _csv([vote()]).getvalue() + "1,2,3\n"
    with pytest.raises(VotesFileError, match="line 3: 3 fields, expected 20"):
        read_votes_csv(io.StringIO(bad))
    # Header only: zero votes, and the analysis still runs.
    t = read_votes_csv(_csv([]))
    assert len(t) == 0
    s = analyse(t, AnalysisSettings(bootstrap_replicates=10, bt_replicates=10))
    assert s["results"]["all"]["votes"] == 0
    json.dumps(s, allow_nan=False)


def test_csv_round_trip_reproduces_the_analysis(tmp_path):
    t = simulate_votes(trials_per_baseline=120, attention_per_annotator=3, careless_annotators=2, n_categories=3, tie_rate=0.2, seed=11)
    path = tmp_path / "votes.csv"
    write_votes_csv(t, path)
    back = read_votes_csv(path)
    s = AnalysisSettings(bootstrap_replicates=100, bt_replicates=50)
    assert json.dumps(analyse(back, s)) == json.dumps(analyse(t, s))


def test_table_take_keeps_shared_objective_levels():
    t = table([vote(b="CAP"), vote(b="ITC", outcome="b")])
    sub = t.take([1])
    assert sub.factor("winner").levels == sub.factor("objective_a").levels
    assert list(sub["winner"]) == ["ITC"]
