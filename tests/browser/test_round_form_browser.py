"""The new-round form and the round page in headless Chromium, at a laptop (1366x768) and a
phone (390x844): the live estimate follows the inputs, checkboxes sit beside their labels, nothing
overflows sideways, errors are listed together. Screenshots go to $SHOTS_DIR when it is set."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from studyapp.services import allocation, votes
from studyapp.services.rounds import round_create
from tests.conftest import chromium_or_skip
from tests.studyapp.factories import make_active_annotator, make_ready_round

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}


@pytest.fixture
def server(live_server):
    # Sessions the live server's request threads leave open are ended once, after the last
    # browser test (tests/browser/conftest.py): ending them here broke the next test's connection.
    return live_server


@pytest.fixture
def browser_page(server, client, staff_user, monkeypatch):
    chromium = chromium_or_skip()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    from studyapp.services.prompts import builtin_prompt_sets_load

    builtin_prompt_sets_load()  # a transactional test starts from an emptied database
    client.force_login(staff_user)
    cookie = {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)

        def open_page(size: str):
            w, h = SIZES[size]
            context = browser.new_context(viewport={"width": w, "height": h})
            context.add_cookies([cookie])
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            page.js_errors = errors
            return page

        yield open_page
        browser.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("SHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def no_sideways_overflow(page) -> None:
    width = page.evaluate("() => document.documentElement.clientWidth")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("size", SIZES)
def test_new_round_form_estimate_and_layout(browser_page, server, size, settings, tmp_path):
    settings.WEIGHTS_DIR = tmp_path  # no checkpoints: the paper preset warns, the toy world is chosen
    page = browser_page(size)
    page.goto(f"{server.url}/research/rounds/new/")
    page.fill("#id_name", "DrawBench pilot")
    page.select_option("#id_prompt_set", "drawbench")
    page.fill("#id_prompt_limit", "50")
    page.wait_for_function("() => document.getElementById('est-renders').textContent.startsWith('200 ')")
    assert page.inner_text("#est-items") == "150" and "not measured" in page.inner_text("#est-time") or \
        "time" in page.inner_text("#est-time")
    assert page.inner_text("#est-plan").startswith(("enough", "not enough"))
    # unticking BLEND updates the estimate: 50 prompts x 3 objectives
    page.click("label.choice:has-text('BLEND')")
    page.wait_for_function("() => document.getElementById('est-renders').textContent.startsWith('150 ')")
    # checkboxes sit on their labels' line, before the text
    for box in page.query_selector_all("#f-objectives label.choice"):
        cb = box.query_selector("input").bounding_box()
        text = box.query_selector("span").bounding_box()
        assert cb["x"] + cb["width"] <= text["x"] + 1
        assert abs((cb["y"] + cb["height"] / 2) - (text["y"] + text["height"] / 2)) < 6
    assert "missing in WEIGHTS_DIR" in page.inner_text("#f-preset")
    assert page.is_checked("input[name=preset][value=toy]")
    no_sideways_overflow(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, f"round_new_{size}")
    # errors all at once: bad JSON and a bad vote count and no SHIFT
    page.click("label.choice:has-text('SHIFT')")
    page.fill("#id_votes_per_item", "0")
    page.click("summary")
    page.fill("#id_generation", "{not json")
    page.click("button[type=submit]")
    page.wait_for_selector("#form-problems")
    problems = page.inner_text("#form-problems")
    assert "not valid JSON" in problems and "needs SHIFT" in problems and "greater than or equal to 1" in problems
    shot(page, f"round_new_errors_{size}")
    assert not page.js_errors, page.js_errors


def test_round_pages_at_both_sizes(browser_page, server, round_config, settings, tmp_path,
                                   django_capture_on_commit_callbacks):
    settings.WEIGHTS_DIR = tmp_path
    rnd = make_ready_round({**round_config, "prompt_limit": 3, "seeds_per_prompt": 1, "trials_per_annotator": 4})
    ann = make_active_annotator(rnd)
    for _ in range(3):
        nxt = allocation.trial_next(annotator_id=ann.pk)
        if nxt.trial is None:
            break
        votes.trial_answer(annotator_id=ann.pk, position=nxt.trial.position,
                           answer=votes.Answer({"realism": "left", "alignment": "right"}, {"realism": 2000, "alignment": 2000}),
                           now=nxt.trial.served_at + timedelta(seconds=10))
    draft = round_create(config={**round_config, "name": "paper draft", "prompt_limit": None})
    for size in SIZES:
        page = browser_page(size)
        page.goto(f"{server.url}/research/rounds/{rnd.pk}/")
        assert "Close round…" in page.inner_text("#round-actions")
        no_sideways_overflow(page)  # results, planner and participants tables included
        shot(page, f"round_open_{size}")
        page.goto(f"{server.url}/research/rounds/{draft.pk}/")
        assert "missing in WEIGHTS_DIR" in page.inner_text("#rendering")
        assert page.inner_text("#render-queued") == "0" and page.inner_text("#render-not-launched") == "1600"
        no_sideways_overflow(page)
        shot(page, f"round_draft_{size}")
        page.goto(f"{server.url}/research/rounds/{rnd.pk}/close/")
        shot(page, f"round_close_{size}")
        page.goto(f"{server.url}/research/prompt-sets/drawbench/?category=Colors")
        no_sideways_overflow(page)
        shot(page, f"prompt_set_{size}")
        assert not page.js_errors, page.js_errors

    retry_count_follows_failures_live(browser_page, server, round_config, django_capture_on_commit_callbacks)


def retry_count_follows_failures_live(browser_page, server, round_config, django_capture_on_commit_callbacks):
    """Issue 11 item 14: the Retry failed (N) count was the page's load-time figure."""
    from studyapp.models import Render
    from studyapp.services import renders as render_services

    rnd = round_create(config={**round_config, "name": "retry", "prompt_limit": 2, "seeds_per_prompt": 1})
    with django_capture_on_commit_callbacks(execute=True):
        render_services.renders_launch(round_id=rnd.pk, dispatch=lambda units: None)  # queued; no worker
    page = browser_page("laptop")
    page.goto(f"{server.url}/research/rounds/{rnd.pk}/")
    assert page.is_hidden("#render-retry") and page.inner_text("#render-queued") == "8"
    ids = list(rnd.renders.order_by("pk").values_list("pk", flat=True))
    Render.objects.filter(pk__in=ids[:1]).update(status="failed", error="boom 1")
    page.wait_for_function("() => document.getElementById('render-retry-count').textContent === '1'")
    assert page.is_visible("#render-retry")
    Render.objects.filter(pk__in=ids[1:3]).update(status="failed", error="boom 2")
    page.wait_for_function("() => document.getElementById('render-retry-count').textContent === '3'", timeout=15_000)
    assert page.inner_text("#render-failed") == "3" and page.inner_text("#render-queued") == "5"
    assert not page.js_errors, page.js_errors
