"""Annotators: entry (direct link or Prolific), consent, the comprehension check, the phase an
annotator is in, completion and attention-check QC.

An annotator has no account. The browser holds a signed cookie with the annotator's random
pseudonym (views). A ``PROLIFIC_PID`` is public-ish (issue 13), so it resumes its annotator only
together with the ``SESSION_ID`` that annotator joined with (or from the browser holding the
cookie); presented alone it starts a fresh session not linked to the PID, exactly as an unknown
PID would, so nothing tells whether the PID exists. Status follows the
flow ``consented -> practice -> active -> completed``, or ``screened_out`` after failing the
comprehension check twice (Prolific's policy: two attempts before a screen-out).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from django.conf import settings
from django.core.cache import caches
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from studyapp.exceptions import StudyError
from studyapp.models import Annotator, ComparisonItem, StudyRound, Trial, Vote
from studyapp.round_config import RoundConfig

log = logging.getLogger(__name__)
Status = Annotator.Status
PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete?cc="
COMPREHENSION_ATTEMPTS = 2
# Prolific ids are 24 hex characters; accept any short plain id, refuse anything else.
_PLATFORM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PLATFORM_FIELDS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")


class AnnotateError(StudyError):
    """Something an annotator's request cannot do; ``message`` is shown to the annotator."""

    def __init__(self, message: str, *, code: str, status: int = 400):
        super().__init__(message, code=code)
        self.status = status


@lru_cache(maxsize=256)
def config_for(round_id: int, config_json: str) -> RoundConfig:
    """A round's config from its JSON text, parsed once per process (it never changes after creation)."""
    return RoundConfig.from_dict(json.loads(config_json))


def config_of(rnd: StudyRound) -> RoundConfig:
    return config_for(rnd.pk, json.dumps(rnd.config, sort_keys=True))


# The annotator's row (locked) and the round columns the annotator flow reads, in one query.
# Nothing else may be read in this statement: its snapshot predates any wait for the lock.
_ANN_COLUMNS = [f.attname for f in Annotator._meta.concrete_fields]
_ROUND_COLUMNS = ("id", "status", "config", "token", "completion_code", "screenout_code")
_LOCK_SQL = """
SELECT {ann}, {rnd}
FROM studyapp_annotator a JOIN studyapp_studyround r ON r.id = a.round_id
WHERE {where}
FOR UPDATE OF a
"""


def annotator_lock(*, annotator_id: int | None = None, pseudonym: str | None = None, round_token: str | None = None) -> Annotator:
    """The annotator's row, locked for this transaction (with its round), by id or by the
    pseudonym the browser's cookie holds. Every write of an annotator's trials starts here, so
    one annotator's concurrent requests (double clicks, two tabs) take turns.

    Raw SQL on the hottest path of the platform (every trial fetch and answer)."""
    where, params = ("a.id = %s", [annotator_id]) if annotator_id is not None else (
        "a.pseudonym = %s AND r.token = %s", [pseudonym, round_token])
    sql = _LOCK_SQL.format(
        ann=", ".join(f"a.{c}" for c in _ANN_COLUMNS),
        rnd=", ".join(f"r.{c}" if c != "config" else "r.config::text" for c in _ROUND_COLUMNS),
        where=where,
    )
    with connection.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    if row is None:
        raise refusal("no_annotator")
    n = len(_ANN_COLUMNS)
    ann = Annotator.from_db(connection.alias, _ANN_COLUMNS, row[:n])
    values = dict(zip(_ROUND_COLUMNS, row[n : n + len(_ROUND_COLUMNS)]))
    values["config"] = json.loads(values["config"])
    ann.round = StudyRound.from_db(connection.alias, list(_ROUND_COLUMNS), [values[c] for c in _ROUND_COLUMNS])
    return ann


# What an annotator is told when a request is refused, by the code the services (and the
# database functions of studyapp/sql/) give the refusal.
REFUSALS: dict[str, tuple[str, int]] = {
    "no_annotator": ("Your session was not found. Please open the study link again.", 403),
    "round_closed": ("This study has closed and takes no more answers. Thank you for your interest.", 410),
    "round_not_open": ("This study is not open yet. Please come back later.", 409),
    "not_started": ("Please read the instructions and answer the short check first.", 409),
    "no_images": ("This study has no images to show yet.", 409),
    "busy": ("The server is busy. Please try again in a moment.", 503),
    "no_such_trial": ("This answer is for a trial you were not shown. Please reload the page.", 404),
    "trial_expired": ("This trial timed out and was given to someone else. You get a fresh one now.", 409),
    "too_fast": ("Please look at both images a little longer before answering.", 400),
    "study_full": ("Every place in this study has been taken. Thank you for your interest.", 409),
    "too_many_sessions": (
        "Too many new sessions were started from your connection in the last minutes. "
        "Please wait a few minutes and open the study link again.", 429),
}


def refusal(code: str) -> AnnotateError:
    message, status = REFUSALS[code]
    return AnnotateError(message, code=code, status=status)


def round_check_open(rnd: StudyRound) -> None:
    """Refuse politely unless the round takes annotators."""
    if rnd.status == StudyRound.Status.OPEN:
        return
    raise refusal("round_closed" if rnd.status == StudyRound.Status.CLOSED else "round_not_open")


@dataclass(frozen=True)
class PlatformIds:
    prolific_pid: str = ""
    study_id: str = ""
    session_id: str = ""

    @classmethod
    def from_query(cls, query) -> "PlatformIds":
        """Read PROLIFIC_PID / STUDY_ID / SESSION_ID; values that are not plain ids are dropped
        (``malformed`` names them, so the page can say so)."""

        def clean(name: str) -> str:
            value = (query.get(name) or "").strip()
            return value if _PLATFORM_ID.fullmatch(value) else ""

        return cls(*(clean(name) for name in PLATFORM_FIELDS))

    @staticmethod
    def malformed(query) -> tuple[str, ...]:
        """The platform fields present in ``query`` whose value is not a plain id."""
        return tuple(
            name for name in PLATFORM_FIELDS
            if (query.get(name) or "").strip() and not _PLATFORM_ID.fullmatch((query.get(name) or "").strip())
        )


def annotator_for_prolific(*, rnd: StudyRound, prolific_pid: str) -> Annotator | None:
    if not prolific_pid:
        return None
    return Annotator.objects.filter(round=rnd, prolific_pid=prolific_pid).first()


def annotator_resumable(ann: Annotator | None, ids: PlatformIds) -> bool:
    """Whether ``ids`` prove to be ``ann``'s own Prolific entry: the same PID *and* the same
    non-empty SESSION_ID it joined with (the PID alone is not a secret)."""
    return bool(
        ann is not None and ids.prolific_pid and ids.session_id
        and ann.prolific_pid == ids.prolific_pid and ann.prolific_session_id == ids.session_id
    )


@dataclass(frozen=True)
class Capacity:
    items: int  # items that still take a vote: the most regular trials a newcomer can get
    slots: int  # votes still to collect, over all items


def round_capacity(rnd: StudyRound) -> Capacity:
    """What a newcomer could still be given (read before consent; not on the trial hot path)."""
    row = ComparisonItem.objects.filter(round=rnd, assigned__lt=F("target_votes")).aggregate(
        items=Count("id"), slots=Sum(F("target_votes") - F("assigned"))
    )
    return Capacity(row["items"] or 0, row["slots"] or 0)


def trials_on_offer(rnd: StudyRound, capacity: Capacity) -> int:
    """How many comparisons a newcomer may be promised: the quota, or fewer if fewer are left."""
    return min(config_of(rnd).trials_per_annotator, capacity.items)


# Annotator creation per round and client (issue 13): a fixed window counted in Django's cache.
# A shared cache (CACHES "default", or the alias in ANNOTATE_CREATE_CACHE) makes the count
# hold across server processes; the per-process default (LocMemCache) counts per process.
CREATE_LIMIT = 10
CREATE_WINDOW_S = 600


def create_limit() -> tuple[int, int]:
    """(annotators, per seconds): settings.ANNOTATE_CREATE_LIMIT, else the environment variable
    of that name as "N/SECONDS" (the load benchmark raises it), else 10 per 10 minutes."""
    value = getattr(settings, "ANNOTATE_CREATE_LIMIT", None) or os.environ.get("ANNOTATE_CREATE_LIMIT", "")
    if isinstance(value, str):
        value = value.split("/") if value else (CREATE_LIMIT, CREATE_WINDOW_S)
    limit, window = value
    return int(limit), int(window)


def admission_count(*, round_id: int, client: str, now: float | None = None) -> int:
    """Count one more annotator created by ``client`` in round ``round_id``; return the count in
    the current window. The client's address is kept only as a salted hash, in the cache, for
    one window."""
    limit, window = create_limit()
    now = time.time() if now is None else now
    digest = hashlib.sha256(f"{settings.SECRET_KEY}|{client}".encode()).hexdigest()[:32]
    key = f"annotate-create:{round_id}:{digest}:{int(now // window)}"
    cache = caches[getattr(settings, "ANNOTATE_CREATE_CACHE", "default")]
    cache.add(key, 0, timeout=window + 5)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window + 5)
        return 1


def annotator_consent(*, rnd: StudyRound, ids: PlatformIds, user_agent: str = "", client: str = "",
                      now: float | None = None) -> Annotator:
    """Create the annotator who just consented, or return the one these Prolific ids prove to be
    theirs (``annotator_resumable``). A known PID without its SESSION_ID gets a new annotator
    not linked to the PID (same page, same flow: nothing reveals that the PID exists).

    Refuses (``AnnotateError``) when the round is not open, when no item takes a vote any more
    (``study_full``), or when ``client`` created ``ANNOTATE_CREATE_LIMIT`` annotators in this
    round within the window (``too_many_sessions``)."""
    round_check_open(rnd)
    existing = annotator_for_prolific(rnd=rnd, prolific_pid=ids.prolific_pid)
    if annotator_resumable(existing, ids):
        return existing
    if round_capacity(rnd).items == 0:
        raise refusal("study_full")
    if client and admission_count(round_id=rnd.pk, client=client, now=now) > create_limit()[0]:
        raise refusal("too_many_sessions")
    fields = dict(round=rnd, prolific_study_id=ids.study_id, prolific_session_id=ids.session_id,
                  status=Status.CONSENTED, consent_at=timezone.now(), user_agent=user_agent.replace("\x00", "")[:300])
    if existing is None:
        try:
            with transaction.atomic():
                return Annotator.objects.create(prolific_pid=ids.prolific_pid, **fields)
        except IntegrityError:
            # The same Prolific ids consented twice at once (double click, two tabs): one row wins.
            existing = annotator_for_prolific(rnd=rnd, prolific_pid=ids.prolific_pid)
            if annotator_resumable(existing, ids):
                return existing
    log.info("annotate: round %s: a known PROLIFIC_PID without its session; new unlinked annotator", rnd.pk)
    return Annotator.objects.create(prolific_pid="", **fields)


# The comprehension check: (field, question, options as (value, label), correct value).
COMPREHENSION = (
    (
        "q1",
        "The first question asks which image looks more like a real photograph. What do you judge?",
        (("a", "Which image matches the text better"), ("b", "Which image looks more like a real photo, whatever the text says"), ("c", "Which image is more colourful")),
        "b",
    ),
    (
        "q2",
        "The text says \u201ca red car\u201d. Only the left image shows a red car. Which image better matches the text?",
        (("a", "Left"), ("b", "Right"), ("c", "Can't decide")),
        "a",
    ),
    (
        "q3",
        "For one question, both images are equally good (or equally bad). What do you answer?",
        (("a", "Always left"), ("b", "Always right"), ("c", "Can't decide")),
        "c",
    ),
)


@dataclass(frozen=True)
class ComprehensionResult:
    passed: bool
    attempts_left: int
    wrong: tuple[str, ...]


@transaction.atomic
def annotator_check_comprehension(*, annotator_id: int, answers: dict[str, str]) -> ComprehensionResult:
    """Grade one attempt. Two failed attempts screen the annotator out (a separate code)."""
    ann = Annotator.objects.select_for_update().select_related("round").get(pk=annotator_id)
    round_check_open(ann.round)
    if ann.status != Status.CONSENTED:
        # Already passed (or screened out): a repeated POST changes nothing.
        return ComprehensionResult(ann.status != Status.SCREENED_OUT, 0, ())
    wrong = tuple(field for field, _q, _opts, correct in COMPREHENSION if answers.get(field) != correct)
    ann.comprehension_attempts += 1
    fields = ["comprehension_attempts"]
    if not wrong:
        ann.status = Status.PRACTICE if config_of(ann.round).practice_trials else Status.ACTIVE
        fields.append("status")
    elif ann.comprehension_attempts >= COMPREHENSION_ATTEMPTS:
        ann.status = Status.SCREENED_OUT
        ann.completion_code = ann.round.screenout_code
        ann.completed_at = timezone.now()
        fields += ["status", "completion_code", "completed_at"]
    ann.save(update_fields=fields)
    return ComprehensionResult(not wrong, max(0, COMPREHENSION_ATTEMPTS - ann.comprehension_attempts), wrong)


def annotator_update_qc(ann: Annotator) -> str:
    """Set ``qc_status`` from the attention checks answered so far (pending until the first one).

    A check is passed when the vote on the trial's ``check_criterion`` chose ``expected_side``;
    the threshold is the round's ``exclusions.min_attention_accuracy``. The rule lives in one
    place, the database function ``studyapp_annotator_qc`` (studyapp/sql/), which the answer
    path calls in the same statement as the vote.
    """
    with connection.cursor() as cur:
        cur.execute("SELECT studyapp_annotator_qc(%s::bigint)", [ann.pk])
        ann.qc_status = cur.fetchone()[0]
    return ann.qc_status


def attention_accuracy(annotator_id: int) -> tuple[int, int]:
    """(checks passed, checks answered) of one annotator."""
    row = Vote.objects.filter(
        trial__annotator_id=annotator_id, trial__kind=Trial.Kind.ATTENTION, criterion=F("trial__check_criterion")
    ).aggregate(total=Count("id"), correct=Count("id", filter=Q(choice=F("trial__expected_side"))))
    return row["correct"], row["total"]


def completion_url(ann: Annotator) -> str:
    """Where a Prolific participant goes back to, with the code; empty for a direct-link annotator."""
    cfg = config_of(ann.round)
    if ann.status not in (Status.COMPLETED, Status.SCREENED_OUT):
        return ""
    if cfg.prolific_completion_url and ann.status == Status.COMPLETED:
        return cfg.prolific_completion_url
    # Prolific's study or session id also marks a Prolific participant (their PID may have come
    # malformed and been dropped, or belong to an unlinked session).
    if ann.prolific_pid or ann.prolific_study_id or ann.prolific_session_id or cfg.prolific_completion_url:
        return PROLIFIC_COMPLETE_URL + quote(ann.completion_code, safe="")
    return ""


def annotator_qc_rows(rnd: StudyRound) -> list[dict]:
    """Per annotator of ``rnd``: status, QC, attention checks passed/answered, trials answered."""
    anns = (
        Annotator.objects.filter(round=rnd)
        .annotate(
            answered=Count("trials", filter=Q(trials__answered_at__isnull=False, trials__kind=Trial.Kind.REGULAR)),
        )
        .order_by("created_at")
    )
    checks = {
        r["trial__annotator_id"]: r
        for r in Vote.objects.filter(
            trial__annotator__round=rnd, trial__kind=Trial.Kind.ATTENTION, criterion=F("trial__check_criterion")
        )
        .values("trial__annotator_id")
        .annotate(total=Count("id"), correct=Count("id", filter=Q(choice=F("trial__expected_side"))))
    }
    rows = []
    for a in anns:
        c = checks.get(a.pk, {"total": 0, "correct": 0})
        rows.append(
            {
                "pseudonym": a.pseudonym[:10],
                "prolific_pid": a.prolific_pid,
                "status": a.status,
                "qc_status": a.qc_status,
                "checks_passed": c["correct"],
                "checks_answered": c["total"],
                "trials_answered": a.answered,
                "created_at": a.created_at,
            }
        )
    return rows
