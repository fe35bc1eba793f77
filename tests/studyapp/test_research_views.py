"""Researcher pages: staff only, round creation from the form, status buttons."""

import pytest

from studyapp.models import StudyRound

pytestmark = pytest.mark.django_db


def test_research_pages_need_a_staff_login(client):
    resp = client.get("/research/")
    assert resp.status_code == 302 and "login" in resp["Location"]


def test_create_round_from_the_form_then_transition(staff_client):
    form = {
        "name": "web round", "prompt_set": "drawbench", "prompt_limit": 2, "objectives": ["SHIFT", "ITC"],
        "seeds_per_prompt": 1, "comparisons": "shift-vs-baselines", "votes_per_item": 2, "trials_per_annotator": 5,
        "attention_check_rate": 0.1, "tie_rule": "exclude", "round_seed": 0, "generation": "{}",
    }
    resp = staff_client.post("/research/rounds/new/", form)
    rnd = StudyRound.objects.get(name="web round")
    assert resp.status_code == 302 and resp["Location"].endswith(f"/research/rounds/{rnd.pk}/")
    page = staff_client.get(f"/research/rounds/{rnd.pk}/").content.decode()
    assert "web round" in page and rnd.token in page
    # an illegal move is refused with a message, not an error page
    resp = staff_client.post(f"/research/rounds/{rnd.pk}/transition/", {"to": "open"}, follow=True)
    assert resp.status_code == 200 and "cannot become open" in resp.content.decode()


def test_form_shows_config_problems(staff_client):
    form = {
        "name": "x", "prompt_set": "drawbench", "objectives": ["ITC", "CAP"], "seeds_per_prompt": 1,
        "comparisons": "shift-vs-baselines", "votes_per_item": 1, "trials_per_annotator": 1,
        "attention_check_rate": 0, "tie_rule": "exclude", "round_seed": 0, "generation": "{}",
    }
    resp = staff_client.post("/research/rounds/new/", form)
    assert resp.status_code == 200 and "needs SHIFT" in resp.content.decode()
    assert not StudyRound.objects.exists()


def test_prompt_set_import_page_reports_line_numbers(staff_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = SimpleUploadedFile("p.tsv", b"prompt\tcategory\n\tx\n")
    resp = staff_client.post("/research/prompt-sets/import/", {"name": "new-set", "file": bad})
    assert "line 2: empty prompt" in resp.content.decode()
    good = SimpleUploadedFile("p.tsv", b"prompt\tcategory\na cat\tx\n")
    resp = staff_client.post("/research/prompt-sets/import/", {"name": "new-set", "file": good})
    assert resp.status_code == 302
