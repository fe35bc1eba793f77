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


def test_root_url_leads_to_the_platform_login_not_the_admin(client):
    resp = client.get("/", follow=True)
    assert resp.redirect_chain[-1][0].startswith("/accounts/login/")
    assert "Researcher log in" in resp.content.decode()
    for url in ("/research/", "/research/rounds/new/", "/research/prompt-sets/drawbench/"):
        assert client.get(url)["Location"].startswith("/accounts/login/"), url


def open_round(round_config):
    from tests.studyapp.factories import make_ready_round

    return make_ready_round({**round_config, "prompt_limit": 2, "seeds_per_prompt": 1})


def test_close_asks_first_and_says_what_closing_does(staff_client, round_config):
    rnd = open_round(round_config)
    page = staff_client.get(f"/research/rounds/{rnd.pk}/").content.decode()
    assert f"/research/rounds/{rnd.pk}/close/" in page
    confirm = staff_client.get(f"/research/rounds/{rnd.pk}/close/").content.decode()
    assert "final" in confirm and "cannot be opened again" in confirm and "This study has closed" in confirm
    # a POST without the confirmation (an old button, a script) only leads to the question
    resp = staff_client.post(f"/research/rounds/{rnd.pk}/transition/", {"to": "closed"})
    assert resp["Location"].endswith(f"/research/rounds/{rnd.pk}/close/")
    assert StudyRound.objects.get(pk=rnd.pk).status == "open"
    resp = staff_client.post(f"/research/rounds/{rnd.pk}/transition/", {"to": "closed", "confirm": "yes"}, follow=True)
    assert "Round is now closed" in resp.content.decode()
    assert StudyRound.objects.get(pk=rnd.pk).status == "closed"
    assert "only an open round can be closed" in staff_client.get(f"/research/rounds/{rnd.pk}/close/").content.decode()


def test_delete_a_draft_with_its_files_but_never_an_opened_round(staff_client, round_config, settings):
    from studyapp.models import ComparisonItem, Render
    from studyapp.services.rounds import round_create

    rnd = open_round(round_config)
    files = [settings.MEDIA_ROOT / n for n in rnd.renders.values_list("image", flat=True)]
    assert files and all(f.exists() for f in files)
    page = staff_client.get(f"/research/rounds/{rnd.pk}/").content.decode()
    assert "Delete…" not in page
    resp = staff_client.post(f"/research/rounds/{rnd.pk}/delete/", follow=True)
    assert "cannot be deleted" in resp.content.decode() and StudyRound.objects.filter(pk=rnd.pk).exists()

    draft = round_create(config={**round_config, "name": "mistake"})
    assert "Delete…" in staff_client.get(f"/research/rounds/{draft.pk}/").content.decode()
    assert "This cannot be undone" in staff_client.get(f"/research/rounds/{draft.pk}/delete/").content.decode()
    resp = staff_client.post(f"/research/rounds/{draft.pk}/delete/", follow=True)
    assert "was deleted" in resp.content.decode()
    assert not StudyRound.objects.filter(pk=draft.pk).exists()
    assert not Render.objects.filter(round_id=draft.pk).exists() and not ComparisonItem.objects.filter(round_id=draft.pk).exists()
    # the ready round's files and rows are untouched
    assert all(f.exists() for f in files) and rnd.renders.count() == len(files)


def test_delete_a_ready_round_removes_its_images(staff_client, round_config, settings):
    rnd = open_round(round_config)
    StudyRound.objects.filter(pk=rnd.pk).update(status="ready", opened_at=None)
    files = [settings.MEDIA_ROOT / n for n in rnd.renders.values_list("image", flat=True)]
    staff_client.post(f"/research/rounds/{rnd.pk}/delete/")
    assert not StudyRound.objects.filter(pk=rnd.pk).exists() and not any(f.exists() for f in files)


def test_prompt_set_page_browses_searches_and_paginates(staff_client):
    resp = staff_client.get("/research/prompt-sets/")
    assert "/research/prompt-sets/drawbench/" in resp.content.decode() and ">200<" in resp.content.decode()
    page = staff_client.get("/research/prompt-sets/drawbench/")
    html = page.content.decode()
    assert page.status_code == 200 and "200 prompts" in html and "Colors (25)" in html
    assert len(page.context["page"].object_list) == 50 and "page 1 of 4" in html
    last = staff_client.get("/research/prompt-sets/drawbench/", {"page": 4})
    assert "151–200 shown" in last.content.decode()
    found = staff_client.get("/research/prompt-sets/drawbench/", {"q": "BLUE", "category": "Colors"})
    rows = list(found.context["page"].object_list)
    assert rows and all("blue" in p.text.lower() and p.category == "Colors" for p in rows)
    none = staff_client.get("/research/prompt-sets/drawbench/", {"q": "zzzz-no-such-prompt"})
    assert "0 prompts match" in none.content.decode() and "No prompt matches" in none.content.decode()
    for junk in ({"q": "a\x00"}, {"category": "\x00"}, {"page": "x"}, {"page": "99999"}, {"q": "x" * 5000}):
        assert staff_client.get("/research/prompt-sets/drawbench/", junk).status_code == 200, junk
    assert staff_client.get("/research/prompt-sets/no-such-set/").status_code == 404
    assert staff_client.get("/research/prompt-sets/%00/").status_code == 404


def test_retry_count_and_not_launched_are_live(staff_client, round_config):
    from studyapp.services.rounds import round_create

    rnd = round_create(config={**round_config, "prompt_limit": 2, "seeds_per_prompt": 1})
    html = staff_client.get(f"/research/rounds/{rnd.pk}/").content.decode()
    assert 'id="render-not-launched">16<' not in html  # sanity of the id
    assert 'id="render-not-launched">8<' in html and 'id="render-queued">0<' in html
    assert 'id="render-retry-count"' in html  # the count the poller keeps in step


def test_delete_close_and_duplicate_need_staff(client, django_user_model, round_config):
    from studyapp.services.rounds import round_create

    draft = round_create(config=round_config)
    opened = open_round({**round_config, "name": "opened"})
    django_user_model.objects.create_user("not-staff", password="x")
    for who in ("anonymous", "not-staff"):
        if who == "not-staff":
            client.login(username="not-staff", password="x")
        assert client.post(f"/research/rounds/{draft.pk}/delete/")["Location"].startswith("/accounts/login/")
        resp = client.post(f"/research/rounds/{opened.pk}/transition/", {"to": "closed", "confirm": "yes"})
        assert resp["Location"].startswith("/accounts/login/")
        assert client.get(f"/research/rounds/new/?from={draft.pk}")["Location"].startswith("/accounts/login/")
    assert StudyRound.objects.get(pk=draft.pk) and StudyRound.objects.get(pk=opened.pk).status == "open"
    # a GET never deletes or closes
    staff = django_user_model.objects.create_user("staff2", password="x", is_staff=True)
    client.force_login(staff)
    client.get(f"/research/rounds/{draft.pk}/delete/")
    client.get(f"/research/rounds/{opened.pk}/close/")
    assert StudyRound.objects.filter(pk=draft.pk).exists() and StudyRound.objects.get(pk=opened.pk).status == "open"


@pytest.mark.django_db
def test_every_research_page_links_the_pilots(staff_client):
    for url in ("/research/", "/research/prompt-sets/", "/research/pilots/"):
        resp = staff_client.get(url)
        assert resp.status_code == 200 and 'href="/research/pilots/"' in resp.content.decode(), url
