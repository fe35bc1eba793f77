"""``python -m generation`` as a user runs it: bad spec files get a message, never a traceback;
presets are selectable by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from generation.presets import PRESETS, spec_from_config

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "generation", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def render_args(tmp_path, *extra):
    return ["render", "--prompt", "a red bus", "--objective", "ITC", "--out", str(tmp_path / "out"), *extra]


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ("{not json", "not valid JSON (line 1, column 2"),
    ("[1, 2]", "must hold a JSON object of spec fields, not list"),
    ('{"respacing": "1"}', "respacing: '1' gives 1 sampling step"),
    ('{"preset": "papr"}', "preset: 'papr' is not one of"),
    ("\x00\x01", "not valid JSON"),
])
def test_render_spec_file_problems_print_a_message(tmp_path, content, expected):
    spec = tmp_path / "spec.json"
    if content is not None:
        spec.write_text(content)
    out = cli(*render_args(tmp_path, "--tiny", "--spec", str(spec)))
    assert out.returncode != 0
    assert expected in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ")


def test_spec_file_that_is_not_utf8_prints_a_message(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_bytes(b"\xff\xfe{")
    out = cli(*render_args(tmp_path, "--tiny", "--spec", str(spec)))
    assert out.returncode != 0 and "cannot read it" in out.stderr and "Traceback" not in out.stderr


def test_tiny_with_another_preset_is_refused(tmp_path):
    out = cli(*render_args(tmp_path, "--tiny", "--preset", "paper"))
    assert out.returncode != 0 and "drop one of them" in out.stderr and "Traceback" not in out.stderr


def test_presets_command_lists_every_preset_with_its_resolved_spec():
    out = cli("presets")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["name"] for r in rows] == list(PRESETS)
    for r in rows:
        assert r["spec"] == spec_from_config({"preset": r["name"]}).to_dict()


def test_render_with_a_preset_and_a_spec_file(tmp_path):
    """--spec {"preset": "tiny", ...} renders with the tiny preset plus the override."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"preset": "tiny", "respacing": "3"}))
    out = cli(*render_args(tmp_path, "--spec", str(spec)))
    assert out.returncode == 0, out.stderr
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())["images"][0]
    assert prov["spec"] == spec_from_config({"preset": "tiny", "respacing": "3"}).to_dict()
