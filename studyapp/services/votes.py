"""Votes: one submission answers both criteria of a trial (DESIGN invariants 3 and 5).

- The winner is resolved here from the stored sides (``Trial.left_render`` / ``right_render``),
  never from anything the client sends.
- Idempotent: re-posting the same answers returns ``unchanged`` and writes nothing; the database
  keeps one vote per (trial, criterion).
- Undo: the last answered trial can be re-answered for ``UNDO_WINDOW_S`` seconds while no later
  trial is answered; its votes are updated in one transaction and no counter moves.
- Every refusal is an ``AnnotateError`` with a message for the annotator, raised before any write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from studyapp.models import Annotator, Choice, ComparisonItem, Criterion, Trial, Vote
from studyapp.services.annotators import (
    AnnotateError,
    annotator_complete,
    annotator_update_qc,
    config_of,
    round_check_open,
)

Status = Annotator.Status
Kind = Trial.Kind
UNDO_WINDOW_S = 60
MAX_RESPONSE_MS = 24 * 3600 * 1000
# Network and clock slack allowed on the server's minimum-viewing-time check.
MIN_VIEW_SLACK_MS = 300
CRITERIA = (Criterion.REALISM.value, Criterion.ALIGNMENT.value)


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


def _winner(trial: Trial, choice: str) -> str:
    if choice == Choice.TIE:
        return "tie"
    render = trial.left_render if choice == Choice.LEFT else trial.right_render
    return render.objective


def _feedback(trial: Trial, answer: Answer) -> dict | None:
    if trial.kind != Kind.PRACTICE or not trial.check_criterion:
        return None
    crit, side = trial.check_criterion, trial.expected_side
    given = answer.choices[crit]
    if crit == Criterion.REALISM:
        why = f"The {side} image was the clear answer: the other one was blurred, noisy and blocky on purpose."
        question = "photo-realism"
    else:
        why = f"The {side} image was the clear answer: the other one was made for a different text."
        question = "text match"
    return {
        "correct": given == side,
        "criterion": question,
        "expected": side,
        "message": ("Correct! " if given == side else "Not quite. ") + why,
    }


@transaction.atomic
def trial_answer(*, annotator_id: int, position: int, answer: Answer, now=None) -> AnswerResult:
    """Record ``answer`` for the annotator's trial at ``position``; see the module docstring."""
    now = now or timezone.now()
    ann = Annotator.objects.select_for_update(of=("self",)).select_related("round").get(pk=annotator_id)
    round_check_open(ann.round)
    trial = (
        Trial.objects.select_for_update(of=("self",))
        .select_related("left_render", "right_render")
        .filter(annotator=ann, position=position)
        .first()
    )
    if trial is None:
        raise AnnotateError("This answer is for a trial you were not shown. Please reload the page.", code="no_such_trial", status=404)

    if trial.answered_at is not None:
        return _answer_again(ann, trial, answer, now)
    if trial.lease_expires_at is None:
        raise AnnotateError(
            "This trial timed out and was given to someone else. You get a fresh one now.", code="trial_expired", status=409
        )
    min_view = config_of(ann.round).min_view_ms
    if min_view and (now - trial.served_at) < timedelta(milliseconds=min_view - MIN_VIEW_SLACK_MS):
        raise AnnotateError("Please look at both images a little longer before answering.", code="too_fast", status=400)

    server_ms = min(int((now - trial.served_at).total_seconds() * 1000), MAX_RESPONSE_MS)
    Vote.objects.bulk_create(
        Vote(
            trial=trial,
            criterion=c,
            choice=answer.choices[c],
            winner=_winner(trial, answer.choices[c]),
            response_ms=answer.response_ms[c] if answer.response_ms[c] is not None else max(server_ms, 0),
        )
        for c in CRITERIA
    )
    trial.answered_at = now
    trial.save(update_fields=["answered_at"])
    if trial.item_id is not None:
        ComparisonItem.objects.filter(pk=trial.item_id).update(completed=F("completed") + 1)

    cfg = config_of(ann.round)
    if trial.kind == Kind.PRACTICE:
        done = Trial.objects.filter(annotator=ann, kind=Kind.PRACTICE, answered_at__isnull=False).count()
        if done >= cfg.practice_trials and ann.status == Status.PRACTICE:
            ann.status = Status.ACTIVE
            ann.save(update_fields=["status"])
    else:
        if trial.kind == Kind.ATTENTION:
            annotator_update_qc(ann)
        answered = Trial.objects.filter(annotator=ann, kind__in=(Kind.REGULAR, Kind.ATTENTION), answered_at__isnull=False).count()
        if answered >= cfg.trials_per_annotator:
            annotator_complete(ann)
    return AnswerResult("recorded", trial.position, trial.kind, _feedback(trial, answer), ann.status)


def _answer_again(ann: Annotator, trial: Trial, answer: Answer, now) -> AnswerResult:
    votes = {v.criterion: v for v in Vote.objects.select_for_update().filter(trial=trial)}
    if all(votes.get(c) is not None and votes[c].choice == answer.choices[c] for c in CRITERIA):
        return AnswerResult("unchanged", trial.position, trial.kind, _feedback(trial, answer), ann.status)
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
