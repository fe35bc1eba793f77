"""Allocation: which trial an annotator sees next (DESIGN invariants 3 and 4).

- Every comparison item collects ``target_votes`` answers from distinct annotators,
  least-covered first: ``SELECT ... FOR UPDATE SKIP LOCKED`` on items with
  ``assigned < target_votes`` that this annotator has not seen, ordered by ``assigned`` then
  the item's place in the round's seeded permutation (``ComparisonItem.shuffle``): an index
  scan that stops at the first free row. Concurrent annotators never wait on each other's item
  and never take the same last slot twice. When every candidate is held by a concurrent
  allocation for a moment, the pick is retried briefly (never a blocking ``FOR UPDATE`` in
  arbitrary order: two of those can deadlock, since a row that fails the re-check stays locked).
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

Where it runs: the decisions above, under the annotator's row lock, are the database function
``studyapp_trial_next`` (studyapp/sql/annotate_0005.sql), so a fetch is one round trip to
PostgreSQL; this module draws every random choice and passes it in, and turns refusals into
messages. On a 2-core machine that took the server's CPU per trial from ~16 ms to ~9 ms (twelve
round trips to two); docs/annotate-benchmark.md has the figures.

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
import json
from dataclasses import dataclass
from functools import lru_cache

from django.db import connection, transaction
from django.utils import timezone

from studyapp.models import Annotator, Criterion, Prompt, Render, StudyRound, Trial, new_token
from studyapp.round_config import RoundConfig
from studyapp.services.annotators import config_for, refusal

_sysrandom = secrets.SystemRandom()

# One round trip: the database function allocates (or returns the open trial) under the
# annotator's row lock and hands back the trial's columns (studyapp/sql/annotate_0005.sql, its
# allocation replaced by annotate_0006_unseen_checks.sql).
_NEXT_SQL = """
SELECT * FROM studyapp_trial_next(%s::bigint, %s::text, %s::text, %s::timestamptz, %s::int[], %s::boolean,
                                  %s::text, %s::text, %s::bigint[], %s::bigint[], %s::text, %s::text,
                                  %s::int, %s::float8)
"""
_TRIAL_FIELDS = [
    "id", "annotator_id", "item_id", "kind", "position", "prompt_id", "left_render_id", "right_render_id",
    "left_variant", "right_variant", "left_token", "right_token", "check_criterion", "expected_side",
    "served_at", "lease_expires_at", "answered_at",
]

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
    """The trial to show (None when the annotator is done), where it sits in its phase, the
    annotator's status afterwards and the round's config."""

    trial: Trial | None
    progress: Progress | None
    status: str
    config: RoundConfig


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


@lru_cache(maxsize=4096)
def _slots_literal(pseudonym: str, quota: int, rate: float) -> str:
    """The attention slots as a PostgreSQL array literal: one short text parameter per request
    instead of a list the driver would quote element by element."""
    return "{" + ",".join(map(str, sorted(attention_slots(pseudonym=pseudonym, quota=quota, rate=rate)))) + "}"


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
    if annotator_id is not None:
        found = Annotator.objects.filter(pk=annotator_id).values_list("pseudonym", "round__token").first()
        if found is None:
            raise refusal("no_annotator")
        pseudonym, round_token = found
    facts = _round_facts(round_token)
    if facts is None:
        raise refusal("no_annotator")
    cfg, pool = facts
    slots = _slots_literal(pseudonym, cfg.trials_per_annotator, cfg.attention_check_rate)
    gold = _gold_candidates(pool)
    with connection.cursor() as cur:
        cur.execute(_NEXT_SQL, [
            annotator_id, pseudonym, round_token, now, slots, _sysrandom.random() < 0.5,
            new_token(), new_token(), *gold, _sysrandom.choice(("left", "right")),
            _sysrandom.choice((Criterion.REALISM, Criterion.ALIGNMENT)),
            PICK_RETRIES, PICK_RETRY_S,
        ])
        row = cur.fetchone()
    code, status, round_id, config_text, phase, number, total = row[:7]
    if code not in ("trial", "done"):
        raise refusal(code)
    cfg = config_for(round_id, config_text)
    if code == "done":
        return NextResult(None, None, status, cfg)
    trial = Trial.from_db(connection.alias, _TRIAL_FIELDS, row[7 : 7 + len(_TRIAL_FIELDS)])
    trial.prompt = Prompt(pk=trial.prompt_id, text=row[-1])  # all the page needs; saves a query
    return NextResult(trial, Progress(phase, number, total), status, cfg)


def _round_facts(round_token: str) -> tuple[RoundConfig, tuple] | None:
    """The round's config and the renders known-answer trials are drawn from, by token."""
    cfg = _config_by_token.get(round_token)
    if cfg is None:
        found = StudyRound.objects.filter(token=round_token).values_list("pk", "config").first()
        if found is None:
            return None
        if len(_config_by_token) >= 256:
            _config_by_token.clear()
        cfg = _config_by_token[round_token] = config_for(found[0], json.dumps(found[1], sort_keys=True))
    return cfg, _gold_pool(round_token)


# A round's config never changes after creation (read-only in the admin too); keyed by the
# round's random token.
_config_by_token: dict[str, RoundConfig] = {}


# How many renders a known-answer trial is chosen from: the database function takes the first
# the annotator has never been shown (and the next unseen one of another prompt as the decoy).
# An annotator sees at most a few hundred of a round's renders, so 32 random candidates all
# seen is vanishingly unlikely in a real round; a tiny round passes its whole pool.
GOLD_CANDIDATES = 32


def _gold_candidates(pool) -> tuple[str, str]:
    """A random sample of the round's (render, prompt) pairs, as two PostgreSQL array literals
    in the same order, drawn whether or not this request needs a known-answer trial."""
    sample = _sysrandom.sample(pool, min(GOLD_CANDIDATES, len(pool)))
    return ("{" + ",".join(str(r) for r, _p in sample) + "}", "{" + ",".join(str(p) for _r, p in sample) + "}")


_gold_pools: dict[str, tuple[tuple[int, int], ...]] = {}


def _gold_pool(round_token: str) -> tuple[tuple[int, int], ...]:
    """(render id, prompt id) of every finished render of a round, read once per
    process when the round is open: an open round's images are frozen (renders.py refuses to
    touch them), and drawing from the list beats ``ORDER BY random()`` over every render."""
    pool = _gold_pools.get(round_token)
    if pool is None:
        pool = tuple(
            Render.objects.filter(round__token=round_token, round__status=StudyRound.Status.OPEN,
                                  status=Render.Status.DONE)
            .order_by("id")
            .values_list("id", "prompt_id")
        )
        if pool:  # an empty one is not remembered: the round may not be open yet
            if len(_gold_pools) >= 64:
                _gold_pools.clear()
            _gold_pools[round_token] = pool
    return pool


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
