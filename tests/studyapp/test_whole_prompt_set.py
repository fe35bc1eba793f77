"""Issue 11 blocker 1: a round over a whole prompt set (no prompt_limit) is created, rendered,
opened, shown and exported, through the public entries with only the required input."""

import html
import json
import re
import zipfile
from io import BytesIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image

from studyapp.models import StudyRound
from studyapp.round_config import RoundConfig
from tests.studyapp.factories import make_active_annotator
from studyapp.services import allocation, votes

pytestmark = pytest.mark.django_db

PROMPTS = ["a red square", "a blue circle", "a green triangle"]
REQUIRED_ONLY = {
    "name": "whole set", "prompt_set": "three", "objectives": ["SHIFT", "ITC"], "seeds_per_prompt": 1,
    "comparisons": "shift-vs-baselines", "votes_per_item": 1, "trials_per_annotator": 3, "attention_check_rate": 0,
}
assert set(REQUIRED_ONLY) == set(RoundConfig.REQUIRED)


@pytest.fixture
def three_prompts(staff_client):
    """A prompt set of three prompts, imported through the import page."""
    body = ("prompt\tcategory\n" + "".join(f"{p}\tshapes\n" for p in PROMPTS)).encode()
    resp = staff_client.post("/research/prompt-sets/import/", {"name": "three", "file": SimpleUploadedFile("p.tsv", body)})
    assert resp.status_code == 302


def import_images(rnd, tmp_path):
    """Images made "elsewhere", imported with the import_renders command (draft -> ready)."""
    rows = ["prompt\tseed\tobjective\tfile"]
    for i, r in enumerate(rnd.renders.select_related("prompt")):
        Image.new("RGB", (16, 16), (40 * i % 255, 90, 150)).save(tmp_path / f"{i}.png")
        rows.append(f"{r.prompt.text}\t{r.seed}\t{r.objective}\t{i}.png")
    (tmp_path / "manifest.tsv").write_text("\n".join(rows) + "\n")
    call_command("import_renders", str(rnd.pk), str(tmp_path))


def one_vote_each(rnd):
    from datetime import timedelta

    ann = make_active_annotator(rnd)
    nxt = allocation.trial_next(annotator_id=ann.pk)
    votes.trial_answer(annotator_id=ann.pk, position=nxt.trial.position,
                       answer=votes.Answer({"realism": "left", "alignment": "tie"}, {"realism": 2000, "alignment": 2000}),
                       now=nxt.trial.served_at + timedelta(seconds=10))


def open_show_export(client, rnd):
    resp = client.post(f"/research/rounds/{rnd.pk}/transition/", {"to": "open"}, follow=True)
    assert resp.status_code == 200 and "Round is now open" in resp.content.decode()
    rnd.refresh_from_db()
    for _ in range(2):  # before and after a vote
        page = client.get(f"/research/rounds/{rnd.pk}/")
        assert page.status_code == 200
        # The config panel is JSON that loads as the stored config (it was a Python repr).
        shown = re.search(r'<pre class="config-json" id="config-json">(.*?)</pre>', page.content.decode(), re.S)
        assert json.loads(html.unescape(shown.group(1))) == rnd.config
        for name in ("votes.csv", "summary.json", "settings.json", "summary.csv", "figure.svg", "figure.png"):
            assert client.get(f"/research/rounds/{rnd.pk}/export/{name}").status_code == 200, name
        z = client.get(f"/research/rounds/{rnd.pk}/export/round-export.zip")
        assert z.status_code == 200 and f"round-{rnd.pk}/votes.csv" in zipfile.ZipFile(BytesIO(z.content)).namelist()
        one_vote_each(rnd)


def test_create_round_config_with_only_the_required_keys(three_prompts, staff_client, tmp_path, capsys):
    path = tmp_path / "round.json"
    path.write_text(json.dumps(REQUIRED_ONLY))
    call_command("create_round", str(path))
    rnd = StudyRound.objects.get(pk=int(capsys.readouterr().out.strip()))
    assert rnd.config["prompt_limit"] is None and rnd.renders.count() == 3 * 2 and rnd.items.count() == 3
    cfg = RoundConfig.from_dict(rnd.config)  # the stored config loads again (it did not: issue 11)
    assert cfg.prompt_limit is None and RoundConfig.from_dict(cfg.to_dict()) == cfg
    assert rnd.config["generation"]["preset"] == "paper"  # the default, said in the stored config
    call_command("round_status", str(rnd.pk))
    assert "renders: 0/6 done" in capsys.readouterr().out
    assert staff_client.get(f"/research/rounds/{rnd.pk}/").status_code == 200
    import_images(rnd, tmp_path)
    open_show_export(staff_client, rnd)


def test_form_with_only_the_required_fields_renders_in_process(three_prompts, staff_client, settings,
                                                               one_torch_thread, capsys):
    settings.CELERY_BROKER_URL = None
    form = {**REQUIRED_ONLY, "prompt_set": "three", "preset": "tiny"}  # tiny: real (random) models, seconds on a CPU
    resp = staff_client.post("/research/rounds/new/", form)
    rnd = StudyRound.objects.get(name="whole set")
    assert resp.status_code == 302, resp.content.decode()[:2000]
    assert rnd.config["prompt_limit"] is None and rnd.renders.count() == 6
    assert RoundConfig.from_dict(rnd.config).practice_trials == 2  # blank optional settings: the defaults
    call_command("render_round", str(rnd.pk))
    rnd.refresh_from_db()
    assert rnd.status == "ready", capsys.readouterr()
    open_show_export(staff_client, rnd)
