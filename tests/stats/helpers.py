"""Small hand-made vote tables for the statistics tests."""

from __future__ import annotations

import itertools

from studyapp.stats import VoteTable

_ids = itertools.count(1)


def vote(
    *,
    annotator="ann1",
    prompt="p1",
    a="SHIFT",
    b="ITC",
    criterion="realism",
    outcome="a",
    a_left=True,
    kind="regular",
    expected="",
    response_ms=3000,
    category="",
    item=None,
) -> dict:
    """One vote row; ``outcome`` is "a" (objective_a won), "b" or "tie"."""
    left, right = (a, b) if a_left else (b, a)
    if outcome == "tie":
        choice, winner = "tie", "tie"
    else:
        winner = a if outcome == "a" else b
        choice = "left" if winner == left else "right"
    i = next(_ids)
    return {
        "round_id": 1,
        "vote_id": i,
        "trial_id": i,
        "annotator": annotator,
        "item_id": item if item is not None else f"{prompt}-{a}-{b}",
        "prompt_id": prompt,
        "prompt": f"text of {prompt}",
        "category": category,
        "seed": 0,
        "trial_kind": kind,
        "criterion": criterion,
        "objective_a": a,
        "objective_b": b,
        "left_objective": left,
        "right_objective": right,
        "choice": choice,
        "winner": winner,
        "expected": expected,
        "response_ms": response_ms,
        "answered_at": "2026-01-01T00:00:00+00:00",
    }


def attention(*, annotator, correct: bool, side="left") -> dict:
    chosen_left = (side == "left") == correct
    gold_left = side == "left"
    row = vote(
        annotator=annotator,
        prompt="gold",
        a="GOLD",
        b="DECOY",
        outcome="a" if correct else "b",
        a_left=gold_left,
        kind="attention",
        expected=side,
        item="",
    )
    assert (row["choice"] == "left") == chosen_left
    return row


def table(rows) -> VoteTable:
    return VoteTable.from_rows(rows)
