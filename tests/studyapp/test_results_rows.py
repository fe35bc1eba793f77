"""A round's votes as export rows, checked against the database; and the test data builders the
other results/exports tests share (``open_round``, ``add_votes``).

Rows are created directly with the ORM: the annotator services are another feature's.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from studyapp.models import Annotator, ComparisonItem, Prompt, PromptSet, Render, StudyRound, Trial, Vote
from studyapp.selectors_results import round_analysis_settings, round_vote_count, round_vote_rows
from studyapp.services.rounds import round_create, round_transition

pytestmark = pytest.mark.django_db

CATEGORIES = ["Colors", "Counting", "Text", ""]
# Probability that SHIFT wins a non-tie vote, per (baseline, criterion).
P_SHIFT = {("ITC", "realism"): 0.8, ("ITC", "alignment"): 0.6, ("CAP", "realism"): 0.7,
           ("CAP", "alignment"): 0.5, ("BLEND", "realism"): 0.65, ("BLEND", "alignment"): 0.55}


def make_prompt_set(name: str = "results-test", n: int = 8) -> PromptSet:
    ps = PromptSet.objects.create(name=name, title="results test prompts")
    Prompt.objects.bulk_create(
        Prompt(prompt_set=ps, position=i, text=f"prompt number {i}, with a comma", category=CATEGORIES[i % len(CATEGORIES)])
        for i in range(n)
    )
    return ps


def open_round(round_config: dict, *, open_it: bool = True, **overrides) -> StudyRound:
    """A round on a small prompt set with every render done (dummy image), opened by default."""
    ps = make_prompt_set()
    cfg = {**round_config, "prompt_set": ps.name, "prompt_limit": 8, "seeds_per_prompt": 1, **overrides}
    rnd = round_create(config=cfg)
    Render.objects.filter(round=rnd).update(status=Render.Status.DONE, image="renders/dummy.png", provenance={})
    round_transition(round_id=rnd.pk, to="ready")
    if open_it:
        rnd = round_transition(round_id=rnd.pk, to="open")
    return rnd


def add_votes(rnd: StudyRound, *, n_annotators: int = 6, seed: int = 1, attention: bool = True,
              practice: bool = True, fast_annotator: bool = False, p_shift=P_SHIFT, tie_rate: float = 0.15) -> None:
    """Every annotator votes on every item (both criteria), plus an attention and a practice trial.

    Sides are random per trial; the winner is resolved from the stored sides, as the server does.
    ``fast_annotator``: the last annotator answers in 300 ms and fails its attention check.
    """
    rng = random.Random(seed)
    items = list(ComparisonItem.objects.filter(round=rnd).select_related("render_a", "render_b", "prompt"))
    now = timezone.now()
    for k in range(n_annotators):
        fast = fast_annotator and k == n_annotators - 1
        ann = Annotator.objects.create(round=rnd, status=Annotator.Status.COMPLETED, pseudonym=f"ann-{rnd.pk}-{k}")
        pos = 0
        votes: list[Vote] = []

        def trial(**kw) -> Trial:
            nonlocal pos
            pos += 1
            return Trial.objects.create(annotator=ann, position=pos, answered_at=now + timedelta(seconds=pos), **kw)

        if practice:
            it = items[0]
            t = trial(kind=Trial.Kind.PRACTICE, prompt=it.prompt, left_render=it.render_a, right_render=it.render_b)
            votes += [Vote(trial=t, criterion=c, choice="left", winner=it.objective_a, response_ms=2000)
                      for c in ("realism", "alignment")]
        if attention:
            r = items[1].render_a
            gold = rng.choice(["left", "right"])
            t = trial(kind=Trial.Kind.ATTENTION, prompt=items[1].prompt, left_render=r, right_render=r,
                      left_variant="plain" if gold == "left" else "degraded",
                      right_variant="degraded" if gold == "left" else "plain",
                      check_criterion="realism", expected_side=gold)
            picked = ("right" if gold == "left" else "left") if fast else gold
            votes += [Vote(trial=t, criterion="realism", choice=picked, winner=r.objective, response_ms=2500),
                      Vote(trial=t, criterion="alignment", choice="tie", winner="tie", response_ms=2500)]
        for it in items:
            a_left = rng.random() < 0.5
            left, right = (it.render_a, it.render_b) if a_left else (it.render_b, it.render_a)
            t = trial(kind=Trial.Kind.REGULAR, item=it, prompt=it.prompt, left_render=left, right_render=right)
            for crit in ("realism", "alignment"):
                if fast:
                    choice = "left"
                elif rng.random() < tie_rate:
                    choice = "tie"
                else:
                    if "SHIFT" in (it.objective_a, it.objective_b):
                        other = it.objective_b if it.objective_a == "SHIFT" else it.objective_a
                        p_a = p_shift[(other, crit)] if it.objective_a == "SHIFT" else 1 - p_shift[(other, crit)]
                    else:
                        p_a = 0.5
                    a_wins = rng.random() < p_a
                    choice = "left" if a_wins == a_left else "right"
                winner = {"left": left.objective, "right": right.objective, "tie": "tie"}[choice]
                ms = 300 if fast else rng.randint(1200, 9000)
                votes.append(Vote(trial=t, criterion=crit, choice=choice, winner=winner, response_ms=ms))
        Vote.objects.bulk_create(votes)


def test_regular_rows_match_the_database_whichever_side(round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=2, attention=False, practice=False)
    rows = list(round_vote_rows(rnd))
    assert len(rows) == Vote.objects.count() == round_vote_count(rnd) == 2 * 3 * 8 * 2
    sides_seen = set()
    for row in rows:
        v = Vote.objects.select_related("trial__item", "trial__annotator", "trial__prompt",
                                        "trial__left_render", "trial__right_render").get(pk=row["vote_id"])
        t = v.trial
        assert row["round_id"] == rnd.pk and row["trial_id"] == t.pk and row["item_id"] == t.item_id
        assert row["annotator"] == t.annotator.pseudonym
        assert (row["prompt_id"], row["prompt"], row["category"]) == (t.prompt_id, t.prompt.text, t.prompt.category)
        assert row["seed"] == t.item.seed and row["trial_kind"] == "regular"
        assert (row["objective_a"], row["objective_b"]) == (t.item.objective_a, t.item.objective_b) and row["objective_a"] == "SHIFT"
        assert (row["left_objective"], row["right_objective"]) == (t.left_render.objective, t.right_render.objective)
        assert (row["criterion"], row["choice"], row["response_ms"]) == (v.criterion, v.choice, v.response_ms)
        assert row["expected"] == ""
        # the winner is the objective on the chosen side, whichever side SHIFT was shown on
        on_side = {"left": t.left_render.objective, "right": t.right_render.objective, "tie": "tie"}[v.choice]
        assert row["winner"] == v.winner == on_side
        if v.choice != "tie":
            sides_seen.add((row["left_objective"] == "SHIFT", v.choice))
    # SHIFT shown left and right, and chosen on either side
    assert sides_seen == {(True, "left"), (True, "right"), (False, "left"), (False, "right")}
    assert [r["vote_id"] for r in rows] == sorted(r["vote_id"] for r in rows)


def test_a_left_and_a_right_vote_on_one_item(round_config):
    rnd = open_round(round_config)
    it = ComparisonItem.objects.filter(round=rnd, objective_b="ITC").first()
    for name, (left, right), choice in (("L", (it.render_a, it.render_b), "left"), ("R", (it.render_b, it.render_a), "left")):
        ann = Annotator.objects.create(round=rnd, pseudonym=name)
        t = Trial.objects.create(annotator=ann, item=it, position=1, prompt=it.prompt, left_render=left, right_render=right)
        Vote.objects.create(trial=t, criterion="realism", choice=choice, winner=left.objective, response_ms=1500)
    rows_by_ann = {r["annotator"]: r for r in round_vote_rows(rnd)}
    # the same click ("left") is a SHIFT win when SHIFT is on the left, an ITC win when it is on the right
    assert (rows_by_ann["L"]["left_objective"], rows_by_ann["L"]["winner"]) == ("SHIFT", "SHIFT")
    assert (rows_by_ann["R"]["left_objective"], rows_by_ann["R"]["winner"]) == ("ITC", "ITC")
    assert rows_by_ann["L"]["objective_a"] == rows_by_ann["R"]["objective_a"] == "SHIFT"


def test_attention_and_practice_rows(round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=1)
    rows = list(round_vote_rows(rnd))
    att = [r for r in rows if r["trial_kind"] == "attention"]
    prac = [r for r in rows if r["trial_kind"] == "practice"]
    assert len(att) == 2 and len(prac) == 2 and len(rows) == 2 + 2 + 48
    t = Trial.objects.get(kind="attention")
    check = next(r for r in att if r["criterion"] == "realism")
    other = next(r for r in att if r["criterion"] == "alignment")
    assert check["item_id"] == "" and check["prompt_id"] == t.prompt_id and check["prompt"] == t.prompt.text
    assert (check["objective_a"], check["objective_b"]) == ("GOLD", "DECOY")
    gold_side = t.expected_side
    assert check[f"{gold_side}_objective"] == "GOLD"
    assert check["expected"] == gold_side and check["choice"] == gold_side and check["winner"] == "GOLD"
    # the criterion without a known answer carries no expected side
    assert other["expected"] == "" and other["winner"] == "tie"
    # practice rows are exported as such, with the winner resolved from the side
    assert all(r["winner"] == r["left_objective"] for r in prac)


def test_settings_before_and_after_opening(round_config):
    rnd = open_round({**round_config, "exclusions": {"min_response_ms": 500}, "tie_rule": "half"}, open_it=False)
    before = round_analysis_settings(rnd)
    assert rnd.analysis_settings is None
    assert before["tie_rule"] == "half" and before["exclusions"]["min_response_ms"] == 500
    assert before["baselines"] == ["ITC", "CAP", "BLEND"] and "min_response_ms" not in before
    rnd = round_transition(round_id=rnd.pk, to="open")
    assert round_analysis_settings(rnd) == before
    # frozen: what the round stored at opening wins over the config
    rnd.analysis_settings = {**rnd.analysis_settings, "exclusions": {**before["exclusions"], "min_response_ms": 0}}
    assert round_analysis_settings(rnd)["exclusions"]["min_response_ms"] == 0


def test_all_pairs_round_puts_shift_first(round_config):
    rnd = open_round({**round_config, "comparisons": "all-pairs"})
    add_votes(rnd, n_annotators=1, attention=False, practice=False,
              p_shift={(b, c): 0.7 for b in ("ITC", "CAP", "BLEND") for c in ("realism", "alignment")})
    rows = list(round_vote_rows(rnd))
    pairs = {(r["objective_a"], r["objective_b"]) for r in rows}
    assert ("SHIFT", "ITC") in pairs and ("ITC", "SHIFT") not in pairs and ("ITC", "CAP") in pairs
    assert ComparisonItem.objects.filter(round=rnd, objective_a="ITC", objective_b="SHIFT").exists()
