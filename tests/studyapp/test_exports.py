"""Exports: export_stats writes the bundle; `python -m studyapp.stats` on the exported votes and
settings reproduces the exported summary exactly; the CSV matches the database."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp import exports, stats
from studyapp.models import Annotator, Vote
from tests.dbutil import current_database_url

from .test_results_rows import add_votes, open_round

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _stats_cli(*args: str) -> subprocess.CompletedProcess:
    # The stats CLI needs no Django: run it without the settings module to prove it.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "studyapp.stats", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_export_then_the_stats_cli_reproduces_the_summary(tmp_path, round_config, capsys):
    rnd = open_round({**round_config, "tie_rule": "half", "round_seed": 7, "monitoring": {"planned_votes": 30, "looks": 3}})
    add_votes(rnd, n_annotators=5, fast_annotator=True)
    # Render scores (one render without: an imported image) travel in votes.csv.
    from studyapp.models import Render

    for i, r in enumerate(Render.objects.filter(round=rnd).order_by("id")):
        if i:
            Render.objects.filter(pk=r.pk).update(itc_score=0.1 * (i % 7), itm_score=0.5, cap_score=-1.0 - i / 3)
    out = tmp_path / "export"
    call_command("export_stats", str(rnd.pk), "--out", str(out))
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(exports.FILE_NAMES)
    assert f"{Vote.objects.count()} votes exported" in printed

    proc = _stats_cli(str(out / "votes.csv"), "--settings", str(out / "settings.json"))
    assert proc.returncode == 0, proc.stderr
    exported = json.loads((out / "summary.json").read_text())
    assert json.loads(proc.stdout) == exported
    assert proc.stdout == (out / "summary.json").read_text()  # byte for byte, too

    # the summary embeds the round's frozen settings, and they are what settings.json holds
    settings = json.loads((out / "settings.json").read_text())
    assert exported["settings"] == settings
    assert settings["monitoring"] == {"planned_votes": 30, "looks": 3, "spending": "obrien_fleming"}
    assert all(c["monitoring"]["looks_done"] >= 1 for c in exported["results"]["declared"]["preference"])
    scores = exported["results"]["all"]["score_agreement"]
    assert scores["available"] and scores["criteria"]["realism"]["itc"]["missing"] > 0
    assert settings["tie_rule"] == "half" and settings["bootstrap_seed"] == 7
    assert settings["exclusions"] == {"min_attention_accuracy": 0.8, "min_response_ms": 800, "max_side_rate": 0.9,
                                      "side_rate_min_votes": 20}
    assert settings["baselines"] == ["ITC", "CAP", "BLEND"]
    # the fast annotator (300 ms, failed check, always left) is out of the declared results only
    assert exported["results"]["all"]["annotators"] == 5
    assert exported["results"]["declared"]["annotators"] == 4
    assert exported["exclusions"]["excluded_annotators"] == [
        {"annotator": f"ann-{rnd.pk}-4", "reasons": ["attention", "side_rate"]}
    ]
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "figure.svg").read_bytes()
    head = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert tuple(head) == stats.SUMMARY_CSV_COLUMNS


def test_votes_csv_columns_and_qc_flags(round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=3, fast_annotator=True)
    Annotator.objects.filter(pseudonym=f"ann-{rnd.pk}-2").update(qc_status="fail")
    export = exports.build_export(rnd)
    reader = csv.DictReader(io.StringIO(export.files["votes.csv"].decode()))
    assert tuple(reader.fieldnames) == tuple(stats.VOTE_COLUMNS) + tuple(stats.SCORE_COLUMNS) + exports.QC_COLUMNS
    assert tuple(reader.fieldnames[:20]) == (
        "round_id", "vote_id", "trial_id", "annotator", "item_id", "prompt_id", "prompt", "category", "seed",
        "trial_kind", "criterion", "objective_a", "objective_b", "left_objective", "right_objective", "choice",
        "winner", "expected", "response_ms", "answered_at",
    )
    rows = list(reader)
    assert len(rows) == Vote.objects.count() == export.n_votes
    by_id = {int(r["vote_id"]): r for r in rows}
    for v in Vote.objects.select_related("trial__annotator"):
        r = by_id[v.pk]
        assert (r["criterion"], r["choice"], int(r["response_ms"])) == (v.criterion, v.choice, v.response_ms)
        if v.trial.kind == "regular":
            assert r["winner"] == v.winner
    fast = [r for r in rows if r["annotator"] == f"ann-{rnd.pk}-2"]
    good = [r for r in rows if r["annotator"] == f"ann-{rnd.pk}-0"]
    assert {r["qc_annotator_status"] for r in fast} == {"fail"} and {r["qc_annotator_status"] for r in good} == {"pending"}
    assert {r["qc_annotator_excluded"] for r in fast} == {"true"} and {r["qc_annotator_excluded"] for r in good} == {"false"}
    assert {r["qc_annotator_reasons"] for r in fast} == {"attention;side_rate"}
    assert {r["qc_vote_kept"] for r in fast if r["trial_kind"] == "regular"} == {"false"}
    assert {r["qc_vote_kept"] for r in good if r["trial_kind"] == "regular"} == {"true"}
    assert {r["qc_vote_kept"] for r in rows if r["trial_kind"] != "regular"} == {""}
    # the prompt text has a comma: quoted, and read back intact by the stats reader
    table = stats.read_votes_csv(io.StringIO(export.files["votes.csv"].decode()))
    assert set(table["prompt"]) == {r["prompt"] for r in rows} and all("," in p for p in table["prompt"])


def test_zip_holds_every_file(round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=2)
    export = exports.round_export(rnd)
    with zipfile.ZipFile(io.BytesIO(export.zip_bytes())) as zf:
        names = zf.namelist()
        assert names == [f"round-{rnd.pk}/{n}" for n in exports.FILE_NAMES]
        assert zf.read(f"round-{rnd.pk}/summary.json") == export.files["summary.json"]


def test_export_of_a_round_without_votes(tmp_path, round_config):
    rnd = open_round(round_config, open_it=False)
    call_command("export_stats", str(rnd.pk), "--out", str(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["data"]["regular_votes"] == 0
    assert (tmp_path / "votes.csv").read_text().count("\n") == 1


def test_export_stats_errors_are_messages_not_tracebacks(tmp_path, round_config):
    with pytest.raises(CommandError, match="no round with id 999999"):
        call_command("export_stats", "999999", "--out", str(tmp_path))
    with pytest.raises(CommandError, match="must be a round id"):
        call_command("export_stats", "abc", "--out", str(tmp_path))
    rnd = open_round(round_config, open_it=False)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(CommandError, match="not a folder"):
        call_command("export_stats", str(rnd.pk), "--out", str(a_file))


@pytest.mark.django_db(transaction=True)
def test_export_stats_unknown_round_in_a_real_process(tmp_path):
    # The child process reads this test's (migrated) database; the unknown id needs no rows.
    env = {**os.environ, "DATABASE_URL": current_database_url()}
    proc = subprocess.run(
        [sys.executable, "manage.py", "export_stats", "987654", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert proc.returncode == 1
    assert "no round with id 987654" in proc.stderr and "Traceback" not in proc.stderr
