"""Allocation: which trial an annotator sees next (DESIGN invariants 3 and 4).

- Every comparison item collects ``target_votes`` answers from distinct annotators,
  least-covered first: ``SELECT ... FOR UPDATE SKIP LOCKED`` on items with
  ``assigned < target_votes`` that this annotator has not seen, ordered by ``assigned`` then
  ``random()``. Concurrent annotators never wait on each other's item and never take the same
  last slot twice. When every candidate is held by a concurrent allocation for a moment, the
  pick is retried briefly (never a blocking ``FOR UPDATE`` in random order: two of those can
  deadlock, since a row that fails the re-check stays locked).
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

Lock order, everywhere: annotator row -> trial rows -> item rows, and a transaction waits for
at most one item row, except the reclaim sweep, which takes trial rows with SKIP LOCKED and then
waits for its items in id order. So no path waits in a cycle. The concurrency tests
(tests/studyapp/test_allocation_concurrency.py) found both deadlocks this rules out.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from studyapp.models import Annotator, ComparisonItem, Criterion, Prompt, Render, Trial
from studyapp.services.annotators import AnnotateError, annotator_complete, annotator_lock, config_of, round_check_open

Status = Annotator.Status
Kind = Trial.Kind
MAIN_KINDS = (Kind.REGULAR, Kind.ATTENTION)
_sysrandom = secrets.SystemRandom()

# Pick the least-covered item this annotator has not seen, skipping items other transactions
# hold, take one of its slots, and return what the trial needs: one statement, one round trip.
_PICK_ITEM_SQL = """
WITH pick AS (
    SELECT ci.id, ci.prompt_id, ci.render_a_id, ci.render_b_id
    FROM studyapp_comparisonitem ci
    WHERE ci.round_id = %s
      AND ci.assigned < ci.target_votes
      AND ci.id <> ALL(%s)
    ORDER BY ci.assigned, random()
    LIMIT 1
    FOR UPDATE OF ci SKIP LOCKED
), taken AS (
    UPDATE studyapp_comparisonitem ci SET assigned = ci.assigned + 1 FROM pick WHERE ci.id = pick.id RETURNING ci.id
)
SELECT pick.id, pick.prompt_id, pick.render_a_id, pick.render_b_id, p.text
FROM pick JOIN taken ON taken.id = pick.id JOIN studyapp_prompt p ON p.id = pick.prompt_id
"""

_ANY_CANDIDATE_SQL = """
SELECT EXISTS (SELECT 1 FROM studyapp_comparisonitem ci
               WHERE ci.round_id = %s AND ci.assigned < ci.target_votes AND ci.id <> ALL(%s))
"""

# One annotator's position in the flow, as aggregates over their trials (not one row per trial
# answered). "Live" trials are answered or leased; voided ones (both NULL) only count as seen items.
_STATE_SQL = """
SELECT coalesce(max(position), 0),
       count(*) FILTER (WHERE kind <> 'practice' AND (answered_at IS NOT NULL OR lease_expires_at IS NOT NULL)),
       count(*) FILTER (WHERE kind = 'practice' AND (answered_at IS NOT NULL OR lease_expires_at IS NOT NULL)),
       coalesce(array_agg(item_id) FILTER (WHERE item_id IS NOT NULL), '{}'),
       coalesce(array_agg(id ORDER BY position) FILTER (WHERE answered_at IS NULL AND lease_expires_at IS NOT NULL), '{}')
FROM studyapp_trial WHERE annotator_id = %s
"""

# Reclaim, in three steps in one transaction: take expired unanswered regular trials (skipping
# any another transaction holds), lock their items in id order (two sweeps never wait on each
# other in a cycle), then void the trials and give the slots back.
_EXPIRED_SQL = """
SELECT t.id, t.item_id FROM studyapp_trial t
WHERE t.answered_at IS NULL AND t.lease_expires_at < %s AND t.item_id IS NOT NULL
ORDER BY t.lease_expires_at
LIMIT %s
FOR UPDATE OF t SKIP LOCKED
"""
_LOCK_ITEMS_SQL = "SELECT id FROM studyapp_comparisonitem WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
_VOID_SQL = "UPDATE studyapp_trial SET lease_expires_at = NULL WHERE id = ANY(%s)"
_GIVE_BACK_SQL = """
UPDATE studyapp_comparisonitem i SET assigned = i.assigned - v.n
FROM unnest(%s::bigint[], %s::int[]) AS v(item_id, n) WHERE i.id = v.item_id
"""
# How long an allocation waits, in total, when every candidate item is held by concurrent
# allocations for a moment (SKIP LOCKED found none, yet some exist).
PICK_RETRIES = 40
PICK_RETRY_S = 0.025


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
    annotator: Annotator


def trials_reclaim_expired(*, now=None, limit: int = 200) -> int:
    """Void up to ``limit`` expired regular trials (any round); return how many slots came back."""
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_EXPIRED_SQL, [now, limit])
        expired = cur.fetchall()
        if not expired:
            return 0
        per_item = Counter(item_id for _id, item_id in expired)
        cur.execute(_LOCK_ITEMS_SQL, [sorted(per_item)])
        cur.execute(_VOID_SQL, [[trial_id for trial_id, _item in expired]])
        cur.execute(_GIVE_BACK_SQL, [list(per_item), list(per_item.values())])
        return len(expired)


@lru_cache(maxsize=4096)
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


_sweep_lock = threading.Lock()
_last_sweep = [0.0]
SWEEP_EVERY_S = 1.0


def _maybe_sweep(now) -> None:
    """Reclaim expired leases at most once a second per process (cheap, but not free per request)."""
    with _sweep_lock:
        if time.monotonic() - _last_sweep[0] < SWEEP_EVERY_S:
            return
        _last_sweep[0] = time.monotonic()
    trials_reclaim_expired(now=now, limit=50)


def trial_next(*, annotator_id: int | None = None, pseudonym: str | None = None, round_token: str | None = None) -> NextResult:
    """The annotator's current trial: the open one if its lease holds, else a newly allocated one.

    The annotator is given by id, or by pseudonym and round token (the cookie). Raises
    ``AnnotateError`` when the round is not open or the annotator has not passed the
    comprehension check yet. Completes the annotator when the quota is reached or no item is left.
    """
    now = timezone.now()
    # In its own transaction: the sweep locks other annotators' trials and items, and must not
    # hold them while waiting for this annotator's row (lock order: annotator -> trial -> item).
    _maybe_sweep(now)
    with transaction.atomic():
        ann = annotator_lock(annotator_id=annotator_id, pseudonym=pseudonym, round_token=round_token)
        result = _next_locked(ann, now)
    return NextResult(result[0], result[1], ann.status, ann)


def _next_locked(ann: Annotator, now) -> tuple[Trial | None, Progress | None]:
    round_check_open(ann.round)
    if ann.status in (Status.COMPLETED, Status.SCREENED_OUT):
        return None, None
    if ann.status in (Status.NEW, Status.CONSENTED):
        raise AnnotateError(
            "Please read the instructions and answer the short check first.", code="not_started", status=409
        )
    cfg = config_of(ann.round)
    # A statement of its own, after the lock: in READ COMMITTED each statement sees what was
    # committed before it started, so this sees every trial a previous request of this
    # annotator committed while we waited for the lock (a subquery of the locking statement
    # would not: its snapshot predates the wait).
    with connection.cursor() as cur:
        cur.execute(_STATE_SQL, [ann.pk])
        max_position, main_live, practice_live, seen, open_ids = cur.fetchone()
    open_rows = (
        list(Trial.objects.filter(pk__in=open_ids).order_by("position").values("id", "kind", "item_id", "lease_expires_at"))
        if open_ids
        else []
    )
    next_position = max_position + 1

    if ann.status == Status.PRACTICE:
        progress = Progress("practice", practice_live + (0 if open_rows else 1), cfg.practice_trials)
        if open_rows:
            return _load(open_rows[0]["id"]), progress
        if practice_live < cfg.practice_trials:
            criterion = (Criterion.REALISM, Criterion.ALIGNMENT)[practice_live % 2]
            trial = _create_gold_trial(ann, kind=Kind.PRACTICE, criterion=criterion, position=next_position, now=now, cfg=cfg)
            return trial, progress
        ann.status = Status.ACTIVE  # practice finished (normally set when the last one is answered)
        ann.save(update_fields=["status"])

    main = main_live
    for r in open_rows:
        if r["kind"] == Kind.REGULAR and r["lease_expires_at"] <= now:
            _void(r["id"], r["item_id"])  # the sweep may have voided it already; void either way
            main -= 1
            continue
        if r["kind"] in MAIN_KINDS:
            return _load(r["id"]), Progress("main", main, cfg.trials_per_annotator)

    k = main
    if k >= cfg.trials_per_annotator:
        annotator_complete(ann)
        return None, None
    progress = Progress("main", k + 1, cfg.trials_per_annotator)
    slots = attention_slots(pseudonym=ann.pseudonym, quota=cfg.trials_per_annotator, rate=cfg.attention_check_rate)
    if k in slots:
        criterion = _sysrandom.choice((Criterion.REALISM, Criterion.ALIGNMENT))
        trial = _create_gold_trial(ann, kind=Kind.ATTENTION, criterion=criterion, position=next_position, now=now, cfg=cfg)
        return trial, progress
    trial = _allocate_regular(ann, position=next_position, now=now, cfg=cfg, seen=seen)
    if trial is None:
        annotator_complete(ann)  # every item has its votes (or this annotator has seen the rest)
        return None, None
    return trial, progress


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


def _allocate_regular(ann: Annotator, *, position: int, now, cfg, seen: list[int]) -> Trial | None:
    # ``seen``: every item this annotator has a trial of (answered, open or voided), read under
    # the annotator's row lock, so no concurrent request of theirs can add one meanwhile; the
    # unique (annotator, item) constraint backs it up. A plain array keeps the plan simple (an
    # anti-join's plan depends on table statistics that a fresh round does not have yet).
    with connection.cursor() as cur:
        for _ in range(PICK_RETRIES):
            cur.execute(_PICK_ITEM_SQL, [ann.round_id, seen])
            row = cur.fetchone()
            if row is not None:
                break
            # None free: either every candidate is held by a concurrent allocation for a moment
            # (retry; a blocking FOR UPDATE in random order could deadlock), or there is no work.
            cur.execute(_ANY_CANDIDATE_SQL, [ann.round_id, seen])
            if not cur.fetchone()[0]:
                return None
            time.sleep(PICK_RETRY_S * (0.5 + _sysrandom.random()))
        else:
            # Work exists but stayed held by others for the whole wait: do not end this
            # annotator's session over it; ask them to retry (the transaction rolls back).
            raise AnnotateError("The server is busy. Please try again in a moment.", code="busy", status=503)
    item_id, prompt_id, render_a, render_b, prompt_text = row  # the slot is taken (assigned + 1)
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
    trial.prompt = Prompt(pk=prompt_id, text=prompt_text)  # all the page needs; saves a query
    return trial


def _create_gold_trial(ann: Annotator, *, kind: str, criterion: str, position: int, now, cfg) -> Trial:
    """A trial with a known answer.

    Realism: a render against a heavily degraded copy of itself (degraded when served).
    Alignment: a render against a render made for a different prompt; the prompt shown is the
    first one's. Falls back to realism when the round has a single prompt.
    """
    done = Render.objects.filter(round_id=ann.round_id, status=Render.Status.DONE)
    gold = done.order_by("?").values("id", "prompt_id", "prompt__text").first()
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
    trial.prompt = Prompt(pk=gold["prompt_id"], text=gold["prompt__text"])
    return trial


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
