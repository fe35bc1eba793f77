"""Allocation: which trial an annotator sees next (DESIGN invariants 3 and 4).

- Every comparison item collects ``target_votes`` answers from distinct annotators,
  least-covered first: ``SELECT ... FOR UPDATE SKIP LOCKED`` on items with
  ``assigned < target_votes`` that this annotator has not seen, ordered by ``assigned`` then
  ``random()``. Concurrent annotators never wait on each other's item and never take the same
  last slot twice.
- ``ComparisonItem.assigned`` counts the item's *live* regular trials (answered, or unanswered
  with a lease); ``completed`` counts the answered ones. Both move only in the same transaction
  as the trial row they count, under the item's row lock.
- A lease (``Trial.lease_expires_at``) that runs out gives its slot back: the trial is voided
  (``lease_expires_at`` and ``answered_at`` both NULL, no votes) and ``assigned`` goes down by
  one. The voided row stays, so the annotator never gets that item again; a returning annotator
  gets a fresh item.
- Left/right is drawn per trial from the system CSPRNG (``secrets``) and stored on the trial.
- The main block has ``trials_per_annotator`` trials; attention checks (known-answer trials, kind
  ``attention``) take ``attention_check_rate`` of them, at positions derived from the annotator's
  random pseudonym. Practice trials (kind ``practice``) are known-answer trials too, shown first
  with feedback.

Lock order, everywhere: annotator row -> trial rows -> item rows. The reclaim sweep starts at
trial rows and skips locked ones, so no path waits in a cycle.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from studyapp.models import Annotator, ComparisonItem, Criterion, Render, Trial
from studyapp.services.annotators import AnnotateError, annotator_complete, config_of, round_check_open

Status = Annotator.Status
Kind = Trial.Kind
MAIN_KINDS = (Kind.REGULAR, Kind.ATTENTION)
_sysrandom = secrets.SystemRandom()

_PICK_ITEM_SQL = """
SELECT ci.id, ci.prompt_id, ci.render_a_id, ci.render_b_id
FROM studyapp_comparisonitem ci
WHERE ci.round_id = %s
  AND ci.assigned < ci.target_votes
  AND NOT EXISTS (SELECT 1 FROM studyapp_trial t WHERE t.annotator_id = %s AND t.item_id = ci.id)
ORDER BY ci.assigned, random()
LIMIT 1
FOR UPDATE OF ci {skip}
"""

# Void expired, unanswered regular trials and give their slots back, in one statement.
_RECLAIM_SQL = """
WITH expired AS (
    SELECT t.id, t.item_id FROM studyapp_trial t
    WHERE t.answered_at IS NULL AND t.lease_expires_at < %s AND t.item_id IS NOT NULL
    ORDER BY t.lease_expires_at
    LIMIT %s
    FOR UPDATE OF t SKIP LOCKED
), voided AS (
    UPDATE studyapp_trial t SET lease_expires_at = NULL FROM expired e WHERE t.id = e.id RETURNING e.item_id
), per_item AS (
    SELECT item_id, count(*) AS n FROM voided GROUP BY item_id
)
UPDATE studyapp_comparisonitem i SET assigned = i.assigned - p.n FROM per_item p WHERE i.id = p.item_id
RETURNING p.n
"""


@dataclass(frozen=True)
class Progress:
    phase: str  # "practice" or "main"
    number: int  # 1-based number of this trial within its phase
    total: int


@dataclass(frozen=True)
class NextResult:
    """The trial to show (None when the annotator is done) and where it sits in its phase."""

    trial: Trial | None
    progress: Progress | None
    status: str


def trials_reclaim_expired(*, now=None, limit: int = 200) -> int:
    """Void up to ``limit`` expired regular trials (any round); return how many slots came back."""
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_RECLAIM_SQL, [now, limit])
        return sum(n for (n,) in cur.fetchall())


def attention_slots(*, pseudonym: str, quota: int, rate: float) -> frozenset[int]:
    """0-based main-block positions that hold attention checks for this annotator.

    ``round(rate * quota)`` checks (at least one when the rate is positive), never the first
    trial when there is room; derived from the annotator's random pseudonym, so stable across
    requests and processes and unknown to the annotator.
    """
    if rate <= 0 or quota <= 0:
        return frozenset()
    n = max(1, int(rate * quota + 0.5))
    candidates = list(range(1, quota)) if quota > n else list(range(quota))
    return frozenset(random.Random(f"attention:{pseudonym}").sample(candidates, min(n, len(candidates))))


def trial_next(*, annotator_id: int) -> NextResult:
    """The annotator's current trial: the open one if its lease holds, else a newly allocated one.

    Raises ``AnnotateError`` when the round is not open or the annotator has not passed the
    comprehension check yet. Completes the annotator when the quota is reached or no item is left.
    """
    now = timezone.now()
    trials_reclaim_expired(now=now, limit=50)
    with transaction.atomic():
        ann = Annotator.objects.select_for_update(of=("self",)).select_related("round").get(pk=annotator_id)
        round_check_open(ann.round)
        if ann.status in (Status.COMPLETED, Status.SCREENED_OUT):
            return NextResult(None, None, ann.status)
        if ann.status in (Status.NEW, Status.CONSENTED):
            raise AnnotateError(
                "Please read the instructions and answer the short check first.", code="not_started", status=409
            )
        cfg = config_of(ann.round)
        rows = list(
            Trial.objects.filter(annotator=ann)
            .order_by("position")
            .values("id", "kind", "item_id", "position", "lease_expires_at", "answered_at")
        )
        live = [r for r in rows if r["answered_at"] is not None or r["lease_expires_at"] is not None]
        open_rows = [r for r in live if r["answered_at"] is None]
        next_position = (rows[-1]["position"] + 1) if rows else 1

        if ann.status == Status.PRACTICE:
            practice = [r for r in live if r["kind"] == Kind.PRACTICE]
            progress = Progress("practice", len(practice) + (0 if open_rows else 1), cfg.practice_trials)
            if open_rows:
                return NextResult(_load(open_rows[0]["id"]), progress, ann.status)
            if len(practice) < cfg.practice_trials:
                criterion = (Criterion.REALISM, Criterion.ALIGNMENT)[len(practice) % 2]
                trial = _create_gold_trial(ann, kind=Kind.PRACTICE, criterion=criterion, position=next_position, now=now, cfg=cfg)
                return NextResult(trial, progress, ann.status)
            ann.status = Status.ACTIVE  # practice finished (normally set when the last one is answered)
            ann.save(update_fields=["status"])

        main = [r for r in live if r["kind"] in MAIN_KINDS]
        for r in open_rows:
            if r["kind"] == Kind.REGULAR and r["lease_expires_at"] <= now:
                _void(r["id"], r["item_id"])  # the sweep may have voided it already; void either way
                main.remove(r)
                continue
            if r["kind"] in MAIN_KINDS:
                return NextResult(_load(r["id"]), Progress("main", len(main), cfg.trials_per_annotator), ann.status)

        k = len(main)
        if k >= cfg.trials_per_annotator:
            annotator_complete(ann)
            return NextResult(None, None, ann.status)
        progress = Progress("main", k + 1, cfg.trials_per_annotator)
        slots = attention_slots(pseudonym=ann.pseudonym, quota=cfg.trials_per_annotator, rate=cfg.attention_check_rate)
        if k in slots:
            criterion = _sysrandom.choice((Criterion.REALISM, Criterion.ALIGNMENT))
            trial = _create_gold_trial(ann, kind=Kind.ATTENTION, criterion=criterion, position=next_position, now=now, cfg=cfg)
            return NextResult(trial, progress, ann.status)
        trial = _allocate_regular(ann, position=next_position, now=now, cfg=cfg)
        if trial is None:
            annotator_complete(ann)  # every item has its votes (or this annotator has seen the rest)
            return NextResult(None, None, ann.status)
        return NextResult(trial, progress, ann.status)


def _load(trial_id: int) -> Trial:
    return Trial.objects.select_related("prompt").get(pk=trial_id)


def _void(trial_id: int, item_id: int) -> bool:
    """Void one expired trial and give its slot back; False if someone else already did."""
    n = Trial.objects.filter(pk=trial_id, answered_at__isnull=True, lease_expires_at__isnull=False).update(
        lease_expires_at=None
    )
    if n:
        ComparisonItem.objects.filter(pk=item_id).update(assigned=F("assigned") - 1)
    return bool(n)


def _allocate_regular(ann: Annotator, *, position: int, now, cfg) -> Trial | None:
    with connection.cursor() as cur:
        cur.execute(_PICK_ITEM_SQL.format(skip="SKIP LOCKED"), [ann.round_id, ann.pk])
        row = cur.fetchone()
        if row is None:
            # Every candidate may be locked by a concurrent allocation for a moment: wait for one
            # instead of telling this annotator there is no work.
            cur.execute(_PICK_ITEM_SQL.format(skip=""), [ann.round_id, ann.pk])
            row = cur.fetchone()
    if row is None:
        return None
    item_id, prompt_id, render_a, render_b = row
    ComparisonItem.objects.filter(pk=item_id).update(assigned=F("assigned") + 1)
    left, right = (render_a, render_b) if _sysrandom.random() < 0.5 else (render_b, render_a)
    trial = Trial.objects.create(
        annotator=ann,
        item_id=item_id,
        kind=Kind.REGULAR,
        position=position,
        prompt_id=prompt_id,
        left_render_id=left,
        right_render_id=right,
        lease_expires_at=now + timedelta(seconds=cfg.assignment_timeout_s),
    )
    return _load(trial.pk)


def _create_gold_trial(ann: Annotator, *, kind: str, criterion: str, position: int, now, cfg) -> Trial:
    """A trial with a known answer.

    Realism: a render against a heavily degraded copy of itself (degraded when served).
    Alignment: a render against a render made for a different prompt; the prompt shown is the
    first one's. Falls back to realism when the round has a single prompt.
    """
    done = Render.objects.filter(round_id=ann.round_id, status=Render.Status.DONE)
    gold = done.order_by("?").values("id", "prompt_id").first()
    if gold is None:
        raise AnnotateError("This study has no images to show yet.", code="no_images", status=409)
    decoy = None
    if criterion == Criterion.ALIGNMENT:
        decoy = done.exclude(prompt_id=gold["prompt_id"]).order_by("?").values("id").first()
        if decoy is None:
            criterion = Criterion.REALISM
    gold_side = _sysrandom.choice(("left", "right"))
    if criterion == Criterion.REALISM:
        sides = {"left_render_id": gold["id"], "right_render_id": gold["id"]}
        plain, degraded = Trial.Variant.PLAIN, Trial.Variant.DEGRADED
        sides["left_variant"], sides["right_variant"] = (plain, degraded) if gold_side == "left" else (degraded, plain)
    else:
        pair = (gold["id"], decoy["id"]) if gold_side == "left" else (decoy["id"], gold["id"])
        sides = {"left_render_id": pair[0], "right_render_id": pair[1]}
    trial = Trial.objects.create(
        annotator=ann,
        kind=kind,
        position=position,
        prompt_id=gold["prompt_id"],
        check_criterion=criterion,
        expected_side=gold_side,
        lease_expires_at=now + timedelta(seconds=cfg.assignment_timeout_s),
        **sides,
    )
    return _load(trial.pk)


def items_consistency_problems(*, round_id: int) -> list[str]:
    """Items whose ``assigned``/``completed`` differ from their trial rows (empty when consistent)."""
    sql = """
    SELECT ci.id, ci.assigned, ci.completed,
           count(t.id) FILTER (WHERE t.answered_at IS NOT NULL OR t.lease_expires_at IS NOT NULL),
           count(t.id) FILTER (WHERE t.answered_at IS NOT NULL)
    FROM studyapp_comparisonitem ci LEFT JOIN studyapp_trial t ON t.item_id = ci.id
    WHERE ci.round_id = %s GROUP BY ci.id
    """
    with connection.cursor() as cur:
        cur.execute(sql, [round_id])
        return [
            f"item #{i}: assigned {a} vs {la} live trials, completed {c} vs {lc} answered"
            for i, a, c, la, lc in cur.fetchall()
            if (a, c) != (la, lc)
        ]
