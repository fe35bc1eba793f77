"""Attacks on the annotator identity and entry, through HTTP (Django's test client, real views,
real PostgreSQL), each failing if the attack succeeds (issue 13, items 1, 3 and 7), and the
entry gates of issue 11 (study full, malformed Prolific ids, the round's consent text)."""

from __future__ import annotations

import re

import pytest
from django.core.cache import caches
from django.db.models import F
from django.test import Client
from django.urls import reverse

from studyapp.models import Annotator, ComparisonItem, Trial, Vote
from studyapp.services import annotators
from tests.studyapp.factories import CORRECT, make_ready_round

pytestmark = pytest.mark.django_db

PID = "5f1a2b3c4d5e6f7a8b9c0d1e"
JOIN = f"?PROLIFIC_PID={PID}&STUDY_ID=st123&SESSION_ID=se456"


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def rnd(round_config):
    return make_ready_round(round_config, min_view_ms=0, practice_trials=0, trials_per_annotator=4, attention_check_rate=0.0)


def url(rnd, name, *args):
    return reverse(f"annotate:{name}", args=[rnd.token, *args])


def fields_of(query: str) -> dict:
    return dict(p.split("=", 1) for p in query.lstrip("?").split("&") if p)


def join(rnd, query: str = "", client: Client | None = None, **extra) -> Client:
    """Open the link, consent, pass the check: the annotator is at the trial page."""
    client = client or Client(**extra)
    assert client.get(url(rnd, "start") + query).status_code == 200
    r = client.post(url(rnd, "consent"), {"consent": "yes", **fields_of(query)})
    assert r.status_code == 302, r.content
    assert client.post(url(rnd, "check"), CORRECT)["Location"] == url(rnd, "trial")
    return client


def answer_one(client, rnd, realism="left", alignment="left") -> dict:
    t = client.get(url(rnd, "api_next")).json()["trial"]
    r = client.post(url(rnd, "api_answer"), {"position": t["position"], "realism": realism, "alignment": alignment})
    assert r.json()["outcome"] == "recorded"
    return t


def victim_votes(victim: Annotator) -> list:
    return list(Vote.objects.filter(trial__annotator=victim).order_by("id").values_list("id", "criterion", "choice"))


def cookie_pseudonym(client, rnd) -> str | None:
    """The pseudonym in the annotator cookie the server set on this client (None if none); the
    signed value is "pseudonym:timestamp:signature" (pseudonyms are url-safe tokens, no colon)."""
    morsel = client.cookies.get("annotator")
    if morsel is None or not morsel.value:
        return None
    return morsel.value.split(":")[0]


# -- issue 13, item 1: a PROLIFIC_PID alone must not take over a session --------------------


@pytest.mark.parametrize("query", [f"?PROLIFIC_PID={PID}", f"?PROLIFIC_PID={PID}&STUDY_ID=st123",
                                   f"?PROLIFIC_PID={PID}&STUDY_ID=st123&SESSION_ID=guessed"])
def test_a_known_pid_without_its_session_id_does_not_resume_the_session(rnd, query):
    victim_client = join(rnd, JOIN)
    answer_one(victim_client, rnd)
    victim = Annotator.objects.get(round=rnd, prolific_pid=PID)
    before = victim_votes(victim)

    attacker = Client()
    r = attacker.get(url(rnd, "start") + query)
    # Not a redirect into the victim's flow, and no cookie for the victim's pseudonym.
    assert r.status_code == 200 and b"I agree" in r.content
    assert cookie_pseudonym(attacker, rnd) != victim.pseudonym
    assert attacker.get(url(rnd, "api_next")).status_code == 403  # no session at all
    # Consenting gives the attacker a fresh session, not linked to the PID.
    r = attacker.post(url(rnd, "consent"), {"consent": "yes", **fields_of(query)})
    assert r.status_code == 302
    assert cookie_pseudonym(attacker, rnd) not in (None, victim.pseudonym)
    assert Annotator.objects.filter(round=rnd, prolific_pid=PID).get().pk == victim.pk
    intruder = Annotator.objects.get(pseudonym=cookie_pseudonym(attacker, rnd))
    assert intruder.prolific_pid == ""
    # The attacker's answers land on the attacker's own trials; the victim's are untouched.
    attacker.post(url(rnd, "check"), CORRECT)
    for _ in range(2):
        t = attacker.get(url(rnd, "api_next")).json()["trial"]
        attacker.post(url(rnd, "api_answer"), {"position": t["position"], "realism": "right", "alignment": "right"})
    assert victim_votes(victim) == before
    assert not Trial.objects.filter(annotator=victim, position__gt=1).exclude(answered_at=None).exists()


def test_the_answer_never_reveals_whether_a_pid_exists(rnd):
    join(rnd, JOIN)

    def normalised(query: str) -> tuple[int, str]:
        r = Client().get(url(rnd, "start") + query)
        body = r.content.decode()
        body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", body)
        return r.status_code, body.replace(PID, "PID").replace("0" * 24, "PID")

    assert normalised(f"?PROLIFIC_PID={PID}&SESSION_ID=x") == normalised(f"?PROLIFIC_PID={'0' * 24}&SESSION_ID=x")
    assert normalised(f"?PROLIFIC_PID={PID}") == normalised(f"?PROLIFIC_PID={'0' * 24}")


def test_the_same_session_id_or_the_same_browser_resumes(rnd):
    victim_client = join(rnd, JOIN)
    t = answer_one(victim_client, rnd)
    victim = Annotator.objects.get(round=rnd)
    # A new browser with the whole Prolific link (same SESSION_ID): resumes.
    other = Client()
    r = other.get(url(rnd, "start") + JOIN)
    assert r.status_code == 302 and r["Location"] == url(rnd, "trial")
    assert cookie_pseudonym(other, rnd) == victim.pseudonym
    assert other.get(url(rnd, "api_next")).json()["trial"]["position"] == t["position"] + 1
    # The participant's own browser, with the PID alone: the cookie proves it.
    r = victim_client.get(url(rnd, "start") + f"?PROLIFIC_PID={PID}")
    assert r.status_code == 302 and r["Location"] == url(rnd, "trial")
    assert Annotator.objects.filter(round=rnd).count() == 1


def test_a_shared_browser_does_not_hand_one_participants_session_to_the_next(rnd):
    browser = join(rnd, JOIN)
    first = Annotator.objects.get(round=rnd)
    r = browser.get(url(rnd, "start") + "?PROLIFIC_PID=6a6a6a6a6a6a6a6a6a6a6a6a&STUDY_ID=st123&SESSION_ID=se999")
    assert r.status_code == 200 and b"I agree" in r.content
    browser.post(url(rnd, "consent"), {"consent": "yes", "PROLIFIC_PID": "6a6a6a6a6a6a6a6a6a6a6a6a",
                                       "STUDY_ID": "st123", "SESSION_ID": "se999"})
    second = Annotator.objects.get(round=rnd, prolific_pid="6a6a6a6a6a6a6a6a6a6a6a6a")
    assert second.pk != first.pk and cookie_pseudonym(browser, rnd) == second.pseudonym


def test_a_forged_or_foreign_cookie_is_no_session(rnd, round_config):
    c = join(rnd)
    victim = Annotator.objects.get(round=rnd)
    forged = Client()
    forged.cookies["annotator"] = victim.pseudonym + ":forged-signature"
    assert forged.get(url(rnd, "api_next")).status_code == 403
    assert forged.get(url(rnd, "trial"))["Location"] == url(rnd, "start")
    # A valid cookie of another round's annotator names nobody here.
    other_round = make_ready_round(round_config, min_view_ms=0, practice_trials=0)
    c.cookies["annotator"]["path"] = "/"
    assert c.get(url(other_round, "api_next")).status_code == 403


# -- issue 13, item 3: junk in every annotator URL and field: a clean 4xx, nothing written ----


JUNK_TOKENS = ["%00", "\x00", "abc%00def", "a" * 300, "%C3%A9t%C3%A9", "..", "%2e%2e", "'; DROP TABLE x;--", "%0a"]
PAGES = ["start", "consent", "instructions", "check", "trial", "done", "api_next", "api_answer", "api_undo"]


def counts() -> tuple[int, int, int]:
    return Annotator.objects.count(), Trial.objects.count(), Vote.objects.count()


@pytest.mark.parametrize("junk", JUNK_TOKENS)
@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("method", ["get", "post"])
def test_junk_round_token_on_every_page_is_a_clean_4xx(rnd, junk, page, method):
    client = join(rnd)
    before = counts()
    path = reverse(f"annotate:{page}", args=["TOKEN"]).replace("TOKEN", junk)
    r = getattr(client, method)(path, {"consent": "yes", "position": "1", "realism": "left", "alignment": "left"})
    assert 400 <= r.status_code < 500, (path, r.status_code)
    assert counts() == before


@pytest.mark.parametrize("junk", JUNK_TOKENS + ["x" * 41])
def test_junk_image_token_is_a_clean_404(rnd, junk):
    client = join(rnd)
    client.get(url(rnd, "api_next"))
    before = counts()
    r = client.get(url(rnd, "image", "TOKEN").replace("TOKEN", junk))
    assert r.status_code == 404 and counts() == before


@pytest.mark.parametrize("fields", [
    {"position": "1\x00", "realism": "left", "alignment": "left"},
    {"position": "1", "realism": "left\x00", "alignment": "left"},
    {"position": "1", "realism": "left", "alignment": "left", "rt_realism": "5\x00"},
    {"position": "1", "realism": "left", "alignment": "left", "rt_realism": "9" * 5000},
    {"position": "9" * 400, "realism": "left", "alignment": "left"},
    {"position": "1", "realism": "x" * 200_000, "alignment": "left"},
    {"position": ["1", "2"], "realism": ["left", "right"], "alignment": "tie"},
    {"position": "-1", "realism": "left", "alignment": "left"},
    {},
])
@pytest.mark.parametrize("page", ["api_answer", "trial"])
def test_junk_answer_fields_are_a_clean_4xx_and_write_nothing(rnd, fields, page):
    client = join(rnd)
    client.get(url(rnd, "api_next"))
    before = counts()
    r = client.post(url(rnd, page), fields)
    assert 400 <= r.status_code < 500, r.status_code
    assert counts() == before


@pytest.mark.parametrize("field", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize("junk", ["\x00", "a\x00b", "x" * 100_000, "<script>alert(1)</script>", "é"])
def test_junk_platform_ids_are_dropped_and_the_participant_is_told(rnd, field, junk):
    client = Client()
    r = client.get(url(rnd, "start"), {field: junk})
    assert r.status_code == 200 and b'id="malformed-ids"' in r.content
    assert b"<script>alert" not in r.content
    r = client.post(url(rnd, "consent"), {"consent": "yes", field: junk})
    assert r.status_code == 302
    ann = Annotator.objects.get(round=rnd)
    assert (ann.prolific_pid, ann.prolific_study_id, ann.prolific_session_id) == ("", "", "")


def test_a_nul_in_the_user_agent_is_dropped_not_a_500(rnd):
    client = Client(HTTP_USER_AGENT="Mozilla/5.0\x00 evil")
    client.get(url(rnd, "start"))
    r = client.post(url(rnd, "consent"), {"consent": "yes"})
    assert r.status_code == 302
    assert Annotator.objects.get(round=rnd).user_agent == "Mozilla/5.0 evil"


def test_malformed_pid_with_prolific_study_and_session_still_gets_the_return_link(rnd):
    q = "?PROLIFIC_PID=not%20an%20id!&STUDY_ID=st123&SESSION_ID=se456"
    client = Client()
    r = client.get(url(rnd, "start") + q)
    assert b"a Prolific ID we cannot read" in r.content
    client.post(url(rnd, "consent"), {"consent": "yes", "STUDY_ID": "st123", "SESSION_ID": "se456"})
    client.post(url(rnd, "check"), CORRECT)
    while (t := client.get(url(rnd, "api_next")).json().get("trial")):
        client.post(url(rnd, "api_answer"), {"position": t["position"], "realism": "left", "alignment": "left"})
    page = client.get(url(rnd, "done")).content.decode()
    assert f"https://app.prolific.com/submissions/complete?cc={rnd.completion_code}" in page


# -- issue 13, item 7: annotator creation per round and client ------------------------------


def consent_from(rnd, addr: str) -> int:
    c = Client(REMOTE_ADDR=addr)
    return c.post(url(rnd, "consent"), {"consent": "yes"}).status_code


@pytest.mark.parametrize("attempts, refused", [(9, 0), (10, 0), (11, 1), (20, 10)])
def test_default_creation_limit_per_client_and_round(rnd, attempts, refused):
    """Default 10 per 10 minutes: below (9), at (10) and above (11, and the reported 20)."""
    assert annotators.create_limit() == (10, 600)
    statuses = [consent_from(rnd, "203.0.113.7") for _ in range(attempts)]
    assert statuses.count(302) == attempts - refused and statuses.count(429) == refused
    assert Annotator.objects.filter(round=rnd).count() == attempts - refused


def test_the_limit_is_per_client_and_per_round(rnd, round_config):
    for _ in range(10):
        assert consent_from(rnd, "203.0.113.7") == 302
    r = Client(REMOTE_ADDR="203.0.113.7").post(url(rnd, "consent"), {"consent": "yes"})
    assert r.status_code == 429 and b"Too many new sessions" in r.content
    assert consent_from(rnd, "203.0.113.8") == 302  # another client
    other = make_ready_round(round_config, min_view_ms=0)
    assert consent_from(other, "203.0.113.7") == 302  # another round


def test_resuming_does_not_count_and_the_window_rolls_over(rnd, settings):
    settings.ANNOTATE_CREATE_LIMIT = (2, 60)
    c = join(rnd, JOIN, REMOTE_ADDR="203.0.113.9")
    for _ in range(5):  # the same participant again: no new annotator, not counted
        assert Client(REMOTE_ADDR="203.0.113.9").get(url(rnd, "start") + JOIN).status_code == 302
        assert c.post(url(rnd, "consent"), {"consent": "yes", **fields_of(JOIN)}).status_code == 302
    assert consent_from(rnd, "203.0.113.9") == 302  # second creation: at the limit
    assert consent_from(rnd, "203.0.113.9") == 429
    # The next window (the service takes the clock as an argument): allowed again.
    t0 = 1_000_020.0
    assert [annotators.admission_count(round_id=rnd.pk, client="c", now=t0 + i) for i in range(3)] == [1, 2, 3]
    assert annotators.admission_count(round_id=rnd.pk, client="c", now=t0 + 60) == 1


def test_limit_from_the_environment(monkeypatch, settings):
    settings.ANNOTATE_CREATE_LIMIT = None
    monkeypatch.setenv("ANNOTATE_CREATE_LIMIT", "500/30")
    assert annotators.create_limit() == (500, 30)


# -- issue 11, item 4: no places left, before consent ----------------------------------------


def fill(rnd):
    """Every item has all its votes taken (the counters as real allocations leave them)."""
    ComparisonItem.objects.filter(round=rnd).update(assigned=F("target_votes"))


def test_a_full_study_says_so_before_consent_and_creates_nobody(rnd):
    fill(rnd)
    r = Client().get(url(rnd, "start"))
    assert r.status_code == 200 and b"No places left" in r.content and b"I agree" not in r.content
    assert b"Return submission" not in r.content  # not from Prolific: no Prolific advice
    r = Client().get(url(rnd, "start") + JOIN)
    assert b"No places left" in r.content and b"Return submission" in r.content
    # A consent form opened before the study filled up: still no annotator.
    r = Client().post(url(rnd, "consent"), {"consent": "yes", **fields_of(JOIN)})
    assert r.status_code == 200 and b"No places left" in r.content
    assert not Annotator.objects.filter(round=rnd).exists()


def test_a_participant_already_in_still_resumes_when_the_study_is_full(rnd):
    c = join(rnd, JOIN)
    fill(rnd)
    assert c.get(url(rnd, "start") + JOIN)["Location"] == url(rnd, "trial")


@pytest.mark.parametrize("left, promised", [(1, "up to 1 comparison,"), (3, "up to 3 comparisons"),
                                            (4, "4 comparisons"), (5, "4 comparisons")])
def test_consent_never_promises_more_comparisons_than_are_left(rnd, left, promised):
    items = list(ComparisonItem.objects.filter(round=rnd).order_by("id").values_list("id", flat=True))
    ComparisonItem.objects.filter(id__in=items[left:]).update(assigned=F("target_votes"))
    body = Client().get(url(rnd, "start")).content.decode()
    text = re.sub(r"\s+", " ", re.search(r'<p id="study-size">(.*?)</p>', body, re.S).group(1))
    assert promised in text
    assert ("up to" in text) == (left < 4)


# -- issue 11, item 8: the round's consent text ------------------------------------------------


def test_the_rounds_consent_text_is_shown_escaped_with_paragraphs(round_config):
    text = "Ethics approval: IRB-2026-17.\nContact: a@b.org\n\n<script>alert(1)</script> & <b>pay</b>: 9 GBP/h"
    rnd = make_ready_round(round_config, consent_text=text)
    body = Client().get(url(rnd, "start")).content.decode()
    block = re.search(r'<div class="consent-text" id="consent-text">(.*?)</div>', body, re.S).group(1)
    assert "<p>Ethics approval: IRB-2026-17.<br>Contact: a@b.org</p>" in block
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;pay&lt;/b&gt;: 9 GBP/h</p>" in block
    assert "<script>" not in block and "user agent" not in block


def test_the_default_consent_text_is_true_about_what_is_stored(rnd):
    body = re.sub(r"\s+", " ", Client().get(url(rnd, "start")).content.decode())
    assert "Nothing else about you is stored" not in body
    stored = {f.name for f in Annotator._meta.concrete_fields}
    # Each stored field about the person, and what the text calls it.
    named = {"user_agent": "user agent", "prolific_pid": "Prolific ID", "prolific_study_id": "study and session ids",
             "prolific_session_id": "study and session ids", "consent_at": "the times you agreed",
             "completed_at": "finished", "comprehension_attempts": "short check", "pseudonym": "random code",
             "created_at": "the times you agreed"}
    for field, words in named.items():
        assert field in stored and words in body, field
    for field in ("served_at", "answered_at"):
        assert field in {f.name for f in Trial._meta.concrete_fields}
    assert "saw and answered each comparison" in body and "how long each answer took" in body
    assert "cookie" in body and "network address" in body and "for at most 10 minutes" in body


def test_study_filling_up_after_consent_gives_no_code_for_zero_comparisons(rnd):
    c = join(rnd, JOIN)  # consented and passed the check, no comparison yet
    fill(rnd)
    assert c.get(url(rnd, "api_next")).json()["trial"] is None  # nothing left: completed with 0 trials
    r = c.get(url(rnd, "done"))
    assert r.status_code == 200 and b"No places left" in r.content and b"Return submission" in r.content
    assert rnd.completion_code.encode() not in r.content
