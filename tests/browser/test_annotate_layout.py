"""The annotator pages as a person sees them, in headless Chromium on a 1366x768 laptop and a
390x844 phone (issue 11, items 3, 4, 6 and 9): every new trial starts with its text in view
(after each submit, after practice feedback, after undo), the laptop shows the whole decision
without scrolling, a full study says so before consent, a stale second tab cannot overwrite an
answer. Screenshots go to /tmp/shots/annot/ (or $SHOTS_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db.models import F

from studyapp.models import Annotator, ComparisonItem, Trial, Vote
from tests.browser.test_annotate_keyboard import LAUNCH_ARGS
from tests.conftest import chromium_or_skip
from tests.studyapp.factories import make_ready_round

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("SHOTS_DIR", "/tmp/shots/annot"))
LAPTOP = {"viewport": {"width": 1366, "height": 768}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DEVICES = {"laptop": LAPTOP, "phone": PHONE}
# Is the element inside the viewport, and is it what a person sees at its centre (not covered)?
IN_VIEW = """sel => { const e = document.querySelector(sel); const r = e.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth
         && (hit === e || e.contains(hit)); }"""
UNLOCKED = "p => document.querySelector('input[name=position]').value === p && !document.getElementById('trial-form').classList.contains('locked')"


@pytest.fixture
def browser(monkeypatch):
    chromium = chromium_or_skip()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM reads in the test thread
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        yield b
        b.close()


def new_page(browser, device: str, context=None):
    context = context or browser.new_context(**DEVICES[device])
    page = context.new_page()
    page.set_default_timeout(20000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    return page


def assert_prompt_in_view(page, when: str):
    if not page.evaluate(IN_VIEW, "p.prompt"):
        page.screenshot(path=str(SHOTS / "FAILED-prompt-not-in-view.png"))
        box = page.evaluate("() => JSON.stringify(document.querySelector('#prompt').getBoundingClientRect())")
        raise AssertionError(f"the trial's text is not in view {when}: {box}, scrollY {page.evaluate('window.scrollY')}")


def position(page) -> int:
    return int(page.input_value("input[name=position]"))


def wait_unlocked(page, pos: int):
    page.wait_for_function(UNLOCKED, arg=str(pos))


def wait_moved_on(page, pos: int):
    page.wait_for_function("p => document.querySelector('input[name=position]').value !== p", arg=str(pos))


def choose(page, criterion: str, value: str):
    page.click(f"label.choice:has(input[name={criterion}][value={value}])")


def enter_study(page, link: str, device: str):
    page.goto(link)
    page.screenshot(path=str(SHOTS / f"consent-{device}.png"), full_page=True)
    page.click("#consent-yes")
    page.wait_for_url("**/instructions/")
    page.screenshot(path=str(SHOTS / f"instructions-{device}.png"), full_page=True)
    # The instructions name the sides as the trial will (Top/Bottom on a phone), and the
    # examples are laid out like the trial's images (stacked on a phone).
    text = page.inner_text(".card")
    sides = ("Top", "Bottom") if device == "phone" else ("Left", "Right")
    hidden = ("Left", "Right") if device == "phone" else ("Top", "Bottom")
    assert all(f"Photograph: {w}" in text or f"Text: {w}" in text for w in sides), text
    assert not any(f"Photograph: {w}" in text or f"Text: {w}" in text for w in hidden), text
    boxes = [page.locator(".ex-pair").first.locator(".ex-img").nth(i).bounding_box() for i in (0, 1)]
    stacked = boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"]
    assert stacked is (device == "phone"), boxes
    page.click("#to-check")
    page.wait_for_url("**/check/")
    for field, value in (("q1", "b"), ("q2", "a"), ("q3", "c")):
        page.check(f"input[name={field}][value={value}]")
    page.click("#check-submit")
    page.wait_for_url("**/trial/")


@pytest.mark.parametrize("device", ["laptop", "phone"])
def test_every_new_trial_starts_with_its_text_in_view(server, browser, round_config, device):
    rnd = make_ready_round(round_config, min_view_ms=300, practice_trials=1, trials_per_annotator=4,
                           attention_check_rate=0.25)
    page = new_page(browser, device)
    enter_study(page, f"{server.url}/a/{rnd.token}/?PROLIFIC_PID=60aa11bb22cc33dd44ee55ff&STUDY_ID=s1&SESSION_ID=x1", device)

    pos = position(page)
    assert_prompt_in_view(page, "on the first trial")
    # The locked Submit looks locked (disabled, greyed), until the minimum viewing time passed.
    assert page.is_disabled("#submit")
    assert page.eval_on_selector("#submit", "e => getComputedStyle(e).cursor") == "not-allowed"
    locked_bg = page.eval_on_selector("#submit", "e => getComputedStyle(e).backgroundColor")
    wait_unlocked(page, pos)
    assert page.eval_on_selector("#submit", "e => getComputedStyle(e).backgroundColor") != locked_bg
    if device == "laptop":
        # The whole decision fits the screen: text, both images, both questions, Submit.
        for sel in ("p.prompt", "#img-left", "#img-right", "fieldset[data-criterion=realism]",
                    "fieldset[data-criterion=alignment]", "#submit"):
            assert page.evaluate(IN_VIEW, sel), f"{sel} is not on the 1366x768 screen without scrolling"
        assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight + 1") or \
            page.evaluate(IN_VIEW, "#submit")
    else:
        # Phone wording: Top/Bottom everywhere, no keyboard hints.
        assert page.is_visible("text=Top") and page.is_visible("text=Bottom")
        labels = page.inner_text("fieldset[data-criterion=realism]")
        assert "Top" in labels and "Bottom" in labels and "Left" not in labels and "Right" not in labels
        assert page.evaluate("[...document.querySelectorAll('kbd')].every(k => k.offsetParent === null)")
        assert not page.is_visible(".keys-help")
    page.screenshot(path=str(SHOTS / f"trial-practice-{device}.png"))

    # Practice: answer, read the feedback, continue.
    practice = Trial.objects.get(annotator__round=rnd, position=pos)
    choose(page, "realism", practice.expected_side)
    choose(page, "alignment", practice.expected_side)
    page.click("#submit")
    page.wait_for_selector("#feedback:not([hidden])")
    assert page.evaluate(IN_VIEW, "#feedback-continue"), "the practice feedback is off-screen"
    if device == "phone":
        assert_prompt_in_view(page, "while the practice feedback shows (pinned text)")
    page.screenshot(path=str(SHOTS / f"feedback-{device}.png"))
    page.click("#feedback-continue")
    wait_moved_on(page, pos)
    assert_prompt_in_view(page, "after the practice feedback")

    for number in range(1, 5):
        page.wait_for_function("n => document.getElementById('progress-text').textContent.trim() === n + ' / 4'",
                               arg=number)
        pos = position(page)
        wait_unlocked(page, pos)
        assert_prompt_in_view(page, f"on comparison {number}")
        if number == 1:
            page.click("#img-left")  # the zoom view: smoothed like the inline images
            assert page.is_visible("#lightbox")
            assert page.eval_on_selector("#lightbox-img", "e => getComputedStyle(e).imageRendering") == "auto"
            assert page.inner_text("#lightbox-side") == {"laptop": "Left image", "phone": "Top image"}[device]
            page.screenshot(path=str(SHOTS / f"zoom-{device}.png"))
            page.click("#lightbox")
            assert page.is_hidden("#lightbox")
            page.screenshot(path=str(SHOTS / f"trial-{device}.png"))
        choose(page, "realism", "left")
        choose(page, "alignment", "right")
        page.click("#submit")  # on a phone this scrolls down to the button first
        if number < 4:
            wait_moved_on(page, pos)
            assert_prompt_in_view(page, f"after submitting comparison {number}")
        if number == 2:
            page.click("#undo")
            wait_unlocked(page, pos)
            assert page.is_visible("#revising")
            assert_prompt_in_view(page, "after undo")
            choose(page, "realism", "tie")
            page.click("#submit")
            wait_moved_on(page, pos)
            assert_prompt_in_view(page, "after submitting the changed answer")

    page.wait_for_url("**/done/")
    assert page.is_visible("#copy-code")
    page.click("#copy-code")
    page.wait_for_function("document.getElementById('copy-status').textContent.length > 0")
    page.screenshot(path=str(SHOTS / f"done-{device}.png"))
    assert not page.errors, page.errors
    ann = Annotator.objects.get(round=rnd)
    assert ann.status == "completed"
    changed = Trial.objects.filter(annotator=ann, kind__in=["regular", "attention"]).order_by("position")[1]
    assert Vote.objects.get(trial=changed, criterion="realism").choice == "tie"


@pytest.mark.parametrize("device", ["laptop", "phone"])
def test_a_full_study_shows_no_places_left_before_consent(server, browser, round_config, device):
    rnd = make_ready_round(round_config, min_view_ms=0)
    ComparisonItem.objects.filter(round=rnd).update(assigned=F("target_votes"))
    page = new_page(browser, device)
    page.goto(f"{server.url}/a/{rnd.token}/?PROLIFIC_PID=60aa11bb22cc33dd44ee55ff&STUDY_ID=s1&SESSION_ID=x1")
    assert page.inner_text("h1") == "No places left"
    assert page.is_visible("#return-advice") and "Return submission" in page.inner_text("#return-advice")
    assert page.locator("#consent-yes").count() == 0
    page.screenshot(path=str(SHOTS / f"full-{device}.png"), full_page=True)
    assert not Annotator.objects.filter(round=rnd).exists()


def test_a_stale_second_tab_cannot_overwrite_an_answer(server, browser, round_config):
    rnd = make_ready_round(round_config, min_view_ms=0, practice_trials=0, trials_per_annotator=4,
                           attention_check_rate=0.0)
    first = new_page(browser, "laptop")
    enter_study(first, f"{server.url}/a/{rnd.token}/", "laptop-2tabs")
    second = new_page(browser, "laptop", context=first.context)  # same browser, same cookie
    second.goto(f"{server.url}/a/{rnd.token}/trial/")
    pos = position(first)
    assert position(second) == pos
    wait_unlocked(first, pos)
    wait_unlocked(second, pos)

    choose(first, "realism", "left")
    choose(first, "alignment", "left")
    first.click("#submit")
    wait_moved_on(first, pos)

    choose(second, "realism", "right")
    choose(second, "alignment", "right")
    second.click("#submit")
    second.wait_for_selector("#error:not([hidden])")
    assert "already answered" in second.inner_text("#error")
    wait_moved_on(second, pos)  # the stale tab moves on to the current trial
    assert position(second) == position(first)
    second.screenshot(path=str(SHOTS / "stale-tab-laptop.png"))

    t = Trial.objects.get(annotator__round=rnd, position=pos)
    assert dict(Vote.objects.filter(trial=t).values_list("criterion", "choice")) == {"realism": "left",
                                                                                      "alignment": "left"}
    assert not first.errors and not second.errors
