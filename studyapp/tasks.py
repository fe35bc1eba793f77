"""Celery render tasks: the adapter between the Django app and the framework-free torch core.

It lives in the app (Celery's Django convention), so nothing under ``generation/`` imports
Django, Celery or ``studyapp``. The task's registered name stays ``generation.tasks.render_chunk``
(where it used to live) so that messages queued before the move still find it.

A task is one work unit: (round, objective, a batch of renders). It takes ids and the spec as
JSON, never model objects, and asserts the state of the world itself (Celery "State"):

- ``render_claim`` skips renders that are done or held by a live worker, so a task that runs
  twice (a re-delivered message, a double launch) never makes a second image;
- models load once per worker process and stay loaded (Celery "Instantiation"), keyed by the
  spec hash and the weights folder;
- CUDA out-of-memory splits the batch in halves (every image has its own noise generator, so
  splitting changes no pixel); only named transient errors (database connection, storage I/O)
  are retried; anything else fails the renders with its message, shown on the round page.

The web process imports this module to enqueue: torch and the generation core are imported
inside the task body only.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from celery import shared_task
from celery.signals import worker_process_init
from celery.contrib.django.task import DjangoTask
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

log = logging.getLogger(__name__)


class TransientStorageError(OSError):
    """Writing an image to the storage failed; worth retrying (a network disk, S3 hiccup)."""


# Retried with backoff; everything else fails the render with its message.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, TransientStorageError)
MAX_RETRIES = 5


class RenderTask(DjangoTask):
    """Task base holding the loaded models of this worker process (one entry: GPU memory is finite)."""

    _models = None
    _models_key: tuple | None = None

    def models_for(self, spec, *, weights_dir: str | None, device: str):
        from generation.pipeline import load_models

        key = (spec.spec_hash(), str(weights_dir), str(device))
        if self._models_key != key:
            self._models = self._models_key = None  # free the old models before loading new ones
            _empty_cuda_cache()
            self._models = load_models(spec, weights_dir=weights_dir, device=device)
            self._models_key = key
        return self._models


@worker_process_init.connect
def _import_the_core(**_kwargs) -> None:
    """Import torch and the core when a pool process starts, outside any task's time limit.

    A soft time limit that fires in the middle of ``import torch`` would leave a half-initialised
    module behind and break every later task of that process; the first task is faster, too.
    """
    import torch  # noqa: F401

    import generation.pipeline  # noqa: F401


@shared_task(
    bind=True,
    base=RenderTask,
    name="generation.tasks.render_chunk",
    acks_late=True,
    reject_on_worker_lost=True,
    # Past the hard time limit the pool process is killed: give the message back (like a lost
    # worker), so the renders are reclaimed and, after RENDER_MAX_ATTEMPTS, fail with a message.
    acks_on_timeout=False,
    ignore_result=True,
    max_retries=MAX_RETRIES,
)
def render_chunk(self, round_id: int, objective: str, render_ids: list[int], spec: dict) -> dict:
    """Render one work unit; returns counts (``done``, ``failed``, ``skipped``) for the logs."""
    final = self.request.retries >= self.max_retries
    try:
        return render_unit(
            round_id=round_id, objective=objective, render_ids=render_ids, spec=spec,
            models_for=self.models_for, final_attempt=final, worker=self.request.hostname or socket.gethostname(),
            soft_time_limit=(self.request.timelimit or (None, None))[1] or settings.CELERY_TASK_SOFT_TIME_LIMIT,
        )
    except TRANSIENT_ERRORS as exc:
        if final:
            raise
        countdown = min(60, 2 ** self.request.retries) + 0.5
        log.warning("render unit of round %s: transient %s, retrying in %.0fs", round_id, type(exc).__name__, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc


def render_device() -> str:
    device = settings.RENDER_DEVICE
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def weights_dir() -> str | None:
    return str(settings.WEIGHTS_DIR) if settings.WEIGHTS_DIR else None


def render_unit(
    *,
    round_id: int,
    objective: str,
    render_ids: list[int],
    spec: dict,
    models_for: Callable,
    final_attempt: bool = True,
    worker: str = "",
    on_image: Callable[[int], None] | None = None,
    soft_time_limit: float | None = None,
) -> dict:
    """Claim, render, store and record one work unit. Safe to run any number of times."""
    from studyapp.models import StudyRound
    from studyapp.services import renders as svc

    claims = svc.render_claim(render_ids=render_ids, objective=objective)
    counts = {"done": 0, "failed": 0, "skipped": len(render_ids) - len(claims)}
    if not claims:
        return counts
    pending = {c.render_id: c for c in claims}

    def fail(claim, message: str) -> None:
        svc.render_fail(claim=claim, message=message)
        pending.pop(claim.render_id, None)
        counts["failed"] += 1
        if on_image:
            on_image(1)

    def fail_all(message: str) -> None:
        for c in list(pending.values()):
            fail(c, message)

    try:
        rnd = StudyRound.objects.get(pk=round_id)
        from generation.checkpoints import CheckpointError
        from generation.presets import spec_from_config
        from generation.spec import SpecError

        try:
            gspec = spec_from_config(spec)
        except SpecError as exc:
            fail_all(f"invalid generation spec: {exc}")
            return counts
        if rnd.spec_hash and gspec.spec_hash() != rnd.spec_hash:
            fail_all(f"the task's spec (hash {gspec.spec_hash()[:12]}) is not the round's ({rnd.spec_hash[:12]}); launch the round again")
            return counts
        device = render_device()
        try:
            models = models_for(gspec, weights_dir=weights_dir(), device=device)
        except CheckpointError as exc:
            fail_all(f"checkpoint problem: {exc}")
            return counts
        round_seed = int(rnd.config.get("round_seed", 0))

        def store(claim, result) -> None:
            from studyapp.storage import png_from_pixels, render_file_delete, render_file_write

            try:
                name = render_file_write(png_from_pixels(result.image), name=claim.image_name)
            except OSError as exc:
                raise TransientStorageError(f"cannot write the image to the storage: {exc}") from exc
            provenance = {**result.provenance, "render_id": claim.render_id, "round_id": claim.round_id,
                          "attempt": claim.attempt, "worker": worker}
            if svc.render_complete(claim=claim, image_name=name, scores=result.scores, provenance=provenance):
                counts["done"] += 1
            else:  # someone else's claim is current now: this image must not exist
                render_file_delete(name)
                counts["skipped"] += 1
            pending.pop(claim.render_id, None)
            if on_image:
                on_image(1)

        _render_split(models, gspec, objective, claims, round_seed, store, fail)
    except SoftTimeLimitExceeded:
        fail_all(
            f"the task ran past its soft time limit ({soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT:g} s); raise "
            f"RENDER_TASK_SOFT_TIME_LIMIT / RENDER_TASK_TIME_LIMIT or lower the spec's batch_size, then retry"
        )
    except TRANSIENT_ERRORS as exc:
        # Final attempt: the renders fail with the message. Else they go back to the queue and
        # the exception makes Celery retry the task.
        log.warning("render unit of round %s: %s: %s", round_id, type(exc).__name__, exc)
        for c in list(pending.values()):
            try:
                if final_attempt:
                    svc.render_fail(claim=c, message=f"{exc} ({type(exc).__name__}; retry once it is fixed)")
                    counts["failed"] += 1
                else:
                    svc.render_release(claim=c)
            except Exception:  # noqa: BLE001 - the database may be the thing that is down
                log.warning("could not release render %s; the next claim reclaims it", c.render_id, exc_info=True)
        if not final_attempt:
            raise
    except Exception as exc:  # noqa: BLE001 - a render error is shown to the researcher, not lost
        log.exception("render unit of round %s failed", round_id)
        fail_all(f"{type(exc).__name__}: {exc}")
    finally:
        svc.render_locks_release(c.render_id for c in claims)
    return counts


def _render_split(models, gspec, objective, claims, round_seed, store, fail) -> None:
    """``render_batch`` on ``claims``; on CUDA out-of-memory, the two halves one after the other."""
    import torch

    from generation.pipeline import render_batch

    try:
        results = render_batch(
            models, gspec, objective=objective, prompts=[c.prompt for c in claims], seeds=[c.seed for c in claims],
            round_seed=round_seed,
        )
    except torch.cuda.OutOfMemoryError:
        _empty_cuda_cache()
        if len(claims) == 1:
            fail(
                claims[0],
                "CUDA out of memory with a batch of one image: use a GPU with more memory, "
                "precision 'bf16', or fewer guidance views",
            )
            return
        half = len(claims) // 2
        log.warning("CUDA out of memory with %d images: splitting into %d + %d", len(claims), half, len(claims) - half)
        _render_split(models, gspec, objective, claims[:half], round_seed, store, fail)
        _render_split(models, gspec, objective, claims[half:], round_seed, store, fail)
        return
    for claim, result in zip(claims, results, strict=True):
        store(claim, result)


def _empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Sending work: to the broker, or in this process when no broker is configured
# ---------------------------------------------------------------------------------------------


def enqueue_units(units) -> None:
    """Send each unit to the render queue with the per-task time limits of the settings."""
    for unit in units:
        render_chunk.apply_async(
            args=unit.args(),
            queue=settings.RENDER_QUEUE,
            time_limit=settings.CELERY_TASK_TIME_LIMIT,
            soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT or None,
        )


def render_units_in_process(units, *, on_image: Callable[[int], None] | None = None) -> dict:
    """Render units one after the other in this process (no broker): the quickstart path."""
    totals = {"done": 0, "failed": 0, "skipped": 0}
    for unit in units:
        counts = render_unit(
            round_id=unit.round_id, objective=unit.objective, render_ids=list(unit.render_ids), spec=unit.spec,
            models_for=render_chunk.models_for, worker=f"in-process:{socket.gethostname()}", on_image=on_image,
        )
        for k in totals:
            totals[k] += counts[k]
    return totals


_thread_lock = threading.Lock()


def render_units_in_thread(units) -> threading.Thread:
    """Render in a background thread of the web process (launch from the round page, no broker)."""

    def run():
        with _thread_lock:  # one model set in memory, one render run at a time
            try:
                started = time.monotonic()
                totals = render_units_in_process(units)
                log.info("in-process rendering finished in %.0fs: %s", time.monotonic() - started, totals)
            except Exception:  # noqa: BLE001 - a thread has no one else to tell
                log.exception("in-process rendering stopped")
            finally:
                close_old_connections()
                connection.close()

    thread = threading.Thread(target=run, name="render-in-process", daemon=True)
    thread.start()
    return thread
