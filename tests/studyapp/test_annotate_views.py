"""The annotator pages and JSON API through Django's test client (real views, real PostgreSQL)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from studyapp.models import Annotator, ComparisonItem, Trial, Vote
from studyapp.services.rounds import round_create, round_transition
from tests.studyapp.factories import CORRECT, WRONG, make_ready_round

pytestmark = pytest.mark.django_db


@pytest.fixture
def rnd(round_config):
    return make_ready_round(round_config, min_view_ms=0, practice_trials=1, trials_per_annotator=4, attention_check_rate=0.25)


def url(rnd, name, *args):
    return reverse(f"annotate:{name}", args=[rnd.token, *args])


def consented(rnd, client=None, query="") -> Client:
    client = client or Client()
    r = client.get(url(rnd, "start") + query)
    assert r.status_code == 200 and b"I agree" in r.content
    fields = {k: v for k, v in (p.split("=") for p in query.lstrip("?").split("&") if p)}
    r = client.post(url(rnd, "consent"), {"consent": "yes", **fields})
    assert r.status_code == 302 and r["Location"] == url(rnd, "instructions")
    return client


def passed(rnd, client=None, query="") -> Client:
    client = consented(rnd, client, query)
    r = client.post(url(rnd, "check"), CORRECT)
    assert r.status_code == 302 and r["Location"] == url(rnd, "trial")
    return client


def the_annotator(rnd) -> Annotator:
    return Annotator.objects.get(round=rnd)


def test_unknown_link_is_a_friendly_404(client):
    for path in ("/a/not-a-round/", "/a/not-a-round/trial/", "/a/not-a-round/done/"):
        r = client.get(path)
        assert r.status_code == 404 and b"This study link is not valid" in r.content


def test_round_not_open_or_closed_says_so_politely(round_config, client):
    draft = round_create(config=round_config)
    r = client.get(url(draft, "start"))
    assert r.status_code == 409 and b"not open yet" in r.content
    closed = make_ready_round(round_config)
    round_transition(round_id=closed.pk, to="closed")
    r = client.get(url(closed, "start"))
    assert r.status_code == 410 and b"has closed" in r.content


def test_prolific_ids_are_stored_and_a_returning_pid_resumes(rnd):
    q = "?PROLIFIC_PID=5f1a2b3c4d5e6f7a8b9c0d1e&STUDY_ID=st123&SESSION_ID=se456"
    passed(rnd, query=q)
    ann = the_annotator(rnd)
    assert (ann.prolific_pid, ann.prolific_study_id, ann.prolific_session_id) == ("5f1a2b3c4d5e6f7a8b9c0d1e", "st123", "se456")
    # A new browser (no cookie) with the same PROLIFIC_PID continues where the annotator left off.
    other = Client()
    r = other.get(url(rnd, "start") + q)
    assert r.status_code == 302 and r["Location"] == url(rnd, "trial")
    assert other.get(url(rnd, "trial")).status_code == 200
    assert Annotator.objects.filter(round=rnd).count() == 1


def test_closed_tab_resumes_from_the_cookie(rnd):
    client = passed(rnd)
    first = client.get(url(rnd, "api_next")).json()["trial"]
    r = client.get(url(rnd, "start"))
    assert r.status_code == 302 and r["Location"] == url(rnd, "trial")
    assert client.get(url(rnd, "api_next")).json()["trial"]["position"] == first["position"]


def test_comprehension_check_two_attempts_then_screen_out_code(rnd):
    client = consented(rnd)
    r = client.post(url(rnd, "check"), WRONG)
    assert r.status_code == 200 and b"1 more attempt" in r.content
    r = client.post(url(rnd, "check"), WRONG)
    assert r.status_code == 302 and r["Location"] == url(rnd, "done")
    page = client.get(url(rnd, "done")).content.decode()
    assert rnd.screenout_code in page and rnd.completion_code not in page
    ann = the_annotator(rnd)
    assert ann.status == "screened_out" and ann.comprehension_attempts == 2
    # Screened out stays screened out: no trials.
    assert client.get(url(rnd, "api_next")).json() == {"ok": True, "trial": None, "done_url": url(rnd, "done")}
    assert client.get(url(rnd, "trial")).status_code == 302


def test_second_attempt_can_pass(rnd):
    client = consented(rnd)
    client.post(url(rnd, "check"), WRONG)
    r = client.post(url(rnd, "check"), CORRECT)
    assert r["Location"] == url(rnd, "trial")
    assert the_annotator(rnd).status == "practice"


def test_whole_flow_without_javascript(rnd):
    client = passed(rnd)
    # Practice: the plain form POST shows feedback.
    page = client.get(url(rnd, "trial")).content.decode()
    assert "Practice" in page
    t = Trial.objects.get(annotator__round=rnd, kind="practice")
    r = client.post(url(rnd, "trial"), {"position": t.position, "realism": t.expected_side, "alignment": t.expected_side})
    assert r.status_code == 200 and b"Correct!" in r.content
    # Main block: post each trial's form until the completion page.
    for _ in range(4):
        r = client.get(url(rnd, "trial"))
        assert r.status_code == 200
        t = Trial.objects.filter(annotator__round=rnd, answered_at__isnull=True).get()
        r = client.post(url(rnd, "trial"), {"position": t.position, "realism": "right", "alignment": "tie"})
        assert r.status_code == 302
    r = client.get(url(rnd, "trial"))
    assert r.status_code == 302 and r["Location"] == url(rnd, "done")
    page = client.get(url(rnd, "done")).content.decode()
    assert rnd.completion_code in page and "app.prolific.com" not in page
    ann = the_annotator(rnd)
    assert ann.status == "completed" and ann.completion_code == rnd.completion_code
    regular = Vote.objects.filter(trial__annotator=ann, trial__kind="regular")
    assert regular.count() == 6 and set(regular.values_list("choice", flat=True)) == {"right", "tie"}
    # No client time without JavaScript: the server's time since the trial was served is recorded.
    assert all(v >= 0 for v in regular.values_list("response_ms", flat=True))


def test_missing_answer_without_javascript_reshows_the_form(rnd):
    client = passed(rnd)
    t = client.get(url(rnd, "api_next")).json()["trial"]
    r = client.post(url(rnd, "trial"), {"position": t["position"], "realism": "left"})
    assert r.status_code == 400 and b"Please answer the text match question" in r.content
    assert b'value="left" checked' in r.content  # the answer given is kept
    assert not Vote.objects.exists()


def test_prolific_participant_gets_the_redirect_link(rnd):
    client = passed(rnd, query="?PROLIFIC_PID=abc123&STUDY_ID=s&SESSION_ID=x")
    finish_with_api(client, rnd)
    page = client.get(url(rnd, "done")).content.decode()
    assert f"https://app.prolific.com/submissions/complete?cc={rnd.completion_code}" in page


def test_configured_completion_url_wins(round_config):
    rnd = make_ready_round(round_config, min_view_ms=0, practice_trials=0, trials_per_annotator=2,
                           attention_check_rate=0.0, prolific_completion_url="https://example.org/done?cc=XYZ")
    client = passed_no_practice(rnd)
    finish_with_api(client, rnd)
    assert "https://example.org/done?cc=XYZ" in client.get(url(rnd, "done")).content.decode()


def passed_no_practice(rnd) -> Client:
    client = consented(rnd)
    r = client.post(url(rnd, "check"), CORRECT)
    assert r["Location"] == url(rnd, "trial")
    return client


def finish_with_api(client, rnd):
    data = client.get(url(rnd, "api_next")).json()
    while data.get("trial"):
        t = data["trial"]
        data = client.post(url(rnd, "api_answer") + "?next=1",
                           {"position": t["position"], "realism": "left", "alignment": "left", "rt_realism": "900", "rt_alignment": "950"}).json()
        assert data["ok"], data
    assert data["done_url"] == url(rnd, "done")


def test_api_answer_records_and_is_idempotent(rnd):
    client = passed(rnd)
    t = client.get(url(rnd, "api_next")).json()["trial"]
    assert t["phase"] == "practice" and (t["number"], t["total"]) == (1, 1)
    body = {"position": t["position"], "realism": "left", "alignment": "right", "rt_realism": "1234", "rt_alignment": "2345"}
    first = client.post(url(rnd, "api_answer"), body).json()
    assert first["ok"] and first["outcome"] == "recorded" and "feedback" in first
    again = client.post(url(rnd, "api_answer"), body).json()
    assert again["outcome"] == "unchanged"
    assert Vote.objects.count() == 2
    assert sorted(Vote.objects.values_list("response_ms", flat=True)) == [1234, 2345]


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"position": "1", "realism": "left"}, 400, "bad_answer"),
        ({"position": "1", "realism": "left", "alignment": "ITC"}, 400, "bad_answer"),
        ({"position": "1", "realism": "left", "alignment": "left", "rt_realism": "-5"}, 400, "bad_answer"),
        ({"position": "1", "realism": "left", "alignment": "left", "rt_realism": "1e9x"}, 400, "bad_answer"),
        ({"position": "abc", "realism": "left", "alignment": "left"}, 400, "bad_position"),
        ({"realism": "left", "alignment": "left"}, 400, "bad_position"),
        ({"position": "99", "realism": "left", "alignment": "left"}, 404, "no_such_trial"),
    ],
)
def test_malformed_or_forged_answers_get_a_clear_4xx_and_change_nothing(rnd, body, status, code):
    client = passed(rnd)
    client.get(url(rnd, "api_next"))
    r = client.post(url(rnd, "api_answer"), body)
    assert r.status_code == status
    data = r.json()
    assert data["ok"] is False and data["error"] == code and data["message"]
    assert not Vote.objects.exists()


def test_foreign_annotator_cannot_answer_or_see_anothers_trial(rnd):
    alice, mallory = passed(rnd), passed(rnd)
    t = alice.get(url(rnd, "api_next")).json()["trial"]
    # Mallory has not been served anything at that position: refused.
    r = mallory.post(url(rnd, "api_answer"), {"position": t["position"], "realism": "left", "alignment": "left"})
    assert r.status_code == 404 and r.json()["error"] == "no_such_trial"
    # Nor can Mallory load Alice's images; without any cookie neither.
    assert mallory.get(t["left"]).status_code == 404
    assert Client().get(t["left"]).status_code == 404
    assert alice.get(t["left"]).status_code == 200
    # No annotator cookie at all: a JSON 403 that says what to do.
    r = Client().post(url(rnd, "api_answer"), {"position": 1, "realism": "left", "alignment": "left"})
    assert r.status_code == 403 and "open the study link again" in r.json()["message"]
    # A forged cookie (bad signature) is no annotator.
    forged = Client()
    forged.cookies["annotator"] = alice.cookies["annotator"].value[:-3] + "xyz"
    assert forged.get(url(rnd, "api_next")).status_code == 403
    assert not Vote.objects.exists()


def test_csrf_is_enforced(rnd):
    client = Client(enforce_csrf_checks=True)
    r = client.get(url(rnd, "start"))
    r = client.post(url(rnd, "consent"), {"consent": "yes"})
    assert r.status_code == 403
    assert not Annotator.objects.exists()


def test_api_refuses_politely_when_the_round_closes(rnd):
    client = passed(rnd)
    t = client.get(url(rnd, "api_next")).json()["trial"]
    round_transition(round_id=rnd.pk, to="closed")
    r = client.post(url(rnd, "api_answer"), {"position": t["position"], "realism": "left", "alignment": "left"})
    assert r.status_code == 410 and "closed" in r.json()["message"]
    r = client.get(url(rnd, "trial"))
    assert r.status_code == 410 and b"has closed" in r.content
    assert not Vote.objects.exists()


def test_undo_over_the_api(round_config):
    rnd = make_ready_round(round_config, min_view_ms=0, practice_trials=0, trials_per_annotator=4, attention_check_rate=0.0)
    client = passed_no_practice(rnd)
    assert client.get(url(rnd, "api_undo")).status_code == 409  # nothing answered yet
    t1 = client.get(url(rnd, "api_next")).json()["trial"]
    nxt = client.post(url(rnd, "api_answer") + "?next=1",
                      {"position": t1["position"], "realism": "left", "alignment": "left"}).json()["trial"]
    u = client.get(url(rnd, "api_undo")).json()["trial"]
    assert u["position"] == t1["position"] and u["answers"] == {"realism": "left", "alignment": "left"} and u["revising"]
    r = client.post(url(rnd, "api_answer") + "?next=1", {"position": t1["position"], "realism": "right", "alignment": "left", "revise": "1"}).json()
    assert r["outcome"] == "updated" and r["trial"]["position"] == nxt["position"]
    assert Vote.objects.get(trial__position=t1["position"], criterion="realism").choice == "right"
    assert sorted(ComparisonItem.objects.filter(round=rnd).values_list("completed", flat=True))[-1] == 1


def test_images_are_reencoded_pngs_without_metadata_and_private(rnd):
    client = passed(rnd)
    t = client.get(url(rnd, "api_next")).json()["trial"]
    for side in ("left", "right"):
        r = client.get(t[side])
        assert r.status_code == 200 and r["Content-Type"] == "image/png"
        assert "private" in r["Cache-Control"]
        assert not r.has_header("ETag") and not r.has_header("Last-Modified")
        img = Image.open(io.BytesIO(r.content))
        assert img.size == (48, 48) and img.mode == "RGB"
        assert img.info == {}
        for chunk in (b"tEXt", b"iTXt", b"zTXt", b"pHYs", b"iCCP", b"eXIf", b"tIME"):
            assert chunk not in r.content


def test_degraded_attention_image_is_deterministic_and_same_size(rnd):
    from studyapp import images_blind

    client = passed(rnd)
    finish_with_api(client, rnd)
    t = Trial.objects.get(annotator__round=rnd, kind="attention")
    if t.check_criterion != "realism":  # make it a realism check: gold render against its degraded copy
        gold_render = t.left_render if t.expected_side == "left" else t.right_render
        t.left_render = t.right_render = gold_render
        t.left_variant, t.right_variant = ("plain", "degraded") if t.expected_side == "left" else ("degraded", "plain")
        t.check_criterion = "realism"
        t.save()
    gold_tok, bad_tok = (t.left_token, t.right_token) if t.expected_side == "left" else (t.right_token, t.left_token)
    a = client.get(url(rnd, "image", bad_tok)).content
    images_blind._cache.clear()
    assert client.get(url(rnd, "image", bad_tok)).content == a  # deterministic per trial
    gold = Image.open(io.BytesIO(client.get(url(rnd, "image", gold_tok)).content))
    bad = Image.open(io.BytesIO(a))
    assert gold.size == bad.size
    diff = np.abs(np.asarray(gold, dtype=np.int16) - np.asarray(bad, dtype=np.int16)).mean()
    assert diff > 20  # heavily degraded, not a tweak


def test_json_pages_are_not_cached(rnd):
    client = passed(rnd)
    r = client.get(url(rnd, "api_next"))
    assert r["Cache-Control"] == "no-store"
    json.loads(r.content)


def test_researchers_see_attention_qc_per_annotator(rnd, staff_client):
    client = passed(rnd, query="?PROLIFIC_PID=qcpid1&STUDY_ID=s&SESSION_ID=x")
    finish_with_api(client, rnd)  # answers "left" everywhere: the one check passes or fails by chance
    ann = the_annotator(rnd)
    t = Trial.objects.get(annotator=ann, kind="attention")
    expected_qc = "pass" if t.expected_side == "left" else "fail"
    assert ann.qc_status == expected_qc
    page = staff_client.get(reverse("research:round_detail", args=[rnd.pk])).content.decode()
    assert "Annotators: progress and quality control" in page and "qcpid1" in page
    assert f'qc-{expected_qc}">{expected_qc}<' in page
    assert ("1/1" if expected_qc == "pass" else "0/1") in page


def test_a_database_hiccup_is_retried_and_then_a_polite_503(rnd, monkeypatch):
    """Fault injection: PostgreSQL aborts the transaction (e.g. a deadlock victim)."""
    from django.db import OperationalError

    from studyapp.services import allocation

    client = passed(rnd)
    real = allocation.trial_next
    failures = {"left": 1}

    def flaky(**kw):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("deadlock detected")
        return real(**kw)

    monkeypatch.setattr(allocation, "trial_next", flaky)
    r = client.get(url(rnd, "api_next"))
    assert r.status_code == 200 and r.json()["trial"]  # retried once, transparently
    failures["left"] = 2
    position = r.json()["trial"]["position"]
    r = client.get(url(rnd, "api_next"))
    assert r.status_code == 503 and r.json()["error"] == "busy" and "Nothing was lost" in r.json()["message"]
    failures["left"] = 0
    assert client.get(url(rnd, "api_next")).json()["trial"]["position"] == position  # same trial, nothing changed
