"""Temporary: screenshots of the results section (not committed)."""
import pytest
from django.test import Client

from studyapp.models import Prompt, PromptSet, Render
from studyapp.services.rounds import round_create, round_transition
from tests.conftest import chromium_or_skip
from tests.studyapp import test_results_rows as rr

pytestmark = [pytest.mark.django_db(transaction=True)]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_shots(live_server, round_config, staff_user):
    ps = PromptSet.objects.create(name="coco-mini", title="shots")
    Prompt.objects.bulk_create(Prompt(prompt_set=ps, position=i, text=f"prompt {i}", category=["animals", "text", "scenes"][i % 3]) for i in range(14))
    cfg = {**round_config, "prompt_set": "coco-mini", "prompt_limit": 14, "seeds_per_prompt": 1,
           "monitoring": {"planned_votes": 200, "looks": 10}}
    rnd = round_create(config=cfg)
    Render.objects.filter(round=rnd).update(status="done", image="renders/dummy.png", provenance={}, itc_score=0.3, itm_score=0.5, cap_score=-2.0)
    for i, r in enumerate(Render.objects.filter(round=rnd)):
        Render.objects.filter(pk=r.pk).update(itc_score=0.3 + (0.1 if r.objective == "SHIFT" else 0) + 0.01 * (i % 5))
    round_transition(round_id=rnd.pk, to="ready")
    rnd = round_transition(round_id=rnd.pk, to="open")
    p = {**rr.P_SHIFT, ("ITC", "realism"): 0.95, ("CAP", "alignment"): 0.1}
    rr.add_votes(rnd, n_annotators=12, fast_annotator=True, p_shift=p)
    c = Client()
    c.force_login(staff_user)
    sid = c.cookies["sessionid"].value
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_or_skip(), args=ARGS)
        for w, h in ((1366, 768), (390, 844)):
            ctx = b.new_context(viewport={"width": w, "height": h})
            ctx.add_cookies([{"name": "sessionid", "value": sid, "url": live_server.url}])
            page = ctx.new_page()
            page.goto(f"{live_server.url}/research/rounds/{rnd.pk}/")
            page.locator("#results").scroll_into_view_if_needed()
            page.screenshot(path=f"/tmp/shots/stats/results_{w}.png", full_page=True)
            page.evaluate("document.getElementById('results').scrollIntoView()")
            page.screenshot(path=f"/tmp/shots/stats/results_view_{w}.png")
            sw = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            print("scrollWidth", w, sw)
            wide = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1 && !e.closest('.scroll')).slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().right))""")
            print(wide)
            ctx.close()
        b.close()
