"""Allocation, answers, undo, leases and attention checks through the real services on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from studyapp.models import Annotator, ComparisonItem, Trial, Vote
from studyapp.services import votes
from studyapp.services.allocation import attention_slots, items_consistency_problems, trial_next, trials_reclaim_expired
from studyapp.services.annotators import AnnotateError, attention_accuracy
from studyapp.services.rounds import item_order, round_transition
from tests.studyapp.factories import make_active_annotator, make_ready_round

pytestmark = pytest.mark.django_db


@pytest.fixture
def cfg(round_config):
    # 4 prompts x 2 seeds x 3 pairs = 24 items, 3 votes each; 10 trials per annotator, 1 attention check.
    return {**round_config, "min_view_ms": 0, "practice_trials": 0}


def answer(ann, trial, realism="left", alignment="right", rt=(1200, 1500), **kw):
    return votes.trial_answer(
        annotator_id=ann.pk,
        position=trial.position,
        answer=votes.Answer({"realism": realism, "alignment": alignment}, {"realism": rt[0], "alignment": rt[1]}),
        **kw,
    )


def run_annotator(ann, choose=lambda t: ("left", "right")):
    """Answer until done; return the trials answered."""
    done = []
    while True:
        nxt = trial_next(annotator_id=ann.pk)
        if nxt.trial is None:
            return done
        r, a = choose(nxt.trial)
        answer(ann, nxt.trial, r, a)
        done.append(nxt.trial)


def test_quota_no_repeats_sides_stored_and_winner_resolved_on_the_server(cfg):
    rnd = make_ready_round(cfg)
    ann = make_active_annotator(rnd)
    trials = run_annotator(ann)
    ann.refresh_from_db()
    assert ann.status == Annotator.Status.COMPLETED and ann.completion_code == rnd.completion_code
    assert len(trials) == 10
    kinds = Counter(t.kind for t in trials)
    assert kinds == {"regular": 9, "attention": 1}
    items = [t.item_id for t in trials if t.kind == "regular"]
    assert len(set(items)) == len(items)
    for t in Trial.objects.filter(annotator=ann, kind="regular").select_related("item", "left_render", "right_render"):
        assert {t.left_render_id, t.right_render_id} == {t.item.render_a_id, t.item.render_b_id}
        v = {x.criterion: x for x in t.votes.all()}
        assert v["realism"].choice == "left" and v["realism"].winner == t.left_render.objective
        assert v["alignment"].choice == "right" and v["alignment"].winner == t.right_render.objective
        assert (v["realism"].response_ms, v["alignment"].response_ms) == (1200, 1500)
    assert items_consistency_problems(round_id=rnd.pk) == []


def test_left_right_is_random_per_trial(cfg):
    rnd = make_ready_round(cfg, votes_per_item=6, trials_per_annotator=24, attention_check_rate=0.0)
    for _ in range(3):
        run_annotator(make_active_annotator(rnd))
    regular = Trial.objects.filter(annotator__round=rnd, kind="regular").select_related("item")
    focal_left = sum(t.left_render_id == t.item.render_a_id for t in regular)
    # 72 fair coin flips: P(outside 20..52) < 1e-4
    assert regular.count() == 72 and 20 <= focal_left <= 52


def test_least_covered_items_first(cfg):
    rnd = make_ready_round(cfg, trials_per_annotator=8, attention_check_rate=0.0)
    first = {t.item_id for t in run_annotator(make_active_annotator(rnd))}
    second = {t.item_id for t in run_annotator(make_active_annotator(rnd))}
    third = {t.item_id for t in run_annotator(make_active_annotator(rnd))}
    # 24 items: three annotators of 8 each cover every item exactly once before any gets a second vote.
    assert not (first & second) and not (first & third) and not (second & third)
    assert set(ComparisonItem.objects.filter(round=rnd).values_list("completed", flat=True)) == {1}


def test_equally_covered_items_come_in_the_rounds_seeded_order(cfg):
    rnd = make_ready_round(cfg, trials_per_annotator=8, attention_check_rate=0.0)
    served = [t.item_id for t in run_annotator(make_active_annotator(rnd))]
    in_order = list(ComparisonItem.objects.filter(round=rnd).order_by("shuffle").values_list("id", flat=True))
    assert served == in_order[:8]


def test_item_order_is_a_permutation_fixed_by_the_round_seed(cfg):
    assert sorted(item_order(50, 7)) == list(range(50))
    assert item_order(50, 7) == item_order(50, 7) != item_order(50, 8)

    def order(rnd):
        rows = ComparisonItem.objects.filter(round=rnd).values_list("prompt__text", "seed", "objective_b", "shuffle")
        return {(p, s, b): k for p, s, b, k in rows}

    a, b = make_ready_round(cfg, round_seed=3), make_ready_round(cfg, round_seed=3)
    c = make_ready_round(cfg, round_seed=4)
    assert order(a) == order(b) != order(c)
    assert sorted(order(c).values()) == list(range(24))


def test_opening_a_round_gives_the_planner_statistics_of_its_items(cfg):
    # Without them a new round's allocation sorts every open item per request (see rounds.py).
    def round_ids_in_statistics() -> set[str]:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT coalesce(most_common_vals::text, '') || ',' || coalesce(histogram_bounds::text, '') "
                "FROM pg_stats WHERE tablename = 'studyapp_comparisonitem' AND attname = 'round_id'"
            )
            row = cur.fetchone()
        return set((row[0] if row else "").replace("{", "").replace("}", "").split(","))

    rnd = make_ready_round(cfg, open_it=False)
    assert str(rnd.pk) not in round_ids_in_statistics()
    round_transition(round_id=rnd.pk, to="open")
    assert str(rnd.pk) in round_ids_in_statistics()


def test_every_item_reaches_its_target_and_no_further(cfg):
    rnd = make_ready_round(cfg, trials_per_annotator=30, attention_check_rate=0.0)
    finished = [len(run_annotator(make_active_annotator(rnd))) for _ in range(3)]
    # 24 items x 3 votes: three annotators take every item once each; a fourth is not let in.
    assert finished == [24, 24, 24]
    with pytest.raises(AnnotateError) as exc:
        make_active_annotator(rnd)
    assert exc.value.code == "study_full" and exc.value.status == 409
    assert set(ComparisonItem.objects.filter(round=rnd).values_list("assigned", "completed")) == {(3, 3)}
    assert Vote.objects.filter(trial__annotator__round=rnd, trial__kind="regular").count() == 24 * 3 * 2
    assert items_consistency_problems(round_id=rnd.pk) == []


def test_open_trial_is_returned_again_until_answered(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    a = trial_next(annotator_id=ann.pk)
    b = trial_next(annotator_id=ann.pk)
    assert a.trial.pk == b.trial.pk and a.progress.number == b.progress.number == 1
    assert ComparisonItem.objects.get(pk=a.trial.item_id).assigned == 1


def test_expired_lease_gives_the_slot_back_and_the_annotator_a_fresh_item(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    held = trial_next(annotator_id=ann.pk).trial
    item = ComparisonItem.objects.get(pk=held.item_id)
    assert item.assigned == 1
    Trial.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert trials_reclaim_expired() == 1
    item.refresh_from_db()
    assert item.assigned == 0
    assert trials_reclaim_expired() == 0  # a voided trial is not reclaimed twice
    # The abandoned answer arrives late: refused, nothing written.
    with pytest.raises(AnnotateError) as exc:
        answer(ann, held)
    assert exc.value.code == "trial_expired" and exc.value.status == 409
    assert not Vote.objects.filter(trial=held).exists()
    fresh = trial_next(annotator_id=ann.pk)
    assert fresh.trial.item_id != held.item_id and fresh.progress.number == 1
    assert items_consistency_problems(round_id=rnd.pk) == []


def test_returning_annotator_with_expired_lease_gets_a_fresh_item_without_a_sweep(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    held = trial_next(annotator_id=ann.pk).trial
    Trial.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    # trial_next sweeps too; either way the slot comes back exactly once.
    fresh = trial_next(annotator_id=ann.pk).trial
    assert fresh.item_id != held.item_id
    assert ComparisonItem.objects.get(pk=held.item_id).assigned == 0
    assert items_consistency_problems(round_id=rnd.pk) == []


def test_expired_but_unreclaimed_trial_can_still_be_answered(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    held = trial_next(annotator_id=ann.pk).trial
    Trial.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert answer(ann, held).outcome == "recorded"
    assert trials_reclaim_expired() == 0
    item = ComparisonItem.objects.get(pk=held.item_id)
    assert (item.assigned, item.completed) == (1, 1)


def test_resubmission_is_idempotent(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    t = trial_next(annotator_id=ann.pk).trial
    assert answer(ann, t).outcome == "recorded"
    assert answer(ann, t).outcome == "unchanged"
    assert Vote.objects.filter(trial=t).count() == 2
    assert ComparisonItem.objects.get(pk=t.item_id).completed == 1


def test_undo_updates_votes_in_place_within_the_window(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    t = trial_next(annotator_id=ann.pk).trial
    answer(ann, t, "left", "left")
    nxt = trial_next(annotator_id=ann.pk).trial  # the next trial is served but not answered
    undo_trial, answers = votes.trial_for_undo(annotator_id=ann.pk)
    assert undo_trial.pk == t.pk and answers == {"realism": "left", "alignment": "left"}
    before = list(ComparisonItem.objects.filter(round=rnd).values_list("id", "assigned", "completed"))
    res = answer(ann, t, "right", "tie", rt=(3000, 3100), revise=True)
    assert res.outcome == "updated"
    v = {x.criterion: x for x in Vote.objects.filter(trial=t)}
    t.refresh_from_db()
    assert v["realism"].choice == "right" and v["realism"].winner == t.right_render.objective
    assert v["alignment"].choice == "tie" and v["alignment"].winner == "tie"
    assert v["realism"].response_ms == 3000
    assert list(ComparisonItem.objects.filter(round=rnd).values_list("id", "assigned", "completed")) == before
    # Once the next trial is answered, the earlier one is final.
    answer(ann, nxt)
    with pytest.raises(AnnotateError) as exc:
        answer(ann, t, "left", "left", revise=True)
    assert exc.value.code == "already_answered" and exc.value.status == 409
    assert Vote.objects.get(trial=t, criterion="realism").choice == "right"


def test_a_different_answer_without_revise_is_refused_never_applied(cfg):
    """A stale second tab posts its own answer for a trial the other tab already answered: within
    the undo window and as the latest answer, it would have been an undo; without ``revise``
    (the person did not choose "Change previous answer") it is refused and nothing changes."""
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    t = trial_next(annotator_id=ann.pk).trial
    assert answer(ann, t, "left", "left").outcome == "recorded"
    with pytest.raises(AnnotateError) as exc:
        answer(ann, t, "right", "right")
    assert exc.value.code == "already_answered" and exc.value.status == 409 and "another tab" in exc.value.message
    assert dict(Vote.objects.filter(trial=t).values_list("criterion", "choice")) == {"realism": "left", "alignment": "left"}
    assert answer(ann, t, "left", "left").outcome == "unchanged"  # a repeat of the same answer is harmless
    assert answer(ann, t, "right", "right", revise=True).outcome == "updated"  # the person's own choice


def test_undo_window_closes(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    ann = make_active_annotator(rnd)
    t = trial_next(annotator_id=ann.pk).trial
    answer(ann, t)
    later = timezone.now() + timedelta(seconds=votes.UNDO_WINDOW_S + 5)
    with pytest.raises(AnnotateError, match="can no longer be changed"):
        answer(ann, t, "tie", "tie", now=later, revise=True)
    with pytest.raises(AnnotateError):
        votes.trial_for_undo(annotator_id=ann.pk, now=later)


def test_foreign_forged_and_malformed_answers_change_nothing(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0)
    a, b = make_active_annotator(rnd), make_active_annotator(rnd)
    ta = trial_next(annotator_id=a.pk).trial
    trial_next(annotator_id=b.pk)
    with pytest.raises(AnnotateError) as exc:  # b answers a position b was never given
        answer(b, type("T", (), {"position": ta.position + 5})())
    assert exc.value.status == 404
    with pytest.raises(AnnotateError) as exc:
        votes.answer_parse({"realism": "left", "alignment": "SHIFT", "rt_realism": "-4", "rt_alignment": "x"})
    assert exc.value.status == 400 and "text match" in exc.value.message
    with pytest.raises(AnnotateError):
        votes.parse_position("1; DROP TABLE")
    assert not Vote.objects.filter(trial__annotator__round=rnd, trial__kind="regular").exists()


def test_minimum_viewing_time_is_checked_on_the_server(cfg):
    rnd = make_ready_round(cfg, attention_check_rate=0.0, min_view_ms=1500)
    ann = make_active_annotator(rnd)
    t = trial_next(annotator_id=ann.pk).trial
    with pytest.raises(AnnotateError) as exc:
        answer(ann, t, now=t.served_at + timedelta(milliseconds=200))
    assert exc.value.code == "too_fast"
    assert answer(ann, t, now=t.served_at + timedelta(milliseconds=1600)).outcome == "recorded"


def test_closed_round_refuses_politely(cfg):
    from studyapp.services.rounds import round_transition

    rnd = make_ready_round(cfg)
    ann = make_active_annotator(rnd)
    t = trial_next(annotator_id=ann.pk).trial
    round_transition(round_id=rnd.pk, to="closed")
    with pytest.raises(AnnotateError) as exc:
        answer(ann, t)
    assert exc.value.code == "round_closed" and "closed" in exc.value.message
    with pytest.raises(AnnotateError):
        trial_next(annotator_id=ann.pk)


def test_attention_slots_follow_the_rate():
    assert attention_slots(pseudonym="x", quota=10, rate=0.0) == frozenset()
    assert len(attention_slots(pseudonym="x", quota=10, rate=0.1)) == 1
    assert len(attention_slots(pseudonym="x", quota=40, rate=0.1)) == 4
    assert 0 not in attention_slots(pseudonym="x", quota=40, rate=0.1)
    assert attention_slots(pseudonym="x", quota=40, rate=0.1) == attention_slots(pseudonym="x", quota=40, rate=0.1)


def test_attention_checks_have_known_answers_and_set_qc(cfg):
    rnd = make_ready_round(cfg, trials_per_annotator=10, attention_check_rate=0.3)
    good, bad = make_active_annotator(rnd), make_active_annotator(rnd)

    def right(t):
        return (t.expected_side, t.expected_side) if t.kind == "attention" else ("left", "left")

    def wrong(t):
        other = {"left": "right", "right": "left"}
        return (other[t.expected_side], other[t.expected_side]) if t.kind == "attention" else ("left", "left")

    run_annotator(good, right)
    run_annotator(bad, wrong)
    for ann, qc in ((good, "pass"), (bad, "fail")):
        ann.refresh_from_db()
        assert ann.qc_status == qc
        checks = Trial.objects.filter(annotator=ann, kind="attention").select_related("left_render", "right_render")
        assert checks.count() == 3
        for t in checks:
            assert t.item_id is None and t.expected_side in ("left", "right")
            assert t.check_criterion in ("realism", "alignment")
            if t.check_criterion == "realism":
                assert t.left_render_id == t.right_render_id
                gold_variant = t.left_variant if t.expected_side == "left" else t.right_variant
                assert gold_variant == "plain" and {t.left_variant, t.right_variant} == {"plain", "degraded"}
            else:
                gold = t.left_render if t.expected_side == "left" else t.right_render
                decoy = t.right_render if t.expected_side == "left" else t.left_render
                assert gold.prompt_id == t.prompt_id and decoy.prompt_id != t.prompt_id
    assert attention_accuracy(good.pk) == (3, 3) and attention_accuracy(bad.pk) == (0, 3)


def test_practice_trials_come_first_with_feedback(cfg):
    from studyapp.services.annotators import PlatformIds, annotator_check_comprehension, annotator_consent
    from tests.studyapp.factories import CORRECT

    rnd = make_ready_round(cfg, practice_trials=2)
    ann = annotator_consent(rnd=rnd, ids=PlatformIds())
    annotator_check_comprehension(annotator_id=ann.pk, answers=CORRECT)
    seen = []
    for _ in range(2):
        nxt = trial_next(annotator_id=ann.pk)
        assert nxt.progress.phase == "practice" and nxt.trial.kind == "practice"
        res = answer(ann, nxt.trial, nxt.trial.expected_side, nxt.trial.expected_side)
        assert res.feedback["correct"] is True and "Correct" in res.feedback["message"]
        seen.append(nxt.trial.check_criterion)
    assert sorted(seen) == ["alignment", "realism"]
    nxt = trial_next(annotator_id=ann.pk)
    assert nxt.progress.phase == "main" and nxt.progress.number == 1
    ann.refresh_from_db()
    assert ann.status == "active"


def test_known_answer_trials_never_show_an_image_the_annotator_has_seen(cfg):
    """Issue 11, item 5: the practice pair must not come back as an attention check (nor any
    image shown before); checked over every known-answer trial of several annotators."""
    rnd = make_ready_round(cfg, practice_trials=2, trials_per_annotator=12, attention_check_rate=0.4, votes_per_item=6)
    checks = 0
    for _ in range(4):
        ann = make_active_annotator(rnd)
        run_annotator(ann, choose=lambda t: (t.expected_side or "left", t.expected_side or "left"))
        seen: set[int] = set()
        for t in Trial.objects.filter(annotator=ann).order_by("position"):
            if t.kind == "attention":
                assert {t.left_render_id, t.right_render_id}.isdisjoint(seen), t.position
                checks += 1
            seen |= {t.left_render_id, t.right_render_id}
    assert checks >= 4 * 4  # round(0.4 * 12) = 5 slots each; a slot may fall back when nothing unseen is left


def gold_pick(renders, prompts, seen, strict):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT * FROM studyapp_gold_pick(%s::bigint[], %s::bigint[], %s::bigint[], %s)",
                    [renders, prompts, seen, strict])
        return cur.fetchone()


def test_gold_pick_takes_the_first_unseen_and_an_unseen_decoy_of_another_prompt():
    # candidates (render, prompt): (1, 10) (2, 10) (3, 20) (4, 30)
    r, p = [1, 2, 3, 4], [10, 10, 20, 30]
    assert gold_pick(r, p, [], True) == (1, 10, 3)  # decoy: not render 2 (same prompt)
    assert gold_pick(r, p, [1], True) == (2, 10, 3)
    assert gold_pick(r, p, [1, 3], True) == (2, 10, 4)
    assert gold_pick(r, p, [1, 2, 3], True) == (4, 30, None)  # nothing unseen of another prompt: realism
    assert gold_pick(r, p, [1, 2, 3, 4], True) == (None, None, None)  # an attention slot falls back
    assert gold_pick(r, p, [1, 2, 3, 4], False) == (1, 10, None)  # practice still gets its trial
    assert gold_pick([], [], [], False) == (None, None, None)


def test_an_attention_slot_with_every_image_seen_becomes_a_regular_trial(cfg):
    # 2 prompts x 1 seed x 4 objectives = 8 renders, 6 items; one annotator sees them all.
    rnd = make_ready_round(cfg, prompt_limit=2, seeds_per_prompt=1, trials_per_annotator=6, attention_check_rate=0.5,
                           practice_trials=0)
    ann = make_active_annotator(rnd)
    run_annotator(ann)
    seen: set[int] = set()
    for t in Trial.objects.filter(annotator=ann).order_by("position"):
        if t.kind == "attention":
            assert {t.left_render_id, t.right_render_id}.isdisjoint(seen)
        seen |= {t.left_render_id, t.right_render_id}
    assert items_consistency_problems(round_id=rnd.pk) == []
