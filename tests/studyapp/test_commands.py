"""create_round and round_status from the command line."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp.models import StudyRound

pytestmark = pytest.mark.django_db


def test_create_round_prints_the_id_and_round_status_reports(tmp_path, capsys, round_config):
    path = tmp_path / "round.json"
    path.write_text(json.dumps(round_config))
    call_command("create_round", str(path))
    round_id = int(capsys.readouterr().out.strip())
    rnd = StudyRound.objects.get(pk=round_id)
    assert rnd.name == "test round"

    call_command("round_status", str(round_id))
    out = capsys.readouterr().out
    assert "status: draft" in out
    assert "renders: 0/32 done" in out
    assert "items: 24" in out
    assert f"/a/{rnd.token}/" in out


def test_invalid_config_lists_every_problem(tmp_path, round_config):
    path = tmp_path / "round.json"
    path.write_text(json.dumps({**round_config, "votes_per_item": 0, "objectives": ["SHIFT"]}))
    with pytest.raises(CommandError) as exc:
        call_command("create_round", str(path))
    assert "votes_per_item" in str(exc.value) and "at least two" in str(exc.value)
    assert not StudyRound.objects.exists()


def test_unreadable_config_and_unknown_round(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("create_round", str(bad))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("create_round", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match="no round with id 999999"):
        call_command("round_status", "999999")


def test_round_status_links_follow_the_servers_port(tmp_path, capsys, round_config, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    path = tmp_path / "round.json"
    path.write_text(json.dumps(round_config))
    call_command("create_round", str(path))
    round_id = capsys.readouterr().out.strip()
    call_command("round_status", round_id)
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8000/a/" in out and "0 queued" in out and "32 not launched" in out
    call_command("round_status", round_id, "--addrport", "0.0.0.0:8001")
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8001/a/" in out and f"http://127.0.0.1:8001/research/rounds/{round_id}/" in out
    call_command("round_status", round_id, "--addrport", "8002")
    assert "http://127.0.0.1:8002/a/" in capsys.readouterr().out


@pytest.mark.parametrize("junk, needle", [
    ('{"name": "a\\u0000b"}', "name: contains a NUL character"),
    ('{"name": "' + "n" * 100_000 + '"}', "name: at most 200 characters"),
    ('{"generation": {"cap_prompt": ' + "[" * 50 + "]" * 50 + "}}", "nested deeper than"),
    ('{"generation": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"seeds_per_prompt": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"consent_text": "x\\u0000"}', "consent_text: contains a NUL character"),
])
def test_create_round_junk_is_a_listed_error(tmp_path, round_config, junk, needle):
    data = json.loads(json.dumps(round_config))
    path = tmp_path / "round.json"
    text = json.dumps(data)[:-1] + ", " + junk[1:] if junk.startswith("{") else junk
    # the junk keys replace the valid ones (JSON objects keep the last duplicate key)
    path.write_text(text)
    with pytest.raises(CommandError) as exc:
        call_command("create_round", str(path))
    assert needle in str(exc.value)
    assert not StudyRound.objects.exists()


def test_demo_help_says_toy_world_without_checkpoints(capsys):
    with pytest.raises(SystemExit):
        call_command("demo", "--help")
    out = " ".join(capsys.readouterr().out.split())
    assert "toy world" in out and "WEIGHTS_DIR" in out and "--tiny" in out
