"""``python -m studyapp.stats``: from an exported votes file alone, reproducibly, without Django."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studyapp.stats import simulate_votes, write_votes_csv
from studyapp.stats.__main__ import main

REPO = Path(__file__).resolve().parents[2]
STATS_DIR = REPO / "studyapp" / "stats"


@pytest.fixture
def votes_csv(tmp_path):
    t = simulate_votes(trials_per_baseline=80, attention_per_annotator=3, careless_annotators=2, n_categories=3, tie_rate=0.15, seed=21)
    path = tmp_path / "votes.csv"
    write_votes_csv(t, path)
    return path


def _settings(tmp_path, **kw):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"bootstrap_replicates": 200, "bt_replicates": 100, **kw}))
    return path


def test_out_dir_and_settings_from_summary_reproduce_exactly(tmp_path, votes_csv, capsys):
    out1, out2 = tmp_path / "one", tmp_path / "two"
    assert main([str(votes_csv), "--settings", str(_settings(tmp_path, tie_rule="half")), "--out", str(out1)]) == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((out1 / "summary.json").read_text())
    assert printed == summary
    assert summary["settings"]["tie_rule"] == "half" and summary["settings"]["bootstrap_replicates"] == 200
    assert summary["input"]["rows"] > 0 and len(summary["input"]["sha256"]) == 64
    for name in ("summary.json", "summary.csv", "annotators.csv", "figure.svg", "figure.png"):
        assert (out1 / name).stat().st_size > 0, name
    assert (out1 / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out1 / "figure.svg").read_bytes()
    # The exported summary.json as --settings reproduces it byte for byte.
    assert main([str(votes_csv), "--settings", str(out1 / "summary.json"), "--out", str(out2)]) == 0
    capsys.readouterr()
    for name in ("summary.json", "summary.csv", "annotators.csv", "figure.svg", "figure.png"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


def test_summary_csv_rows(tmp_path, votes_csv, capsys):
    out = tmp_path / "out"
    main([str(votes_csv), "--settings", str(_settings(tmp_path)), "--out", str(out)])
    capsys.readouterr()
    lines = (out / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("subset,section,comparison,baseline,criterion,objective,wins")
    pref = [line for line in lines[1:] if ",preference," in line]
    assert len(pref) == 2 * 3 * 2  # (all, declared) x 3 baselines x 2 criteria
    assert sum(",bradley_terry," in line for line in lines) == 2 * 2 * 4


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("annotator,choice\nx,left\n")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "missing column(s): round_id, vote_id" in err
    assert main([str(tmp_path / "nope.csv")]) == 2
    settings = tmp_path / "s.json"
    settings.write_text('{"tie_rule": "coin"}')
    assert main([str(bad), "--settings", str(settings)]) == 2
    assert "tie_rule: must be one of exclude, half" in capsys.readouterr().err


def test_planner_option(capsys):
    assert main(["--plan", "0.6", "--n-tests", "1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    # STUDY.md 4.8: 199 (210).
    assert (plan["non_tie_first"], plan["non_tie_stable"]) == (199, 210)


def test_runs_as_a_module_without_django_settings(tmp_path, votes_csv):
    # A settings module that cannot be imported: anything touching Django settings would fail.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "no_such_settings_module_for_stats", "PYTHONPATH": str(REPO)}
    settings = _settings(tmp_path, bootstrap_replicates=20, bt_replicates=10)
    proc = subprocess.run(
        [sys.executable, "-m", "studyapp.stats", str(votes_csv), "--settings", str(settings)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schema"] == "studyapp.stats/1"


def test_stats_package_imports_no_django():
    for path in STATS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("django", "celery")), f"{path.name} imports {name}"
                if name.startswith("studyapp."):
                    assert name.startswith("studyapp.stats"), f"{path.name} imports {name}"
