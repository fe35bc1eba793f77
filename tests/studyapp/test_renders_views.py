"""Staff pages of rendering: progress JSON, cancel, gallery and image view are staff only."""

import pytest

from generation.spec import GenerationSpec
from studyapp.models import Render, StudyRound
from studyapp.services import renders as svc
from studyapp.services.rounds import round_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def rnd(round_config, settings):
    settings.CELERY_BROKER_URL = None
    cfg = {**round_config, "prompt_limit": 1, "objectives": ["SHIFT", "ITC"], "seeds_per_prompt": 1,
           "generation": GenerationSpec.tiny(batch_size=2).to_dict()}
    return round_create(config=cfg)


def test_progress_json_is_staff_only(rnd, client, django_user_model):
    url = f"/research/rounds/{rnd.pk}/rendering.json"
    assert client.get(url).status_code == 403
    django_user_model.objects.create_user("annotator-ish", password="x")
    client.login(username="annotator-ish", password="x")
    resp = client.get(url)
    assert resp.status_code == 403 and "staff login required" in resp.json()["error"]


def test_progress_json_counts(rnd, staff_client):
    data = staff_client.get(f"/research/rounds/{rnd.pk}/rendering.json").json()
    # A round never launched has nothing queued: its renders are "not launched" (issue 11 item 14).
    assert data == {"round_status": "draft", "total": 2, "done": 0, "failed": 0, "pending": 2, "queued": 0,
                    "not_launched": 2, "running": 0, "cancelled": 0, "stalled": 0, "active": False, "percent": 0,
                    "failures": []}
    assert staff_client.get("/research/rounds/999999/rendering.json").status_code == 404


def test_cancel_then_launch_again(rnd, staff_client, django_capture_on_commit_callbacks):
    sent = []
    with django_capture_on_commit_callbacks(execute=True):
        svc.renders_launch(round_id=rnd.pk, dispatch=sent.extend)
    assert len(sent) == 2 and StudyRound.objects.get(pk=rnd.pk).status == "rendering"
    page = staff_client.get(f"/research/rounds/{rnd.pk}/").content.decode()
    assert "Cancel" in page and "rendering.js" in page
    resp = staff_client.post(f"/research/rounds/{rnd.pk}/renders/cancel/", follow=True)
    assert "2 queued render(s) cancelled" in resp.content.decode()
    assert set(rnd.renders.values_list("status", flat=True)) == {"cancelled"}
    assert StudyRound.objects.get(pk=rnd.pk).status == "draft"
    # cancelling twice is refused with a message, not an error page
    resp = staff_client.post(f"/research/rounds/{rnd.pk}/renders/cancel/", follow=True)
    assert resp.status_code == 200 and "not rendering: there is nothing to cancel" in resp.content.decode()
    # launching again queues the cancelled renders; a task for a cancelled render does nothing
    with django_capture_on_commit_callbacks(execute=True):
        result = svc.renders_launch(round_id=rnd.pk, dispatch=sent.extend)
    assert result.enqueued == 2 and set(rnd.renders.values_list("status", flat=True)) == {"queued"}


def test_launch_of_an_open_round_is_refused_with_a_message(rnd, staff_client):
    StudyRound.objects.filter(pk=rnd.pk).update(status="closed", opened_at="2026-01-01T00:00Z", closed_at="2026-01-02T00:00Z")
    resp = staff_client.post(f"/research/rounds/{rnd.pk}/renders/launch/", follow=True)
    assert resp.status_code == 200 and "its images are frozen" in resp.content.decode()


def test_render_round_command_messages(rnd, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no round with id 999999"):
        call_command("render_round", "999999")
    StudyRound.objects.filter(pk=rnd.pk).update(status="closed", opened_at="2026-01-01T00:00Z", closed_at="2026-01-02T00:00Z")
    with pytest.raises(CommandError, match="is closed: its images are frozen"):
        call_command("render_round", str(rnd.pk))


def test_gallery_and_images_are_staff_only(rnd, staff_client, django_capture_on_commit_callbacks):
    from django.test import Client

    from studyapp.tasks import render_units_in_process

    client = Client()  # anonymous (staff_client is pytest-django's logged-in client)

    with django_capture_on_commit_callbacks(execute=True):
        svc.renders_launch(round_id=rnd.pk, dispatch=render_units_in_process)
    r = rnd.renders.first()
    assert client.get(f"/research/rounds/{rnd.pk}/gallery/").status_code == 302
    assert client.get(f"/research/renders/{r.pk}/image.png").status_code == 302
    page = staff_client.get(f"/research/rounds/{rnd.pk}/gallery/").content.decode()
    assert f"/research/renders/{r.pk}/image.png" in page and "SHIFT" in page and "ITC" in page
    assert "Tiny random weights" in page
    resp = staff_client.get(f"/research/renders/{r.pk}/image.png")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert b"".join(resp.streaming_content)[:4] == b"\x89PNG"
    Render.objects.filter(pk=r.pk).update(status="failed", image="", provenance=None)
    assert staff_client.get(f"/research/renders/{r.pk}/image.png").status_code == 404


def test_cuda_out_of_memory_splits_the_batch(round_config, monkeypatch, django_capture_on_commit_callbacks):
    """Fault injection: no GPU on the test machines, so render_batch raises CUDA OOM above one image."""
    import torch

    import generation.pipeline as pipeline
    from studyapp.tasks import render_units_in_process

    real, sizes = pipeline.render_batch, []

    def oom_above_one(models, spec, **kw):
        sizes.append(len(kw["prompts"]))
        if len(kw["prompts"]) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(models, spec, **kw)

    monkeypatch.setattr(pipeline, "render_batch", oom_above_one)
    cfg = {**round_config, "prompt_limit": 2, "objectives": ["SHIFT", "ITC"], "seeds_per_prompt": 1,
           "generation": GenerationSpec.tiny(batch_size=2).to_dict()}
    rnd = round_create(config=cfg)
    with django_capture_on_commit_callbacks(execute=True):
        svc.renders_launch(round_id=rnd.pk, dispatch=render_units_in_process)
    assert sizes == [2, 1, 1, 2, 1, 1]  # per objective: a batch of two, OOM, then each half
    assert set(rnd.renders.values_list("status", flat=True)) == {"done"}
    assert StudyRound.objects.get(pk=rnd.pk).status == "ready"


def test_cuda_out_of_memory_with_one_image_fails_with_a_message(rnd, monkeypatch, django_capture_on_commit_callbacks):
    """Fault injection, as above: out of memory at every size."""
    import torch

    import generation.pipeline as pipeline
    from studyapp.tasks import render_units_in_process

    def always_oom(models, spec, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(pipeline, "render_batch", always_oom)
    with django_capture_on_commit_callbacks(execute=True):
        svc.renders_launch(round_id=rnd.pk, dispatch=render_units_in_process)
    errors = set(rnd.renders.values_list("status", "error"))
    assert len(errors) == 1 and next(iter(errors))[0] == "failed"
    assert "CUDA out of memory with a batch of one image" in next(iter(errors))[1]


def test_running_render_without_a_live_worker_shows_as_stalled(rnd, staff_client, django_capture_on_commit_callbacks):
    sent = []
    with django_capture_on_commit_callbacks(execute=True):
        svc.renders_launch(round_id=rnd.pk, dispatch=sent.extend)
    unit = sent[0]
    (claim,) = svc.render_claim(render_ids=list(unit.render_ids), objective=unit.objective)
    url = f"/research/rounds/{rnd.pk}/rendering.json"
    data = staff_client.get(url).json()
    assert data["running"] == 1 and data["stalled"] == 0 and data["active"]  # held: a live worker
    svc.render_locks_release([claim.render_id])  # the worker "dies"
    data = staff_client.get(url).json()
    assert data["running"] == 1 and data["stalled"] == 1
    assert "have no live worker" in staff_client.get(f"/research/rounds/{rnd.pk}/").content.decode()
    # resending reclaims it at once
    with django_capture_on_commit_callbacks(execute=True):
        result = svc.renders_launch(round_id=rnd.pk, dispatch=sent.extend)
    assert result.enqueued == 2 and staff_client.get(url).json()["stalled"] == 0
