"""PostgreSQL itself refuses duplicates and invalid values, whatever the Python code does."""

import pytest
from django.db import IntegrityError, transaction

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
