"""An annotator goes from the link to the completion code in headless Chromium, using only the
keyboard; the votes in PostgreSQL must be exactly what was pressed, with the winner resolved on
the server from the stored sides."""

from __future__ import annotations

import pytest

from studyapp.models import Annotator, Trial, Vote
from tests.conftest import chromium_or_skip
from tests.studyapp.factories import make_ready_round

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
KEY = {("realism", "left"): "q", ("realism", "tie"): "w", ("realism", "right"): "e",
       ("alignment", "left"): "a", ("alignment", "tie"): "s", ("alignment", "right"): "d"}
# Answers per main trial number (1-based): (realism, alignment).
PLAN = {1: ("left", "right"), 2: ("right", "tie"), 3: ("tie", "left"), 4: ("right", "right")}
UNLOCKED = "p => document.querySelector('input[name=position]').value === p && !document.getElementById('trial-form').classList.contains('locked')"


def choose_radio(page, index: int):
    """Focus the next radio group with Tab, then pick option ``index`` with the arrow keys."""
    page.keyboard.press("Tab")
    if index == 0:
        page.keyboard.press("Space")
    for _ in range(index):
        page.keyboard.press("ArrowDown")


def answer_check(page, indices):
    for i in indices:
        choose_radio(page, i)
    page.keyboard.press("Tab")  # the submit button
    page.keyboard.press("Enter")


def src(page, selector: str) -> str:
    return page.eval_on_selector(selector, "e => e.src")


def current_position(page) -> int:
    return int(page.input_value("input[name=position]"))


def wait_unlocked(page, position: int):
    page.wait_for_function(UNLOCKED, arg=str(position), timeout=15000)


def press_answers(page, realism: str, alignment: str):
    page.keyboard.press(KEY[("realism", realism)])
    page.keyboard.press(KEY[("alignment", alignment)])


def test_keyboard_only_annotator_from_link_to_completion_code(server, round_config, monkeypatch):
    chromium = chromium_or_skip()
    # Playwright's sync API runs an event loop in this thread; the ORM reads below are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    rnd = make_ready_round(round_config, min_view_ms=400, practice_trials=1, trials_per_annotator=4, attention_check_rate=0.25)
    link = f"{server.url}/a/{rnd.token}/?PROLIFIC_PID=60aa11bb22cc33dd44ee55ff&STUDY_ID=study1&SESSION_ID=sess1"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15000)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(link)

        page.wait_for_selector("#consent-yes:focus")
        page.keyboard.press("Enter")  # consent
        page.wait_for_url("**/instructions/")
        page.wait_for_selector("#to-check:focus")
        page.keyboard.press("Enter")
        page.wait_for_url("**/check/")

        answer_check(page, [0, 0, 0])  # wrong: first attempt fails
        page.wait_for_selector("#check-error")
        assert "1 more attempt" in page.inner_text("#check-error")
        answer_check(page, [1, 0, 2])  # right
        page.wait_for_url("**/trial/")

        # Practice, with feedback; Enter continues.
        pos = current_position(page)
        assert page.inner_text("#phase-label") == "Practice"
        assert "locked" in page.get_attribute("#trial-form", "class")  # minimum viewing time
        wait_unlocked(page, pos)
        practice = Trial.objects.get(annotator__round=rnd, position=pos)
        press_answers(page, practice.expected_side, practice.expected_side)
        page.keyboard.press("Enter")
        page.wait_for_selector("#feedback:not([hidden])")
        assert "Correct!" in page.inner_text("#feedback-text")
        page.keyboard.press("Enter")

        pressed: dict[int, tuple[str, str]] = {}
        for number in range(1, 5):
            page.wait_for_function(
                "n => document.getElementById('progress-text').textContent.trim() === n + ' / 4'", arg=number
            )
            pos = current_position(page)
            wait_unlocked(page, pos)
            assert page.is_visible("#img-left") and page.is_visible("#img-right")
            if number == 1:  # zoom: left, right, close
                page.keyboard.press("z")
                assert page.is_visible("#lightbox")
                assert src(page, "#lightbox-img") == src(page, "#img-left")
                page.keyboard.press("z")
                assert src(page, "#lightbox-img") == src(page, "#img-right")
                page.keyboard.press("z")
                assert page.is_hidden("#lightbox")
            realism, alignment = PLAN[number]
            press_answers(page, realism, alignment)
            page.keyboard.press("Enter")
            pressed[pos] = (realism, alignment)
            if number == 2:
                # Undo: U brings the answered trial back; change realism, submit, continue.
                page.wait_for_function("p => document.querySelector('input[name=position]').value !== p", arg=str(pos))
                page.keyboard.press("u")
                wait_unlocked(page, pos)
                assert page.is_visible("#revising")
                assert page.is_checked("input[name=realism][value=right]")
                page.keyboard.press(KEY[("realism", "left")])
                page.keyboard.press("Enter")
                pressed[pos] = ("left", alignment)
                page.wait_for_function("p => document.querySelector('input[name=position]').value !== p", arg=str(pos))
                assert page.is_hidden("#revising")

        page.wait_for_url("**/done/")
        code = page.inner_text("#completion-code")
        href = page.get_attribute("#return-link", "href")
        assert not errors, errors
        browser.close()

    assert code == rnd.completion_code
    assert href == f"https://app.prolific.com/submissions/complete?cc={rnd.completion_code}"
    ann = Annotator.objects.get(round=rnd)
    assert (ann.status, ann.prolific_pid, ann.comprehension_attempts) == ("completed", "60aa11bb22cc33dd44ee55ff", 2)
    main = Trial.objects.filter(annotator=ann, kind__in=["regular", "attention"]).select_related("left_render", "right_render")
    assert {t.position for t in main} == set(pressed)
    for t in main:
        votes = {v.criterion: v for v in Vote.objects.filter(trial=t)}
        assert (votes["realism"].choice, votes["alignment"].choice) == pressed[t.position]
        for v in votes.values():
            expected = {"left": t.left_render.objective, "right": t.right_render.objective, "tie": "tie"}[v.choice]
            assert v.winner == expected
            assert v.response_ms >= 300  # client-measured from images loaded; at least most of min_view_ms
    assert Vote.objects.filter(trial__annotator=ann).count() == 2 * 5  # practice + 4 main, both criteria

