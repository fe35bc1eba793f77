"""PostgreSQL itself refuses duplicates and invalid values, whatever the Python code does."""

import pytest
from django.db import IntegrityError, connection, transaction

from studyapp.models import Annotator, ComparisonItem, Render, StudyRound, Trial, Vote
from studyapp.services.rounds import round_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def rnd(round_config):
    return round_create(config=round_config)


def refused(fn):
    with pytest.raises(IntegrityError), transaction.atomic():
        fn()


def test_duplicate_render_is_refused(rnd):
    r = rnd.renders.first()
    refused(lambda: Render.objects.create(round=rnd, prompt=r.prompt, seed=r.seed, objective=r.objective))


def test_duplicate_item_is_refused(rnd):
    it = rnd.items.first()
    refused(
        lambda: ComparisonItem.objects.create(
            round=rnd, prompt=it.prompt, seed=it.seed, objective_a=it.objective_a, objective_b=it.objective_b,
            render_a=it.render_a, render_b=it.render_b, target_votes=1,
        )
    )


@pytest.fixture
def trial(rnd):
    annotator = Annotator.objects.create(round=rnd)
    item = rnd.items.first()
    return Trial.objects.create(
        annotator=annotator, item=item, position=0, prompt=item.prompt, left_render=item.render_a, right_render=item.render_b
    )


def test_duplicate_trial_for_same_annotator_and_item_is_refused(trial):
    item = trial.item
    refused(
        lambda: Trial.objects.create(
            annotator=trial.annotator, item=item, position=1, prompt=item.prompt,
            left_render=item.render_b, right_render=item.render_a,
        )
    )


def test_second_vote_on_same_criterion_is_refused(trial):
    Vote.objects.create(trial=trial, criterion="realism", choice="left", winner=trial.left_render.objective, response_ms=900)
    refused(lambda: Vote.objects.create(trial=trial, criterion="realism", choice="right", winner="ITC", response_ms=5))
    # the other criterion is a different vote
    Vote.objects.create(trial=trial, criterion="alignment", choice="tie", winner="tie", response_ms=900)


@pytest.mark.parametrize(
    "fields",
    [
        {"criterion": "beauty", "choice": "left", "winner": "SHIFT"},
        {"criterion": "realism", "choice": "up", "winner": "SHIFT"},
        {"criterion": "realism", "choice": "tie", "winner": "SHIFT"},
        {"criterion": "realism", "choice": "left", "winner": "tie"},
    ],
)
def test_invalid_vote_values_are_refused(trial, fields):
    refused(lambda: Vote.objects.create(trial=trial, response_ms=1, **fields))


def test_invalid_status_and_objective_values_are_refused(rnd):
    refused(lambda: StudyRound.objects.filter(pk=rnd.pk).update(status="paused"))
    refused(lambda: Render.objects.filter(round=rnd).update(objective="CLIP"))
    # done without an image is not a finished render
    refused(lambda: Render.objects.filter(round=rnd).update(status="done"))


def test_item_counters_cannot_exceed_target(rnd):
    item = rnd.items.first()
    refused(lambda: ComparisonItem.objects.filter(pk=item.pk).update(assigned=item.target_votes + 1))
    refused(lambda: ComparisonItem.objects.filter(pk=item.pk).update(completed=1, assigned=0))


def test_same_prolific_participant_cannot_enter_a_round_twice(rnd):
    Annotator.objects.create(round=rnd, prolific_pid="P1")
    refused(lambda: Annotator.objects.create(round=rnd, prolific_pid="P1"))
    Annotator.objects.create(round=rnd)  # anonymous annotators have no pid
    Annotator.objects.create(round=rnd)


# --- the study record is append-only (studyapp/sql/append_only_0006.sql) ---------------------------


@pytest.fixture
def answered(rnd):
    """An annotator with two answered trials of real items, counters kept as the allocator keeps them."""
    from django.utils import timezone

    ann = Annotator.objects.create(round=rnd)
    for pos, item in enumerate(rnd.items.order_by("pk")[:2]):
        t = Trial.objects.create(annotator=ann, item=item, position=pos, prompt=item.prompt, left_render=item.render_a,
                                 right_render=item.render_b, answered_at=timezone.now())
        Vote.objects.create(trial=t, criterion="realism", choice="left", winner=item.objective_a, response_ms=900)
        ComparisonItem.objects.filter(pk=item.pk).update(assigned=1, completed=1)
    return ann


def snapshot(rnd):
    return (Annotator.objects.count(), Trial.objects.count(), Vote.objects.count(),
            list(rnd.items.order_by("pk").values_list("assigned", "completed")))


@pytest.mark.parametrize("what", ["vote", "trial", "annotator", "round"])
def test_deleting_any_part_of_the_record_is_refused_by_postgresql(rnd, answered, what):
    from studyapp.services.allocation import items_consistency_problems

    before = snapshot(rnd)
    target = {
        "vote": lambda: Vote.objects.filter(trial__annotator=answered).first().delete(),
        "trial": lambda: Trial.objects.filter(annotator=answered).first().delete(),
        "annotator": lambda: answered.delete(),  # the admin's old cascade: votes, trials, annotator
        "round": lambda: StudyRound.objects.get(pk=rnd.pk).delete(),
    }[what]
    refused(target)
    # bulk deletes and raw SQL go through the same trigger
    refused(lambda: Vote.objects.all().delete())
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM studyapp_trial")
    assert snapshot(rnd) == before
    assert items_consistency_problems(round_id=rnd.pk) == []


def test_an_annotators_pseudonym_and_round_cannot_change_but_its_progress_can(rnd, answered, round_config):
    other = round_create(config={**round_config, "name": "other"})
    refused(lambda: Annotator.objects.filter(pk=answered.pk).update(pseudonym="forged"))
    refused(lambda: Annotator.objects.filter(pk=answered.pk).update(round=other))
    # the annotator's own progress still moves (the hot path updates these columns)
    Annotator.objects.filter(pk=answered.pk).update(status="completed", qc_status="pass")
    answered.refresh_from_db()
    answered.save()  # a full save rewrites the same pseudonym: allowed
    assert (answered.status, answered.qc_status) == ("completed", "pass")


def test_exclusions_cannot_be_deleted_or_rewritten(rnd, answered, django_user_model):
    from studyapp.models import AnnotatorExclusion

    user = django_user_model.objects.create_user("res", is_staff=True)
    ex = AnnotatorExclusion.objects.create(annotator=answered, reason="speeding", excluded_by=user, excluded_by_name="res")
    refused(lambda: AnnotatorExclusion.objects.filter(pk=ex.pk).delete())
    refused(lambda: AnnotatorExclusion.objects.filter(pk=ex.pk).update(reason="something else"))
    refused(lambda: AnnotatorExclusion.objects.create(annotator=answered, reason="again", excluded_by_name="res"))
    refused(lambda: AnnotatorExclusion.objects.create(annotator=Annotator.objects.create(round=rnd), reason="", excluded_by_name="res"))
    user.delete()  # the account may go; who decided stays
    ex.refresh_from_db()
    assert (ex.excluded_by, ex.excluded_by_name, ex.reason) == (None, "res", "speeding")


def test_the_record_triggers_never_fire_on_the_annotator_hot_path():
    """Votes and trials are inserted and updated on every request: only DELETE triggers may sit
    on them (an INSERT or UPDATE trigger would cost every answer). On annotators, UPDATE
    triggers are limited to the identity columns, which the hot path never sets."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """SELECT c.relname, t.tgname, t.tgtype, array_length(t.tgattr::int2[], 1)
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
               WHERE NOT t.tgisinternal AND c.relname LIKE 'studyapp_%'"""
        )
        triggers = cur.fetchall()
    insert_bit, delete_bit, update_bit = 4, 8, 16  # pg_trigger.tgtype (TRIGGER_TYPE_*)
    by_table = {}
    for table, name, tgtype, n_columns in triggers:
        by_table.setdefault(table, []).append(name)
        assert not tgtype & insert_bit, name
        if table in ("studyapp_vote", "studyapp_trial", "studyapp_comparisonitem"):
            assert tgtype & delete_bit and not tgtype & update_bit, name
        if tgtype & update_bit:
            assert n_columns, f"{name} fires on every UPDATE of {table}"
    assert {"studyapp_vote", "studyapp_trial", "studyapp_annotator"} <= set(by_table)
