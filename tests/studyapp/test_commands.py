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
