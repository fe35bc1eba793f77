"""Calibration pilot end to end: a toy pilot rendered by a real Celery worker through the broker,
its grid page, and the suggested scales written into a new round's config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from generation.pilot import HF_RATIO_LIMIT
from generation.presets import spec_from_config
from studyapp.models import Render
from studyapp.models_pilot import Pilot
from studyapp.services.pilot import pilot_create
from studyapp.services.prompts import builtin_prompt_sets_load
from studyapp.services.rounds import round_create
from tests.e2e.test_celery_render import REPO, child_env, queue, redis_client, wait_for, workers  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCALES = [0.0, 0.1, 1.0]


def manage(env, *args):
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def toy_pilot():
    builtin_prompt_sets_load()
    return pilot_create(name="toy pilot", prompt_set="toyworld", generation={"preset": "toy", "batch_size": 2},
                        objectives=["ITC", "CAP"], scales=SCALES, seeds_per_prompt=1, prompt_limit=2, round_seed=7)


def test_toy_pilot_rendered_by_a_worker_grid_page_and_new_config(workers, child_env, toy_pilot, staff_client, tmp_path):
    rounds = list(toy_pilot.scale_rounds.select_related("round"))
    assert [r.scale for r in rounds] == SCALES
    for pr in rounds:  # every objective of a round is rendered at the round's scale; noise shared
        spec = spec_from_config(pr.round.config["generation"])
        assert spec.scale_itc == spec.scale_cap == pr.scale and pr.round.config["round_seed"] == 7

    page = staff_client.get(f"/research/pilots/{toy_pilot.pk}/")
    assert page.status_code == 200 and b"The suggestion appears when every image is rendered" in page.content
    assert staff_client.get(f"/research/pilots/{toy_pilot.pk}/round-config.json").status_code == 302  # not yet

    out = manage(child_env, "pilot", "launch", str(toy_pilot.pk))
    assert "12 render(s) queued" in out
    workers.start()
    wait_for(lambda: Render.objects.filter(round__pilot_scale__pilot=toy_pilot, status=Render.Status.DONE).count() == 12,
             timeout=240, what="the pilot's 12 images", workers=workers)

    # Paired noise: the anchor (scale 0) images of the two objectives are the same pixels.
    anchor = {r.objective: r.provenance["noise_seed"] for r in Render.objects.filter(round=rounds[0].round, seed=0,
                                                                                   prompt__position=rounds[0].round.renders.order_by("prompt__position").first().prompt.position)}
    assert anchor["ITC"] == anchor["CAP"]
    for r in Render.objects.filter(round__pilot_scale__pilot=toy_pilot):
        diag = r.provenance["diagnostics"]
        assert diag["high_frequency_energy"] > 0 and diag["x0_range_excess_late"] >= 0

    page = staff_client.get(f"/research/pilots/{toy_pilot.pk}/")
    html = page.content.decode()
    assert page.status_code == 200 and "Suggested scales" in html
    assert html.count('src="/research/renders/') == 2 * 2 * len(SCALES)  # objectives x prompts x scales
    assert "HF " in html and f"above {HF_RATIO_LIMIT:g}" in html

    resp = staff_client.get(f"/research/pilots/{toy_pilot.pk}/round-config.json")
    assert resp.status_code == 200 and resp["Content-Disposition"].startswith("attachment")
    config = json.loads(resp.content)
    suggested = {o: config["generation"][f"scale_{o.lower()}"] for o in ("ITC", "CAP")}
    assert set(suggested.values()) <= set(SCALES) - {0.0}
    assert config["generation"]["preset"] == "toy" and config["generation"]["batch_size"] == 2

    # The command writes the same config; a new round created from it renders at those scales.
    path = tmp_path / "round.json"
    out = manage(child_env, "pilot", "suggest", str(toy_pilot.pk), "--out", str(path))
    assert "ITC: scale" in out and json.loads(path.read_text()) == config
    new = round_create(config={**config, "name": "calibrated"})
    spec = spec_from_config(new.config["generation"])
    assert (spec.scale_itc, spec.scale_cap) == (suggested["ITC"], suggested["CAP"])


def test_pilot_create_refuses_bad_input_and_the_page_needs_staff(staff_client):
    from django.test import Client

    from studyapp.exceptions import ConfigError

    client = Client()  # anonymous (staff_client is the logged-in default client)

    builtin_prompt_sets_load()
    bad = dict(name="", prompt_set="toyworld", generation={"preset": "nope"}, objectives=["ITC"], scales=[0.1, 1.0],
               seeds_per_prompt=0, prompt_limit=10**6)
    with pytest.raises(ConfigError) as err:
        pilot_create(**bad)
    text = str(err.value)
    for expected in ("name:", "objectives:", "scales: scales must include 0", "seeds_per_prompt:", "prompt_limit:", "generation: preset"):
        assert expected in text
    with pytest.raises(ConfigError, match="no prompt set"):
        pilot_create(name="p", prompt_set="nope", generation={"preset": "toy"}, objectives=["ITC", "CAP"], scales=[0, 1])
    pilot = pilot_create(name="p", prompt_set="toyworld", generation={"preset": "toy"}, objectives=["ITC", "CAP"],
                         scales=[0, 1], seeds_per_prompt=1, prompt_limit=1)
    with pytest.raises(ConfigError, match="exists"):
        pilot_create(name="p", prompt_set="toyworld", generation={"preset": "toy"}, objectives=["ITC", "CAP"], scales=[0, 1])
    assert Pilot.objects.count() == 1
    assert client.get(f"/research/pilots/{pilot.pk}/").status_code == 302  # to the login page
    assert client.post(f"/research/pilots/{pilot.pk}/launch/").status_code == 302
    assert staff_client.get("/research/pilots/").status_code == 200
    assert staff_client.get("/research/pilots/999999/").status_code == 404


def test_pilot_command_create_minimal_and_junk(tmp_path):
    from django.core.management import CommandError, call_command

    builtin_prompt_sets_load()
    call_command("pilot", "create", "minimal", "--prompt-set", "toyworld", "--objectives", "ITC,CAP", "--preset", "toy")
    pilot = Pilot.objects.get(name="minimal")
    # Default sweep: 7 log-spaced scales (3 significant digits) from 1/100 to 10x the toy preset's
    # own ITC scale (0.316, docs/toyworld/REPORT.md's pilot).
    assert pilot.config["scales"] == [0.0, 0.00316, 0.00999, 0.0316, 0.0999, 0.316, 0.999, 3.16]
    assert pilot.scale_rounds.count() == 8
    for args, message in (
        (["--scales", "0,x"], "scales:"),
        (["--scales", "0.1,1"], "must include 0"),
        (["--log-scales", "1", "0.1", "3"], "low <= high"),
        (["--objectives", "ITC"], "at least two"),
        (["--set", "respacing=\"1\""], "respacing"),
        (["--preset", "x\x00y"], "preset"),
    ):
        argv = ["pilot", "create", "junk", "--prompt-set", "toyworld", "--objectives", "ITC,CAP", "--preset", "toy"]
        for i in range(0, len(args), 2):
            flag = args[i]
            if flag in argv:
                argv[argv.index(flag) + 1] = args[i + 1]
            else:
                argv += args[i:]
                break
        with pytest.raises(CommandError, match=message):
            call_command(*argv)
    assert not Pilot.objects.filter(name="junk").exists()
    with pytest.raises(CommandError, match="no pilot with id"):
        call_command("pilot", "suggest", "999999")
    with pytest.raises(CommandError, match="0 of 128 images rendered"):
        call_command("pilot", "suggest", str(pilot.pk), "--out", str(tmp_path / "x.json"))
