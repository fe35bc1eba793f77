"""The results section of the round page and the export downloads: staff only, numbers from the
stats module on the exported votes, cached until a vote arrives."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.core.cache import cache

from studyapp import exports
from studyapp.models import Annotator, ComparisonItem, Trial, Vote

from .test_results_rows import add_votes, open_round

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def _page(client, rnd) -> str:
    resp = client.get(f"/research/rounds/{rnd.pk}/")
    assert resp.status_code == 200
    return resp.content.decode()


def _section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start: html.index("</table>", start)]


def test_round_page_shows_results_figure_planner_categories_and_qc(staff_client, round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=6, fast_annotator=True)
    html = _page(staff_client, rnd)
    summary = exports.round_export(rnd).summary

    # one table per criterion, a row per baseline and subset, with the stats module's numbers
    for crit in ("realism", "alignment"):
        table = _section(html, f"pref-{crit}")
        for base in ("ITC", "CAP", "BLEND"):
            assert f"SHIFT vs {base}" in table
            for subset in ("all", "declared"):
                cell = next(c for c in summary["results"][subset]["preference"]
                            if c["baseline"] == base and c["criterion"] == crit)
                assert f"{cell['wins']} / {cell['losses']} / {cell['ties']}" in table
                assert f"{100 * cell['rate_excl_ties']:.1f}%" in table
                assert f"{100 * cell['rate_ties_half']:.1f}%" in table
                lo, hi = cell["primary"]["ci"]  # the verdict's interval: the clustered model's
                assert f"{100 * lo:.1f}–{100 * hi:.1f}%" in table
                lo, hi = cell["ci_wilson"]  # secondary, labelled as assuming independent votes
                assert f"{100 * lo:.1f}–{100 * hi:.1f}%" in table
        assert "all votes" in table and "declared exclusions" in table
        assert "p clustered (Holm)" in table and "Independent votes*" in table
    assert "Photo-realism" in html and "Text alignment" in html
    # the fast annotator is dropped from the declared counts
    all_itc = next(c for c in summary["results"]["all"]["preference"] if c["baseline"] == "ITC" and c["criterion"] == "realism")
    dec_itc = next(c for c in summary["results"]["declared"]["preference"] if c["baseline"] == "ITC" and c["criterion"] == "realism")
    assert all_itc["n"] == 6 * 8 and dec_itc["n"] == 5 * 8

    # inline SVG figure (no XML prolog inside the page)
    figure = html[html.index('id="figure"'):]
    assert figure.index("<svg") < figure.index("</svg>") and "<?xml" not in html

    planner = _section(html, "planner")
    assert planner.count("<tr>") == 1 + 6 and ("more" in planner or "enough" in planner or "too close" in planner)

    categories = _section(html, "categories")
    for cat in ("Colors", "Counting", "Text", "(none)"):
        assert f"<td>{cat}</td>" in categories

    qc = _section(html, "annotator-qc")
    assert qc.count('class="excluded"') == 1 and "attention, side_rate" in qc
    assert "1/1 (100.0%)" in qc and "0/1 (0.0%)" in qc

    # downloads are linked
    for name in exports.FILE_NAMES:
        assert f"/research/rounds/{rnd.pk}/export/{name}" in html
    assert f"/research/rounds/{rnd.pk}/export/round-export.zip" in html


def test_planner_numbers(staff_client, round_config):
    rnd = open_round(round_config)
    # SHIFT wins every realism vote against ITC: the planner needs only a handful
    add_votes(rnd, n_annotators=3, tie_rate=0.0, p_shift={k: (1.0 if k == ("ITC", "realism") else 0.7) for k in
                                                           [(b, c) for b in ("ITC", "CAP", "BLEND") for c in ("realism", "alignment")]})
    from studyapp.views.results import planner_rows

    rows = planner_rows(exports.round_export(rnd).summary)
    itc = next(r for r in rows if r["comparison"] == "SHIFT vs ITC" and r["criterion"] == "Photo-realism")
    assert itc["needed"] is None and "0/100%" in itc["note"]
    others = [r for r in rows if r["needed"] is not None]
    assert others, rows
    for r in others:
        assert r["needed"] >= r["non_tie_needed"] and r["remaining"] == max(0, r["needed"] - r["votes"])


def test_round_page_before_any_vote_and_before_opening(staff_client, round_config):
    rnd = open_round(round_config, open_it=False)
    html = _page(staff_client, rnd)
    assert 'id="no-votes"' in html and "declared by the config" in html
    assert 'id="pref-realism"' not in html


def test_cache_follows_new_votes(staff_client, round_config, django_assert_max_num_queries):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=2, attention=False, practice=False)
    first = exports.round_export(rnd)
    with django_assert_max_num_queries(3):  # the cache key's reads only, no vote rows
        assert exports.round_export(rnd).summary == first.summary
    n_before = first.summary["data"]["regular_votes"]
    it = ComparisonItem.objects.filter(round=rnd).first()
    ann = Annotator.objects.create(round=rnd, pseudonym="late")
    t = Trial.objects.create(annotator=ann, item=it, position=1, prompt=it.prompt, left_render=it.render_a, right_render=it.render_b)
    Vote.objects.create(trial=t, criterion="realism", choice="left", winner=it.objective_a, response_ms=2000)
    assert exports.round_export(rnd).summary["data"]["regular_votes"] == n_before + 1
    assert f"{n_before + 1} regular votes" in _page(staff_client, rnd)


def test_downloads_are_the_export_bundle(staff_client, round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=3)
    base = f"/research/rounds/{rnd.pk}/export/"
    bundle = exports.round_export(rnd)
    for name in exports.FILE_NAMES:
        resp = staff_client.get(base + name)
        assert resp.status_code == 200, name
        assert resp["Content-Type"] == exports.CONTENT_TYPES[name]
        assert resp.content == bundle.files[name]
    summary = json.loads(staff_client.get(base + "summary.json").content)
    assert summary["settings"] == json.loads(staff_client.get(base + "settings.json").content)
    assert summary["input"]["rows"] == Vote.objects.count()
    resp = staff_client.get(base + "round-export.zip")
    assert resp.status_code == 200 and 'filename="round-' in resp["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert sorted(n.split("/")[-1] for n in zf.namelist()) == sorted(exports.FILE_NAMES)
    assert staff_client.get(base + "secrets.txt").status_code == 404
    assert staff_client.get("/research/rounds/999999/export/votes.csv").status_code == 404


def test_results_and_downloads_are_staff_only(client, django_user_model, round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=1)
    urls = [f"/research/rounds/{rnd.pk}/", f"/research/rounds/{rnd.pk}/export/round-export.zip"]
    urls += [f"/research/rounds/{rnd.pk}/export/{n}" for n in exports.FILE_NAMES]
    for url in urls:
        resp = client.get(url)
        assert resp.status_code == 302 and resp["Location"].startswith("/accounts/login/"), url
    # a logged-in non-staff user is not let in either
    client.force_login(django_user_model.objects.create_user("annotator-ish", password="pw"))
    for url in urls:
        resp = client.get(url)
        assert resp.status_code == 302 and resp["Location"].startswith("/accounts/login/"), url
        assert b"SHIFT" not in resp.content


def test_unusable_settings_show_a_message(staff_client, round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=1)
    rnd.analysis_settings = {**rnd.analysis_settings, "tie_rule": "coin-flip"}
    rnd.save(update_fields=["analysis_settings"])
    html = _page(staff_client, rnd)
    assert "No results:" in html and "tie_rule" in html
    resp = staff_client.get(f"/research/rounds/{rnd.pk}/export/summary.json")
    assert resp.status_code == 409 and b"tie_rule" in resp.content
    assert re.search(r"<svg", html) is None


# ---------------------------------------------------------------------------------------------
# Edge-case vote patterns (issue 11): the round page, the results fragment, every export and
# export_stats must work for each, and a figure failure must not take any of them down.


def _vote_pattern(rnd, pattern: str) -> None:
    """Votes of one generated pattern, created with the ORM as the annotator flow stores them."""
    from datetime import timedelta

    from django.utils import timezone

    items = list(ComparisonItem.objects.filter(round=rnd).select_related("render_a", "render_b", "prompt").order_by("id"))
    now = timezone.now()
    n_ann = {"no_votes": 0, "one_vote": 1}.get(pattern, 3)
    for k in range(n_ann):
        ann = Annotator.objects.create(round=rnd, status=Annotator.Status.COMPLETED, pseudonym=f"pat-{rnd.pk}-{k}")
        for pos, it in enumerate(items[:1] if pattern == "one_vote" else items, start=1):
            a_left = (pos + k) % 2 == 0
            left, right = (it.render_a, it.render_b) if a_left else (it.render_b, it.render_a)
            t = Trial.objects.create(annotator=ann, position=pos, kind=Trial.Kind.REGULAR, item=it, prompt=it.prompt,
                                     left_render=left, right_render=right, answered_at=now + timedelta(seconds=pos))
            crits = ("realism",) if pattern in ("one_vote", "one_criterion_empty") else ("realism", "alignment")
            for crit in crits:
                shift = "SHIFT" if it.objective_a == "SHIFT" else it.objective_b
                other = it.objective_b if shift == it.objective_a else it.objective_a
                if pattern == "all_ties":
                    winner = "tie"
                elif pattern == "zero_and_all":  # SHIFT loses every vote against ITC, wins every other
                    winner = other if other == "ITC" else shift
                else:
                    winner = shift if (pos + k) % 3 else other
                choice = "tie" if winner == "tie" else ("left" if winner == left.objective else "right")
                ms = 300 if pattern == "excluded_only" else 2500  # under the declared 800 ms floor
                Vote.objects.create(trial=t, criterion=crit, choice=choice, winner=winner, response_ms=ms)


PATTERNS = ["no_votes", "one_vote", "zero_and_all", "all_ties", "one_criterion_empty", "excluded_only"]


def _everything_renders(client, rnd, tmp_path) -> exports.RoundExport:
    from django.core.management import call_command
    from django.template.loader import render_to_string

    from studyapp.views.results import results_context

    html = _page(client, rnd)
    assert "could not be computed" not in html and "No results:" not in html
    ctx = results_context(rnd)
    assert ctx["error"] == ""
    fragment = render_to_string("research/_results.html", {"results": ctx, "round": rnd})
    assert 'id="results"' in fragment
    base = f"/research/rounds/{rnd.pk}/export/"
    for name in exports.FILE_NAMES:
        resp = client.get(base + name)
        assert resp.status_code == 200, (name, resp.content[:300])
    assert client.get(base + "round-export.zip").status_code == 200
    out = tmp_path / f"export-{rnd.pk}"
    call_command("export_stats", str(rnd.pk), "--out", str(out), stdout=io.StringIO())
    for name in exports.FILE_NAMES:
        assert (out / name).stat().st_size > 0
    return exports.round_export(rnd)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_page_and_export_renders_for_edge_case_votes(staff_client, round_config, tmp_path, pattern):
    rnd = open_round(round_config)
    _vote_pattern(rnd, pattern)
    export = _everything_renders(staff_client, rnd, tmp_path)
    cells = export.summary["results"]["declared"]["preference"]
    for c in cells:
        for key in ("ci", "ci_wilson", "ci_exact"):
            lo, hi = c[key]
            if c["rate_excl_ties"] is not None and key != "ci":
                # Every interval lies in [0, 1] and contains its rate (the Wilson bound at 0 wins).
                assert 0 <= lo <= c["rate_excl_ties"] <= hi <= 1, (key, c)
        assert c["significant"] is False or c["verdict"] in ("for", "against")
    if pattern == "zero_and_all":
        itc = next(c for c in export.summary["results"]["all"]["preference"] if c["baseline"] == "ITC")
        assert itc["wins"] == 0 and itc["ci_wilson"][0] == 0.0
    if pattern == "excluded_only":
        assert export.summary["results"]["declared"]["votes"] == 0
        assert export.summary["exclusions"]["total"]["annotators_kept"] == 0


def test_a_figure_failure_does_not_take_down_the_page_or_any_export(staff_client, round_config, tmp_path, monkeypatch):
    import studyapp.stats.report as report

    def broken(*args, **kwargs):
        raise ValueError("'yerr' must not contain negative values")

    monkeypatch.setattr(report, "draw_figure", broken)
    rnd = open_round(round_config)
    _vote_pattern(rnd, "zero_and_all")
    export = _everything_renders(staff_client, rnd, tmp_path)
    assert b"Figure not drawn" in export.files["figure.svg"]
    assert "Figure not drawn" in _page(staff_client, rnd)


# ---------------------------------------------------------------------------------------------
# Declared monitoring and the automatic close


def test_monitoring_is_frozen_with_the_settings_and_shown_per_cell(staff_client, round_config):
    rnd = open_round(round_config, monitoring={"planned_votes": 40, "looks": 4})
    assert rnd.analysis_settings["monitoring"] == {"planned_votes": 40, "looks": 4, "spending": "obrien_fleming"}
    add_votes(rnd, n_annotators=2, attention=False, practice=False)  # 16 votes per cell: one look done
    html = _page(staff_client, rnd)
    assert 'id="running-note"' in html and "not a decision" in html and "4 looks" in html
    cells = exports.round_export(rnd).summary["results"]["declared"]["preference"]
    assert all(c["monitoring"]["looks_done"] == 1 and c["monitoring"]["next_look_votes"] == 20 for c in cells)
    assert all(c["verdict"] == "continue" for c in cells)  # 8 prompts: fewer than the 10 a verdict needs
    assert "next look at 20 votes (4 to go)" in html
    settings = json.loads(staff_client.get(f"/research/rounds/{rnd.pk}/export/settings.json").content)
    assert settings["monitoring"]["looks"] == 4


@pytest.mark.parametrize("at, closes", [(47, True), (48, True), (49, False)])
def test_auto_close_at_votes_at_below_and_above(staff_client, round_config, at, closes):
    # add_votes(1 annotator, no attention/practice): 8 prompts x 3 baselines x 2 criteria = 48 votes
    rnd = open_round(round_config, auto_close={"at_votes": at})
    add_votes(rnd, n_annotators=1, attention=False, practice=False)
    html = _page(staff_client, rnd)
    rnd.refresh_from_db()
    assert (rnd.status == "closed") == closes
    assert ('id="auto-closed"' in html) == closes
    # Exports keep working on the closed round.
    assert staff_client.get(f"/research/rounds/{rnd.pk}/export/summary.json").status_code == 200


def test_auto_close_when_every_cell_is_decided(round_config):
    from studyapp.services.auto_close import auto_close_reason

    rnd = open_round(round_config, monitoring={"planned_votes": 40, "looks": 4}, auto_close={"when_decided": True})
    summary = {"data": {"regular_votes": 5}, "settings": rnd.analysis_settings,
               "results": {"declared": {"preference": [{"verdict": v} for v in ("for", "against", "no_difference")]}}}
    assert "final decision" in auto_close_reason(rnd, summary)
    summary["results"]["declared"]["preference"][1]["verdict"] = "continue"
    assert auto_close_reason(rnd, summary) == ""


@pytest.mark.parametrize("bad, message", [
    ({"auto_close": {"when_decided": True}}, "needs a monitoring rule"),
    ({"auto_close": {}}, "set when_decided or at_votes"),
    ({"auto_close": {"at_votes": 0}}, "auto_close.at_votes"),
    ({"auto_close": {"at_votes": True}}, "auto_close.at_votes"),
    ({"auto_close": "yes"}, "auto_close: must be null or an object"),
    ({"monitoring": {"looks": 3}}, "monitoring.planned_votes: required"),
    ({"monitoring": {"planned_votes": "300"}}, "monitoring.planned_votes"),
    ({"monitoring": {"planned_votes": 300, "looks": 20, "spending": "pocock\x00"}}, "monitoring.spending"),
])
def test_monitoring_and_auto_close_config_errors_are_named(round_config, bad, message):
    from studyapp.exceptions import ConfigError
    from studyapp.round_config import RoundConfig

    with pytest.raises(ConfigError) as e:
        RoundConfig.from_dict({**round_config, **bad})
    assert message in str(e.value.problems)


def test_config_without_monitoring_keys_still_loads(round_config):
    from studyapp.round_config import RoundConfig

    cfg = RoundConfig.from_dict(round_config)
    assert cfg.monitoring is None and cfg.auto_close is None
    assert RoundConfig.from_dict(cfg.to_dict()) == cfg


# ---------------------------------------------------------------------------------------------
# In a real browser: the results table is not clipped on a laptop, nothing overflows on a phone.


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_results_fit_a_laptop_and_a_phone(live_server, round_config, staff_user):
    from django.test import Client
    from playwright.sync_api import sync_playwright

    from tests.conftest import chromium_or_skip

    rnd = open_round({**round_config, "monitoring": {"planned_votes": 200, "looks": 10}})
    add_votes(rnd, n_annotators=4, fast_annotator=True)
    client = Client()
    client.force_login(staff_user)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_or_skip(), args=args)
        try:
            for width, height in ((1366, 768), (390, 844)):
                ctx = browser.new_context(viewport={"width": width, "height": height})
                ctx.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
                page = ctx.new_page()
                page.goto(f"{live_server.url}/research/rounds/{rnd.pk}/")
                assert page.locator("#pref-realism").is_visible()
                # No horizontal scroll of the page itself; wide tables scroll inside their box.
                assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
                if width == 1366:
                    clipped = page.evaluate("""() => [...document.querySelectorAll('.results-table')]
                        .filter(t => t.scrollWidth > t.parentElement.clientWidth + 1).map(t => t.id)""")
                    assert clipped == []
                ctx.close()
        finally:
            browser.close()
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_an_unexpected_analysis_failure_is_a_message_not_a_500(staff_client, round_config, tmp_path, monkeypatch):
    from django.core.management import CommandError, call_command

    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=1, attention=False, practice=False)

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(exports, "run_stats_on_file", broken)
    html = _page(staff_client, rnd)
    assert "could not be computed" in html and "RuntimeError: boom" in html
    resp = staff_client.get(f"/research/rounds/{rnd.pk}/export/summary.json")
    assert resp.status_code == 409 and b"RuntimeError: boom" in resp.content
    with pytest.raises(CommandError, match="failed unexpectedly"):
        call_command("export_stats", str(rnd.pk), "--out", str(tmp_path / "x"))
    # The round can still be closed from its page (the link to the close confirmation).
    assert f'href="/research/rounds/{rnd.pk}/close/"' in html
