"""The round page in headless Chromium: launch rendering, watch the live counts, see the round
become ready without reloading by hand (the page's poller reloads on the status change)."""

from __future__ import annotations

import pytest

from generation.spec import GenerationSpec
from studyapp.models import StudyRound
from studyapp.services.prompts import builtin_prompt_sets_load
from studyapp.services.rounds import round_create
from tests.conftest import chromium_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("one_torch_thread")]

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@pytest.fixture
def server(live_server):
    yield live_server
    from django.db import connection

    with connection.cursor() as cur:  # sessions of request and render threads, so the test DB can be dropped
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_launch_and_live_progress_on_the_round_page(server, round_config, settings, client, staff_user, monkeypatch):
    chromium = chromium_or_skip()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    settings.CELERY_BROKER_URL = None
    settings.RENDER_DEVICE = "cpu"
    builtin_prompt_sets_load()
    rnd = round_create(config={**round_config, "prompt_limit": 2, "objectives": ["SHIFT", "ITC"], "seeds_per_prompt": 1,
                               "generation": GenerationSpec.tiny(batch_size=2).to_dict()})
    client.force_login(staff_user)
    cookie = {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 2400})  # lazy images all in view
        context.add_cookies([cookie])
        page = context.new_page()
        page.goto(f"{server.url}/research/rounds/{rnd.pk}/")
        assert "Tiny random weights" in page.inner_text("#rendering")
        assert page.inner_text("#render-done") == "0" and page.inner_text("#render-total") == "4"
        page.click("text=Launch rendering")
        page.wait_for_selector(".badge.status-rendering")
        # The poller updates the counts, then reloads the page when the round becomes ready.
        page.wait_for_selector(".badge.status-ready", timeout=120_000)
        assert page.inner_text("#render-done") == "4" and page.inner_text("#render-failed") == "0"
        assert page.is_hidden("#render-failures")
        page.click("text=Gallery (unblinded)")
        page.wait_for_selector("td.shot img")
        page.wait_for_function(
            "() => [...document.querySelectorAll('td.shot img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000,
        )
        sizes = page.eval_on_selector_all("td.shot img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
        assert len(sizes) == 4 and all(sizes) and len(set(sizes)) == 1  # every image loaded (tiny preset's size)
        browser.close()
    assert StudyRound.objects.get(pk=rnd.pk).status == StudyRound.Status.READY
