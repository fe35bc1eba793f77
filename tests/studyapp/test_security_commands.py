"""Junk given to the commands (issue 13, item 3): a listed error, never a traceback, and nothing
written. import_prompts with the prompt files the import form refuses; create_round with deeply
nested or oversized JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp.management.commands.create_round import MAX_CONFIG_BYTES
from studyapp.models import ComparisonItem, Prompt, PromptSet, Render, StudyRound
from studyapp.services import prompts as prompt_services

from .test_security import JUNK_PROMPT_FILES

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def counts():
    return tuple(m.objects.count() for m in (PromptSet, Prompt, StudyRound, Render, ComparisonItem))


@pytest.mark.parametrize("case", sorted(JUNK_PROMPT_FILES))
def test_import_prompts_command_refuses_junk_with_the_problem(tmp_path, case):
    data, expected = JUNK_PROMPT_FILES[case]
    path = tmp_path / "junk.tsv"
    path.write_bytes(data)
    before = counts()
    with pytest.raises(CommandError) as exc:
        call_command("import_prompts", "junk", str(path))
    assert expected in str(exc.value) and "nothing was imported" in str(exc.value)
    assert counts() == before


def test_prompt_file_size_threshold(tmp_path, monkeypatch):
    body = b"prompt\na cat\na dog\n"
    path = tmp_path / "p.tsv"
    path.write_bytes(body)
    monkeypatch.setattr(prompt_services, "MAX_FILE_BYTES", len(body) - 1)  # one byte over: refused
    with pytest.raises(CommandError, match=f"larger than {len(body) - 1} bytes"):
        call_command("import_prompts", "just-over", str(path))
    monkeypatch.setattr(prompt_services, "MAX_FILE_BYTES", len(body))  # at the cap: accepted
    call_command("import_prompts", "at-cap", str(path))
    assert PromptSet.objects.get(name="at-cap").prompts.count() == 2


def deep(depth: int, leaf="{}") -> str:
    return '{"a": ' * depth + leaf + "}" * depth


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (deep(100_000), "nested too deeply"),
        ('{"name": "x", "generation": ' + deep(50_000) + "}", "nested too deeply"),
        ('{"name": "' + "n" * (MAX_CONFIG_BYTES + 1) + '"}', "larger than 1,048,576 bytes"),
        ("\x00{}", "not valid JSON"),
    ],
    ids=["deep list", "deep object", "deep generation", "oversized", "nul"],
)
def test_create_round_junk_json_is_a_message(tmp_path, text, expected):
    path = tmp_path / "round.json"
    path.write_text(text)
    before = counts()
    with pytest.raises(CommandError, match=expected):
        call_command("create_round", str(path))
    assert counts() == before


def test_create_round_deep_json_prints_a_message_not_a_traceback(tmp_path):
    path = tmp_path / "round.json"
    path.write_text(deep(100_000))
    proc = subprocess.run([sys.executable, "manage.py", "create_round", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert "nested too deeply" in proc.stderr and "Traceback" not in proc.stderr


def test_create_round_config_at_the_size_cap_is_read(tmp_path, round_config):
    """Exactly MAX_CONFIG_BYTES (padded with spaces) is read and validated like any config."""
    text = json.dumps(round_config)
    path = tmp_path / "round.json"
    path.write_text(text + " " * (MAX_CONFIG_BYTES - len(text)))
    call_command("create_round", str(path))
    assert StudyRound.objects.filter(name=round_config["name"]).count() == 1
