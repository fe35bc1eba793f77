"""Votes: one submission answers both criteria of a trial (DESIGN invariants 3 and 5).

- The winner is resolved from the stored sides (``Trial.left_render`` / ``right_render``), never
  from anything the client sends: a first answer in the database function
  ``studyapp_trial_answer`` (studyapp/sql/), a changed one here.
- Idempotent: re-posting the same answers returns ``unchanged`` and writes nothing; the database
  keeps one vote per (trial, criterion).
- Undo: the last answered trial can be re-answered for ``UNDO_WINDOW_S`` seconds while no later
  trial is answered; its votes are updated in one transaction and no counter moves. Only a
  submission that says it is a revision (``revise``: the person chose "Change previous answer")
  may change an answer: a different answer from a stale second tab is refused, never applied.
- Every refusal is an ``AnnotateError`` with a message for the annotator, raised before any write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from studyapp.models import Annotator, Choice, Criterion, Trial, Vote
from studyapp.services.annotators import (
    AnnotateError,
    annotator_lock,
    annotator_update_qc,
    refusal,
    round_check_open,
)

Status = Annotator.Status
Kind = Trial.Kind
UNDO_WINDOW_S = 60
MAX_RESPONSE_MS = 24 * 3600 * 1000
# Network and clock slack allowed on the server's minimum-viewing-time check.
MIN_VIEW_SLACK_MS = 300
CRITERIA = (Criterion.REALISM.value, Criterion.ALIGNMENT.value)
STALE_MESSAGE = (
    "This comparison was already answered (perhaps in another tab or window), and that answer is kept. "
    "Here is your next one. To change your last answer, use \u201cChange previous answer\u201d."
)


@dataclass(frozen=True)
class Answer:
    choices: dict[str, str]  # criterion -> left/right/tie
    response_ms: dict[str, int | None]  # criterion -> ms from both images loaded to the answer


@dataclass(frozen=True)
class AnswerResult:
    outcome: str  # "recorded", "unchanged" or "updated"
    position: int
    kind: str
    feedback: dict | None  # practice trials: what the right answer was
    status: str  # the annotator's status afterwards


def answer_parse(data) -> Answer:
    """Validate submitted fields (``realism``, ``alignment``, ``rt_realism``, ``rt_alignment``).

    A missing client response time (no JavaScript) becomes the server's time since the trial was
    served, filled in by ``trial_answer``.
    """
    problems = []
    choices, times = {}, {}
    labels = {Criterion.REALISM: "photo-realism", Criterion.ALIGNMENT: "text match"}
    for c in CRITERIA:
        v = (data.get(c) or "").strip()
        if v not in Choice.values:
            problems.append(f"Please answer the {labels[c]} question (left, right or can't decide).")
        choices[c] = v
        raw = (data.get(f"rt_{c}") or "").strip()
        if raw == "":
            times[c] = None  # no JavaScript: the server measures from when the trial was served
            continue
        try:
            ms = int(raw)
        except ValueError:
            problems.append(f"The response time for the {labels[c]} question is not a number.")
            continue
        if not 0 <= ms <= MAX_RESPONSE_MS:
            problems.append(f"The response time for the {labels[c]} question is out of range.")
        times[c] = ms
    if problems:
        raise AnnotateError(" ".join(problems), code="bad_answer", status=400)
    return Answer(choices, times)


def parse_position(raw) -> int:
    try:
        pos = int(str(raw).strip())
    except (TypeError, ValueError):
        raise AnnotateError("This answer does not say which trial it is for. Please reload the page.", code="bad_position") from None
    if not 1 <= pos <= 1_000_000:
        raise AnnotateError("This answer names no trial of yours. Please reload the page.", code="bad_position")
    return pos


@dataclass
class _TrialRow:
    """What re-answering needs of a trial, read under its row lock in one query."""

    pk: int
    kind: str
    position: int
    check_criterion: str
    expected_side: str
    answered_at: datetime | None
    left_objective: str
    right_objective: str


_TRIAL_SQL = """
SELECT t.id, t.kind, t.position, t.check_criterion, t.expected_side, t.answered_at, lr.objective, rr.objective
FROM studyapp_trial t
JOIN studyapp_render lr ON lr.id = t.left_render_id
JOIN studyapp_render rr ON rr.id = t.right_render_id
WHERE t.annotator_id = %s AND t.position = %s
FOR UPDATE OF t
"""


def _winner(trial: _TrialRow, choice: str) -> str:
    """The objective on the chosen side, from the stored sides; "tie" for can't decide."""
    if choice == Choice.TIE:
        return "tie"
    return trial.left_objective if choice == Choice.LEFT else trial.right_objective


def _feedback(kind: str, crit: str, side: str, answer: Answer) -> dict | None:
    if kind != Kind.PRACTICE or not crit:
        return None
    given = answer.choices[crit]
    if crit == Criterion.REALISM:
        why = "the other one was blurred, noisy and blocky on purpose."
        question = "photo-realism"
    else:
        why = "the other one was made for a different text."
        question = "text match"
    verdict = "Correct!" if given == side else "Not quite."
    # ``verdict`` and ``why`` let the page name the side as a phone shows it (top/bottom).
    return {
        "correct": given == side,
        "criterion": question,
        "expected": side,
        "verdict": verdict,
        "why": why,
        "message": f"{verdict} The {side} image was the clear answer: {why}",
    }


# A first answer in one round trip: checks, both votes (winners resolved from the stored
# sides), the trial and item counters, practice/QC/completion (studyapp/sql/annotate_0005.sql).
_ANSWER_SQL = """
SELECT * FROM studyapp_trial_answer(%s::bigint, %s::text, %s::text, %s::int, %s::timestamptz,
                                    %s::text, %s::text, %s::int, %s::int, %s::int, %s::int)
"""


def trial_answer(*, annotator_id: int | None = None, pseudonym: str | None = None, round_token: str | None = None,
                 position: int, answer: Answer, now=None, revise: bool = False) -> AnswerResult:
    """Record ``answer`` for the annotator's trial at ``position``; see the module docstring.

    The annotator is given by id, or by pseudonym and round token (the cookie). ``revise``: the
    person asked to change this (answered) trial; without it a different answer is refused."""
    now = now or timezone.now()
    with connection.cursor() as cur:
        cur.execute(_ANSWER_SQL, [
            annotator_id, pseudonym, round_token, position, now,
            answer.choices[Criterion.REALISM], answer.choices[Criterion.ALIGNMENT],
            answer.response_ms[Criterion.REALISM], answer.response_ms[Criterion.ALIGNMENT],
            MIN_VIEW_SLACK_MS, MAX_RESPONSE_MS,
        ])
        code, status, _round_id, _config, kind, crit, side = cur.fetchone()
    if code == "answered":
        return _answer_again(annotator_id=annotator_id, pseudonym=pseudonym, round_token=round_token,
                             position=position, answer=answer, now=now, revise=revise)
    if code != "recorded":
        raise refusal(code)
    return AnswerResult("recorded", position, kind, _feedback(kind, crit, side, answer), status)


@transaction.atomic
def _answer_again(*, annotator_id, pseudonym, round_token, position: int, answer: Answer, now, revise: bool) -> AnswerResult:
    """A trial that already has votes: the same answers change nothing; different ones are an
    undo, allowed for the last answer within the undo window."""
    ann = annotator_lock(annotator_id=annotator_id, pseudonym=pseudonym, round_token=round_token)
    round_check_open(ann.round)
    with connection.cursor() as cur:
        cur.execute(_TRIAL_SQL, [ann.pk, position])
        trial = _TrialRow(*cur.fetchone())
    votes = {v.criterion: v for v in Vote.objects.select_for_update().filter(trial_id=trial.pk)}
    if all(votes.get(c) is not None and votes[c].choice == answer.choices[c] for c in CRITERIA):
        feedback = _feedback(trial.kind, trial.check_criterion, trial.expected_side, answer)
        return AnswerResult("unchanged", trial.position, trial.kind, feedback, ann.status)
    if not revise:
        raise AnnotateError(STALE_MESSAGE, code="already_answered", status=409)
    undo_refusal = undo_refusal_reason(ann, trial, now)
    if undo_refusal:
        raise AnnotateError(undo_refusal, code="already_answered", status=409)
    for c in CRITERIA:
        v = votes[c]
        v.choice = answer.choices[c]
        v.winner = _winner(trial, v.choice)
        if answer.response_ms[c] is not None:
            v.response_ms = answer.response_ms[c]
        v.save(update_fields=["choice", "winner", "response_ms"])
    if trial.kind == Kind.ATTENTION:
        annotator_update_qc(ann)
    return AnswerResult("updated", trial.position, trial.kind, None, ann.status)


def undo_refusal_reason(ann: Annotator, trial: Trial, now) -> str:
    """Why ``trial`` can no longer be re-answered ("" when it can)."""
    if trial.kind == Kind.PRACTICE:
        return "Practice answers cannot be changed."
    if trial.answered_at is None:
        return "This trial has not been answered yet."
    if now - trial.answered_at > timedelta(seconds=UNDO_WINDOW_S):
        return "This answer was saved more than a minute ago and can no longer be changed."
    later = Trial.objects.filter(annotator=ann, position__gt=trial.position, answered_at__isnull=False).exists()
    if later:
        return "Only your most recent answer can be changed."
    return ""


def trial_for_undo(*, annotator_id: int, now=None) -> tuple[Trial, dict[str, str]]:
    """The annotator's last answered trial and its answers, if it can still be re-answered."""
    now = now or timezone.now()
    ann = Annotator.objects.select_related("round").get(pk=annotator_id)
    round_check_open(ann.round)
    trial = (
        Trial.objects.select_related("prompt")
        .filter(annotator=ann, answered_at__isnull=False, kind__in=(Kind.REGULAR, Kind.ATTENTION))
        .order_by("-position")
        .first()
    )
    if trial is None:
        raise AnnotateError("There is no answer to change yet.", code="nothing_to_undo", status=409)
    reason = undo_refusal_reason(ann, trial, now)
    if reason:
        raise AnnotateError(reason, code="undo_closed", status=409)
    answers = dict(Vote.objects.filter(trial=trial).values_list("criterion", "choice"))
    return trial, answers
