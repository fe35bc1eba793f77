"""Round creation and the status machine."""

import pytest
from django.core.files.base import ContentFile

from studyapp.exceptions import ConfigError, TransitionError
from studyapp.models import Render, StudyRound
from studyapp.services.rounds import round_create, round_transition

pytestmark = pytest.mark.django_db


def finish_renders(rnd):
    for r in rnd.renders.all():
        r.image.save(f"{r.pk}.png", ContentFile(b"png"), save=False)
        r.status = Render.Status.DONE
        r.provenance = {}
        r.save()


def test_round_create_builds_renders_and_items(round_config):
    rnd = round_create(config=round_config)
    assert rnd.status == "draft"
    # 4 prompts x 2 seeds x 4 objectives; 3 SHIFT-vs-baseline pairs per prompt and seed
    assert rnd.renders.count() == 4 * 2 * 4
    assert rnd.items.count() == 4 * 2 * 3
    assert set(rnd.items.values_list("objective_a", flat=True)) == {"SHIFT"}
    for item in rnd.items.all():
        assert (item.render_a.prompt_id, item.render_a.seed, item.render_a.objective) == (item.prompt_id, item.seed, item.objective_a)
        assert (item.render_b.prompt_id, item.render_b.seed, item.render_b.objective) == (item.prompt_id, item.seed, item.objective_b)
        assert item.target_votes == 3


def test_unknown_prompt_set_names_the_available_ones(round_config):
    with pytest.raises(ConfigError) as exc:
        round_create(config={**round_config, "prompt_set": "nope"})
    assert "no prompt set named 'nope'" in str(exc.value) and "drawbench" in str(exc.value)
    assert not StudyRound.objects.exists()


def test_status_machine_happy_path(round_config):
    rnd = round_create(config=round_config)
    round_transition(round_id=rnd.pk, to="rendering")
    with pytest.raises(TransitionError, match="not done"):
        round_transition(round_id=rnd.pk, to="ready")
    finish_renders(rnd)
    round_transition(round_id=rnd.pk, to="ready")
    rnd = round_transition(round_id=rnd.pk, to="open")
    assert rnd.opened_at is not None
    assert rnd.analysis_settings["tie_rule"] == "exclude"
    assert rnd.analysis_settings["baselines"] == ["ITC", "CAP", "BLEND"]
    rnd = round_transition(round_id=rnd.pk, to="closed")
    assert rnd.closed_at is not None


@pytest.mark.parametrize(
    "path, illegal",
    [((), "open"), ((), "closed"), (("rendering",), "open"), (("rendering", "ready", "open", "closed"), "open")],
)
def test_illegal_transitions_are_refused_with_a_message(round_config, path, illegal):
    rnd = round_create(config=round_config)
    for to in path:
        if to == "ready":
            finish_renders(rnd)
        round_transition(round_id=rnd.pk, to=to)
    before = StudyRound.objects.get(pk=rnd.pk).status
    with pytest.raises(TransitionError) as exc:
        round_transition(round_id=rnd.pk, to=illegal)
    assert f"cannot become {illegal}" in exc.value.message
    assert StudyRound.objects.get(pk=rnd.pk).status == before


def test_repeated_transition_is_idempotent(round_config):
    rnd = round_create(config=round_config)
    round_transition(round_id=rnd.pk, to="rendering")
    assert round_transition(round_id=rnd.pk, to="rendering").status == "rendering"


def test_all_pairs_round_declares_shift_against_every_other_objective(round_config):
    rnd = round_create(config={**round_config, "comparisons": "all-pairs", "objectives": ["ITC", "CAP", "SHIFT", "BLEND"]})
    finish_renders(rnd)
    round_transition(round_id=rnd.pk, to="ready")
    rnd = round_transition(round_id=rnd.pk, to="open")
    assert rnd.analysis_settings["focal"] == "SHIFT"
    assert sorted(rnd.analysis_settings["baselines"]) == ["BLEND", "CAP", "ITC"]
    assert rnd.analysis_settings["exclusions"]["min_response_ms"] == 800


def test_delete_refuses_renders_in_a_workers_hands_and_opened_rounds(round_config, django_capture_on_commit_callbacks):
    from studyapp.services import renders as render_services
    from studyapp.services.rounds import round_delete

    rnd = round_create(config=round_config)
    with django_capture_on_commit_callbacks(execute=True):
        render_services.renders_launch(round_id=rnd.pk, dispatch=lambda units: None)
    with pytest.raises(TransitionError, match="queued or running: cancel the render run first"):
        round_delete(round_id=rnd.pk)
    # a failed render run (nothing queued or running) can go
    rnd.renders.update(status=Render.Status.FAILED, error="no checkpoint")
    assert round_delete(round_id=rnd.pk) == "test round"
    assert not StudyRound.objects.filter(pk=rnd.pk).exists()
    with pytest.raises(TransitionError, match="no round with id"):
        round_delete(round_id=rnd.pk)

    opened = round_create(config=round_config)
    finish_renders(opened)
    round_transition(round_id=opened.pk, to="ready")
    round_transition(round_id=opened.pk, to="open")
    for status in ("open", "closed"):
        if status == "closed":
            round_transition(round_id=opened.pk, to="closed")
        with pytest.raises(TransitionError, match="votes are the record of the study"):
            round_delete(round_id=opened.pk)
    assert StudyRound.objects.filter(pk=opened.pk).exists()


def test_delete_refuses_a_pilots_scale_round():
    from studyapp.models_pilot import PilotRound
    from studyapp.services.pilot import pilot_create
    from studyapp.services.rounds import round_delete

    pilot = pilot_create(name="calibration", prompt_set="toyworld", generation={"preset": "tiny"},
                         objectives=["ITC", "CAP"], scales=[0, 0.1], prompt_limit=2, seeds_per_prompt=1)
    scale_round = PilotRound.objects.get(pilot=pilot, scale=0.1).round
    with pytest.raises(TransitionError, match="calibration pilot 'calibration'"):
        round_delete(round_id=scale_round.pk)
    assert PilotRound.objects.filter(pilot=pilot).count() == 2
