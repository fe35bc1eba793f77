"""Renders: launch, claim, complete, fail, cancel and retry (the writes of the render workflow).

The state machine of one render::

    pending/cancelled --launch--> queued --claim--> running --complete--> done
                                    ^                  |  \\--fail-----> failed --retry--> queued
                                    '----release-------'   (worker died: reclaimed by the next claim)

Safety under any number of workers, crashes and re-delivered messages:

- **Claim** locks the render rows (``SELECT ... FOR UPDATE``) and takes a PostgreSQL session
  advisory lock per render, held while the worker renders. PostgreSQL drops it when the worker's
  connection dies, so a ``running`` render whose lock is free belongs to a dead worker and may be
  claimed again; one whose lock is held is being rendered right now and is skipped.
- Every claim stamps ``attempts`` and ``started_at``: the pair is a fencing token. Only the
  holder of the current token can complete or fail the render, so a late worker never overwrites
  a newer result and running a task twice never makes a second image.
- The claim picks the opaque file name and records it on the row before any byte is written; a
  claim that finds a dead worker's name deletes that file, so a crash leaves no orphan.
- Completing the last render moves the round to ``ready`` in the same transaction, under the
  round's row lock (lock order everywhere: round, then renders by id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from studyapp.exceptions import StudyError, TransitionError
from studyapp.models import Render, StudyRound
from studyapp.services.rounds import round_transition
from studyapp.storage import new_render_name, render_file_delete

log = logging.getLogger(__name__)

RS = Render.Status
Status = StudyRound.Status

# Advisory-lock key space of renders: (namespace << 32) | render id, one bigint key.
_LOCK_NAMESPACE = 0x52454E44  # "REND"
DEFAULT_BATCH_SIZE = 4


class RenderError(StudyError):
    code = "render_error"


@dataclass(frozen=True)
class WorkUnit:
    """One task: renders of one round under one objective, rendered as one GPU batch."""

    round_id: int
    objective: str
    render_ids: tuple[int, ...]
    spec: dict

    def args(self) -> list:
        return [self.round_id, self.objective, list(self.render_ids), self.spec]


@dataclass(frozen=True)
class Claim:
    """A render this worker holds; ``attempt`` and ``started_at`` fence its later writes."""

    render_id: int
    round_id: int
    prompt: str
    seed: int
    objective: str
    attempt: int
    started_at: datetime
    image_name: str


@dataclass(frozen=True)
class LaunchResult:
    enqueued: int
    units: tuple[WorkUnit, ...]
    message: str


Dispatch = Callable[[list[WorkUnit]], None]
# ``dispatch=CALLER``: the service sends nothing; the caller sends ``result.units`` after the
# service returned (its transaction is committed then, unless the caller wrapped it in another).
CALLER: Dispatch = lambda units: None  # noqa: E731


# ---------------------------------------------------------------------------------------------
# Advisory locks (held by the rendering connection; dropped by PostgreSQL when it dies)
# ---------------------------------------------------------------------------------------------


def _lock_key(render_id: int) -> int:
    return (_LOCK_NAMESPACE << 32) | int(render_id)


def _try_lock(render_id: int) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [_lock_key(render_id)])
        return bool(cur.fetchone()[0])


def _unlock(render_id: int) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(%s)", [_lock_key(render_id)])


def render_is_being_rendered(render_id: int) -> bool:
    """True while some live connection holds the render's advisory lock."""
    return render_id in renders_held([render_id])


def renders_held(render_ids: Iterable[int]) -> set[int]:
    """The renders of ``render_ids`` whose advisory lock some session holds now (one query)."""
    ids = [int(i) for i in render_ids]
    if not ids:
        return set()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = %s AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [_LOCK_NAMESPACE],
        )
        held = {row[0] for row in cur.fetchall()}
    return held & set(ids)


def render_locks_release(render_ids: Iterable[int]) -> None:
    """Release this connection's advisory locks (end of a task); a dropped connection did already."""
    try:
        for rid in render_ids:
            _unlock(rid)
    except Exception:  # noqa: BLE001 - the connection may be gone, and with it the locks
        log.warning("could not release render locks", exc_info=True)


# ---------------------------------------------------------------------------------------------
# Work units
# ---------------------------------------------------------------------------------------------


def round_spec(rnd: StudyRound) -> dict:
    """The round's generation spec (canonical dict) as frozen in its config."""
    return dict(rnd.config.get("generation") or {})


def spec_batch_size(spec: dict) -> int:
    try:
        from generation.presets import spec_from_config
        from generation.spec import SpecError
    except ImportError:  # the core is optional in a web process that only imports renders
        return int(spec.get("batch_size", DEFAULT_BATCH_SIZE))
    try:
        return spec_from_config(spec).batch_size
    except SpecError as exc:
        raise RenderError(f"the round's generation spec is invalid: {exc}") from None


def spec_is_tiny(spec: dict) -> bool:
    """A spec on the tiny random-weight presets renders noise-like images (workflow trials only)."""
    return spec.get("unet") == "tiny" or spec.get("blip") == "tiny"


def work_units(rnd: StudyRound, renders: Iterable[Render]) -> list[WorkUnit]:
    """Group renders by objective and cut them into batches of the spec's ``batch_size``."""
    spec = round_spec(rnd)
    size = spec_batch_size(spec)
    by_objective: dict[str, list[int]] = {}
    for r in sorted(renders, key=lambda r: (r.objective, r.prompt_id, r.seed, r.pk)):
        by_objective.setdefault(r.objective, []).append(r.pk)
    units = []
    for objective, ids in by_objective.items():
        for i in range(0, len(ids), size):
            units.append(WorkUnit(rnd.pk, objective, tuple(ids[i : i + size]), spec))
    return units


def dispatch_default(units: list[WorkUnit]) -> None:
    """Send units to the broker when one is configured, else render them in a background thread."""
    from studyapp import tasks

    if settings.CELERY_BROKER_URL:
        tasks.enqueue_units(units)
    else:
        tasks.render_units_in_thread(units)


# ---------------------------------------------------------------------------------------------
# Launch, cancel, retry (researcher actions)
# ---------------------------------------------------------------------------------------------


def _locked_round(round_id: int) -> StudyRound:
    try:
        return StudyRound.objects.select_for_update().get(pk=round_id)
    except StudyRound.DoesNotExist:
        raise RenderError(f"no round with id {round_id}; take the id from the rounds page", code="not_found") from None


def _orphaned(renders: Iterable[Render]) -> list[Render]:
    """Running renders whose worker is gone (no connection holds their lock).

    Read from ``pg_locks`` rather than by trying the lock, so a launch never makes a worker's
    claim skip a render.
    """
    renders = list(renders)
    held = renders_held(r.pk for r in renders)
    return [r for r in renders if r.pk not in held]


def _enqueue(rnd: StudyRound, renders: list[Render], dispatch: Dispatch | None, *, reset_attempts: bool = False) -> LaunchResult:
    units = work_units(rnd, renders)  # validates the spec before anything changes
    ids = [r.pk for r in renders]
    fields = {"status": RS.QUEUED, "error": "", "finished_at": None}
    if reset_attempts:
        fields["attempts"] = 0
    Render.objects.filter(pk__in=ids).update(**fields)
    if rnd.status in (Status.DRAFT, Status.READY):
        round_transition(round_id=rnd.pk, to=Status.RENDERING)
    if dispatch is not CALLER:
        send = dispatch or dispatch_default
        transaction.on_commit(lambda: send(units))
    return LaunchResult(len(ids), tuple(units), f"{len(ids)} render(s) queued in {len(units)} task(s)")


def _check_not_frozen(rnd: StudyRound, action: str) -> None:
    if rnd.status in (Status.OPEN, Status.CLOSED):
        raise TransitionError(f"round #{rnd.pk} is {rnd.status}: its images are frozen, so it cannot {action}")


@transaction.atomic
def renders_launch(*, round_id: int, dispatch: Dispatch | None = None) -> LaunchResult:
    """Queue every render that still needs an image; the round becomes ``rendering``.

    Idempotent: a round whose renders are all done changes nothing (it only becomes ``ready``
    if it was not yet). Queued renders are sent again (a lost message costs nothing: tasks skip
    renders that are done or being rendered); renders of a dead worker are reclaimed.
    Failed renders are left to :func:`renders_retry_failed`.
    """
    rnd = _locked_round(round_id)
    _check_not_frozen(rnd, "render")
    renders = list(Render.objects.select_for_update().filter(round=rnd).order_by("pk"))
    todo = [r for r in renders if r.status in (RS.PENDING, RS.QUEUED, RS.CANCELLED)]
    todo += _orphaned(r for r in renders if r.status == RS.RUNNING)
    failed = sum(r.status == RS.FAILED for r in renders)
    if not todo:
        if renders and all(r.status == RS.DONE for r in renders) and rnd.status != Status.READY:
            round_transition(round_id=rnd.pk, to=Status.READY)
        running = sum(r.status == RS.RUNNING for r in renders)
        parts = [f"nothing to render: {sum(r.status == RS.DONE for r in renders)}/{len(renders)} done"]
        if running:
            parts.append(f"{running} being rendered now")
        if failed:
            parts.append(f"{failed} failed (use 'retry failed' once the cause is fixed)")
        return LaunchResult(0, (), ", ".join(parts))
    result = _enqueue(rnd, todo, dispatch)
    if failed:
        result = LaunchResult(result.enqueued, result.units, result.message + f"; {failed} failed render(s) left for 'retry failed'")
    return result


@transaction.atomic
def renders_retry_failed(*, round_id: int, dispatch: Dispatch | None = None) -> LaunchResult:
    """Queue the failed renders again (after the cause, e.g. a checkpoint file, was fixed)."""
    rnd = _locked_round(round_id)
    _check_not_frozen(rnd, "render")
    failed = list(Render.objects.select_for_update().filter(round=rnd, status=RS.FAILED).order_by("pk"))
    if not failed:
        return LaunchResult(0, (), "no failed renders to retry")
    return _enqueue(rnd, failed, dispatch, reset_attempts=True)


@transaction.atomic
def renders_cancel(*, round_id: int) -> int:
    """Stop a render run: queued renders become ``cancelled``, the round goes back to ``draft``.

    Renders already running finish and keep their images; their tasks see nothing else to do.
    Returns the number of renders cancelled.
    """
    rnd = _locked_round(round_id)
    if rnd.status != Status.RENDERING:
        raise TransitionError(f"round #{rnd.pk} is {rnd.status}, not rendering: there is nothing to cancel")
    ids = list(
        Render.objects.select_for_update()
        .filter(round=rnd, status__in=[RS.PENDING, RS.QUEUED])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    Render.objects.filter(pk__in=ids).update(status=RS.CANCELLED)
    round_transition(round_id=rnd.pk, to=Status.DRAFT)
    return len(ids)


# ---------------------------------------------------------------------------------------------
# Claim, complete, fail, release (the worker's side)
# ---------------------------------------------------------------------------------------------


def max_attempts() -> int:
    return int(getattr(settings, "RENDER_MAX_ATTEMPTS", 3))


def render_claim(*, render_ids: Iterable[int], objective: str) -> list[Claim]:
    """Take the renders of ``render_ids`` that need rendering, for this connection.

    Skips renders that are done, failed, cancelled, or held by a live worker. Reclaims a running
    render whose worker died (deleting any file it may have written), unless it already died
    ``RENDER_MAX_ATTEMPTS`` times: then the render fails with a message saying so.
    The caller must call :func:`render_locks_release` when it is done with the claims.
    """
    claims: list[Claim] = []
    stale_files: list[str] = []
    locked: list[int] = []
    try:
        _claim_rows(render_ids, objective, claims, stale_files, locked)
    except BaseException:
        render_locks_release(locked)  # session locks outlive a rolled-back transaction
        raise
    for name in stale_files:
        render_file_delete(name)
    return claims


def _claim_rows(render_ids, objective, claims: list[Claim], stale_files: list[str], locked: list[int]) -> None:
    with transaction.atomic():
        rows = list(
            Render.objects.select_for_update(of=("self",))
            .select_related("prompt")
            .filter(pk__in=list(render_ids), objective=objective)
            .filter(Q(status__in=[RS.PENDING, RS.QUEUED, RS.RUNNING]))
            .order_by("pk")
        )
        now = timezone.now()
        for r in rows:
            if not _try_lock(r.pk):
                continue  # a live worker holds it
            locked.append(r.pk)
            if r.status == RS.RUNNING:
                stale_files.append(r.image.name)
                if r.attempts >= max_attempts():
                    r.status, r.image, r.finished_at = RS.FAILED, "", now
                    r.error = (
                        f"the worker stopped while rendering this image {r.attempts} times (killed, out of memory, "
                        f"or over the hard time limit RENDER_TASK_TIME_LIMIT); see the worker logs, then retry"
                    )
                    r.save(update_fields=["status", "image", "error", "finished_at"])
                    _unlock(r.pk)
                    continue
            r.status = RS.RUNNING
            r.attempts += 1
            r.started_at = now
            r.finished_at = None
            r.error = ""
            r.image = new_render_name()
            r.save(update_fields=["status", "attempts", "started_at", "finished_at", "error", "image"])
            claims.append(
                Claim(r.pk, r.round_id, r.prompt.text, r.seed, r.objective, r.attempts, now, r.image.name)
            )


def _held(claim: Claim, *, lock_round: bool) -> Render | None:
    """The render row, locked, if ``claim`` is still its current claim; else None."""
    if lock_round:
        StudyRound.objects.select_for_update().filter(pk=claim.round_id).first()
    r = Render.objects.select_for_update().filter(pk=claim.render_id).first()
    if r is None or r.status != RS.RUNNING or r.attempts != claim.attempt or r.started_at != claim.started_at:
        return None
    return r


def render_complete(*, claim: Claim, image_name: str, scores: dict, provenance: dict) -> bool:
    """Record the rendered image of ``claim``; the round becomes ``ready`` with its last render.

    Returns False (and records nothing) when the claim is no longer current: the caller then
    deletes the file it wrote.
    """
    with transaction.atomic():
        r = _held(claim, lock_round=True)
        if r is None:
            return False
        r.status = RS.DONE
        r.image = image_name
        r.itc_score, r.itm_score, r.cap_score = (_score(scores, k) for k in ("itc", "itm", "cap"))
        r.provenance = provenance
        r.error = ""
        r.finished_at = timezone.now()
        r.save(update_fields=["status", "image", "itc_score", "itm_score", "cap_score", "provenance", "error", "finished_at"])
        rnd = StudyRound.objects.get(pk=claim.round_id)
        if rnd.status == Status.RENDERING and not rnd.renders.exclude(status=RS.DONE).exists():
            round_transition(round_id=rnd.pk, to=Status.READY)
    return True


def _score(scores: dict, key: str) -> float | None:
    v = scores.get(key)
    return None if v is None else float(v)


def render_fail(*, claim: Claim, message: str) -> bool:
    """Mark ``claim``'s render failed with ``message`` (shown on the round page)."""
    with transaction.atomic():
        r = _held(claim, lock_round=False)
        if r is None:
            return False
        r.status, r.error, r.image, r.finished_at = RS.FAILED, message[:4000], "", timezone.now()
        r.save(update_fields=["status", "error", "image", "finished_at"])
    render_file_delete(claim.image_name)
    return True


def render_release(*, claim: Claim) -> bool:
    """Give a claimed render back to the queue (a transient error; the task will be retried)."""
    with transaction.atomic():
        r = _held(claim, lock_round=False)
        if r is None:
            return False
        r.status, r.image = RS.QUEUED, ""
        r.save(update_fields=["status", "image"])
    render_file_delete(claim.image_name)
    return True
