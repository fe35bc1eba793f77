"""Every page under the Content-Security-Policy in headless Chromium: no violation reported (an
inline script or handler the policy blocks would silently break a page), no script error.

Set SHOTS_DIR to also save screenshots of the pages at 1366x768 and 390x844."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from studyapp.models import Annotator
from tests.conftest import chromium_or_skip
from tests.studyapp.factories import make_ready_round
from tests.studyapp.test_results_rows import add_votes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@pytest.fixture
def server(live_server):
    return live_server  # leftover database sessions are ended once, after the last browser test


def test_pages_run_under_the_content_security_policy(server, round_config, django_user_model, client, monkeypatch):
    chromium = chromium_or_skip()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    rnd = make_ready_round({**round_config, "prompt_limit": 2, "seeds_per_prompt": 1})
    add_votes(rnd, n_annotators=2, practice=False)
    staff = django_user_model.objects.create_superuser("alice", password="correct horse battery staple 42")
    client.force_login(staff)
    ann = Annotator.objects.filter(round=rnd).first()
    staff_pages = [
        "/research/", f"/research/rounds/{rnd.pk}/", f"/research/rounds/{rnd.pk}/gallery/", "/research/prompt-sets/",
        "/research/prompt-sets/import/", "/research/rounds/new/", "/admin/", "/admin/studyapp/annotator/",
        f"/admin/studyapp/annotator/{ann.pk}/change/", "/admin/studyapp/vote/", "/admin/studyapp/studyround/",
    ]
    public_pages = ["/accounts/login/", "/admin/login/", f"/a/{rnd.token}/", "/a/no-such-round/"]
    shots = os.environ.get("SHOTS_DIR")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        problems: list[str] = []
        for width, height in ((1366, 768), (390, 844)) if shots else ((1366, 768),):
            for logged_in, pages in ((False, public_pages), (True, staff_pages)):
                context = browser.new_context(viewport={"width": width, "height": height})
                if logged_in:
                    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}])
                page = context.new_page()
                page.on("console", lambda m, problems=problems: m.type == "error" and problems.append(f"{page.url}: {m.text}"))
                page.on("pageerror", lambda e, problems=problems: problems.append(f"{page.url}: {e}"))
                for path in pages:
                    resp = page.goto(f"{server.url}{path}")
                    assert resp.status in (200, 404), (path, resp.status)
                    assert "Content-Security-Policy" in {k.title(): v for k, v in resp.headers.items()}
                    page.wait_for_load_state("networkidle")
                    if shots:
                        name = path.strip("/").replace("/", "_") or "root"
                        page.screenshot(path=str(Path(shots) / f"{name}-{width}.png"), full_page=True)
                context.close()
        browser.close()
    csp = [m for m in problems if "Content Security Policy" in m or "Refused to" in m]
    assert csp == [], csp
    # the only console errors allowed are the 404 of the unknown round link
    assert [m for m in problems if "404" not in m] == []
