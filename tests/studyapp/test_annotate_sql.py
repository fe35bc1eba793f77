"""The annotator hot path's database functions (studyapp/sql/) and the Python that calls them."""

from __future__ import annotations

import re
from pathlib import Path

from studyapp.services.annotators import REFUSALS

SQL = "\n".join(p.read_text() for p in sorted((Path(__file__).resolve().parents[2] / "studyapp" / "sql").glob("annotate_*.sql")))
# Codes that are outcomes, handled by the services themselves rather than shown as refusals.
OUTCOMES = {"trial", "done", "recorded", "answered"}


def test_every_code_the_functions_return_has_a_message_for_the_annotator():
    # Values assigned to ``code`` or ``refusal`` (studyapp_annotator_locked's, which callers return).
    assignments = re.findall(r"\b(?:code|refusal) :=([^;]*);", SQL)
    codes = {c for a in assignments for c in re.findall(r"(?:^ |THEN |ELSE )'([a-z_]+)'", a)}
    assert {"no_annotator", "round_closed", "round_not_open", "busy", "too_fast"} <= codes
    unhandled = codes - OUTCOMES - set(REFUSALS)
    assert not unhandled, f"codes without a message in annotators.REFUSALS: {sorted(unhandled)}"


def test_refusals_are_client_errors_or_a_polite_busy():
    for code, (message, status) in REFUSALS.items():
        assert message.endswith(".") and (400 <= status < 500 or (code, status) == ("busy", 503)), code
