"""Annotator pages (no account): link -> consent -> instructions -> comprehension check ->
practice -> trials -> completion code; plus the small JSON API the trial page's script uses and
the blinded image endpoint.

Every page is a real HTML form that works without JavaScript; ``static/js/annotate.js`` enhances
the trial page (keys, minimum viewing time, zoom, undo, answers over the JSON API).

Identity: a signed cookie scoped to the round's path holds the annotator's random pseudonym; a
returning ``PROLIFIC_PID`` resumes its annotator only with the ``SESSION_ID`` it joined with
(services.annotators.annotator_resumable). Tokens in URLs are checked for shape before anything
reaches the database, so junk (a NUL byte) is a 404, never a 500. Nothing sent to the annotator names an
objective, a render, a seed or a file (DESIGN invariant 2): trials are addressed by their
position in the annotator's own sequence, images by per-trial random tokens.
"""

from __future__ import annotations

import functools
import logging
import re

from django.conf import settings
from django.db import OperationalError
from django.db.models import Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from studyapp.exceptions import StudyError
from studyapp.images_blind import trial_image_png
from studyapp.models import Annotator, StudyRound, Trial
from studyapp.services import allocation, votes
from studyapp.services.annotators import (
    COMPREHENSION,
    COMPREHENSION_ATTEMPTS,
    AnnotateError,
    PlatformIds,
    annotator_check_comprehension,
    annotator_consent,
    annotator_for_prolific,
    annotator_resumable,
    completion_url,
    config_of,
    create_limit,
    round_capacity,
    round_check_open,
    trials_on_offer,
)

log = logging.getLogger(__name__)
Status = Annotator.Status
COOKIE = "annotator"
COOKIE_MAX_AGE = 30 * 86400
NO_STORE = "no-store"


# Round tokens, pseudonyms and image tokens are ``secrets.token_urlsafe``; anything else names nothing.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _tokens_checked(view):
    """404 for a URL whose round or image token is not token-shaped (a NUL byte would otherwise
    reach PostgreSQL and fail as a 500): the friendly page, or JSON for the API."""

    @functools.wraps(view)
    def wrapper(request, token: str, **kwargs):
        if _TOKEN.fullmatch(token) and all(_TOKEN.fullmatch(v) for v in kwargs.values()):
            return view(request, token, **kwargs)
        if view.__name__.startswith("api_"):
            return _json({"ok": False, "error": "not_found", "message": "This study link is not valid."}, status=404)
        return _not_found(request)

    return wrapper


# -- identity ------------------------------------------------------------------------------


def _salt(token: str) -> str:
    return f"studyapp.annotate:{token}"


def _pseudonym(request, token: str) -> str | None:
    """The annotator's pseudonym from the signed cookie (no database access); None if absent or forged."""
    value = request.get_signed_cookie(COOKIE, default=None, salt=_salt(token), max_age=COOKIE_MAX_AGE) or None
    return value if value and _TOKEN.fullmatch(value) else None


def _annotator(request, token: str) -> Annotator | None:
    pseudonym = _pseudonym(request, token)
    if not pseudonym or not _TOKEN.fullmatch(pseudonym):
        return None
    return Annotator.objects.select_related("round").filter(pseudonym=pseudonym, round__token=token).first()


def _remember(response, token: str, ann: Annotator):
    response.set_signed_cookie(
        COOKIE,
        ann.pseudonym,
        salt=_salt(token),
        max_age=COOKIE_MAX_AGE,
        path=reverse("annotate:start", args=[token]),  # this round's pages only
        httponly=True,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )
    return response


def _step_url(token: str, ann: Annotator) -> str:
    if ann.status in (Status.NEW, Status.CONSENTED):
        return reverse("annotate:instructions", args=[token])
    if ann.status in (Status.PRACTICE, Status.ACTIVE):
        return reverse("annotate:trial", args=[token])
    return reverse("annotate:done", args=[token])


# -- responses -----------------------------------------------------------------------------


def _page(request, template: str, context: dict, status: int = 200):
    response = render(request, f"annotate/{template}", context, status=status)
    response["Cache-Control"] = NO_STORE
    return response


def _message(request, title: str, message: str, *, status: int = 200, link: str = "", link_text: str = ""):
    return _page(request, "message.html", {"title": title, "message": message, "link": link, "link_text": link_text}, status)


def _error_page(request, exc: StudyError, token: str):
    titles = {"round_closed": "This study has closed", "round_not_open": "Not open yet"}
    link = "" if exc.code in titles else reverse("annotate:start", args=[token])
    return _message(
        request, titles.get(exc.code, "That did not work"), exc.message, status=exc.status, link=link, link_text="Continue"
    )


def _retrying(fn, **kwargs):
    """Call a service; retry once if PostgreSQL aborted its transaction (deadlock victim,
    serialization failure, dropped connection). The services are atomic, so a failed attempt
    wrote nothing. A second failure becomes a polite "try again" (503), never a traceback; a
    broken connection is replaced at the next request (Django's request_started handling)."""
    for attempt in (1, 2):
        try:
            return fn(**kwargs)
        except OperationalError:
            log.warning("annotate: database error in %s (attempt %d)", fn.__name__, attempt, exc_info=True)
            if attempt == 2:
                raise AnnotateError(
                    "The server is busy. Nothing was lost — please try again in a moment.", code="busy", status=503
                ) from None


def _json(payload: dict, status: int = 200):
    response = JsonResponse(payload, status=status)
    response["Cache-Control"] = NO_STORE
    return response


def _json_error(exc: StudyError):
    return _json({"ok": False, "error": exc.code, "message": exc.message}, status=exc.status)


def _no_annotator_json():
    return _json(
        {"ok": False, "error": "no_annotator", "message": "Your session was not found. Please open the study link again."},
        status=403,
    )


def _trial_payload(token: str, cfg, result: allocation.NextResult | None = None, *, trial: Trial | None = None,
                   answers: dict | None = None, revising: bool = False) -> dict:
    trial = trial if trial is not None else result.trial
    progress = result.progress if result is not None else None
    return {
        "position": trial.position,
        "phase": progress.phase if progress else ("practice" if trial.kind == Trial.Kind.PRACTICE else "main"),
        "number": progress.number if progress else None,
        "total": progress.total if progress else None,
        "prompt": trial.prompt.text,
        "left": reverse("annotate:image", args=[token, trial.left_token]),
        "right": reverse("annotate:image", args=[token, trial.right_token]),
        "min_view_ms": cfg.min_view_ms,
        "answers": answers or {},
        "revising": revising,
    }


# -- pages ---------------------------------------------------------------------------------


def _not_found(request):
    return _message(request, "Study not found", "This study link is not valid. Please check the link you were given.",
                    status=404)


def _returning(request, token: str, rnd: StudyRound, ids: PlatformIds) -> Annotator | None:
    """The annotator this request may resume: the PID's own annotator when the request proves it
    (its SESSION_ID, or this browser's cookie), else this browser's annotator unless the link
    names a different PID. A PID alone resumes nothing (issue 13)."""
    mine = _annotator(request, token)
    if ids.prolific_pid:
        theirs = annotator_for_prolific(rnd=rnd, prolific_pid=ids.prolific_pid)
        if theirs is not None and (annotator_resumable(theirs, ids) or (mine is not None and mine.pk == theirs.pk)):
            return theirs
        if mine is not None and mine.prolific_pid and mine.prolific_pid != ids.prolific_pid:
            return None  # a shared computer: someone else's link
    return mine


def _full_page(request, ids: PlatformIds):
    return _page(request, "full.html", {"prolific": bool(ids.prolific_pid or ids.study_id or ids.session_id)})


def _client(request) -> str:
    """The client's address for the creation rate limit: REMOTE_ADDR, or the header named by
    ANNOTATE_CLIENT_IP_HEADER (e.g. HTTP_X_REAL_IP) when a trusted proxy sets it."""
    header = getattr(settings, "ANNOTATE_CLIENT_IP_HEADER", "")
    value = request.META.get(header, "") if header else ""
    return (value.split(",")[-1].strip() if value else "") or request.META.get("REMOTE_ADDR", "") or "unknown"


@require_GET
@_tokens_checked
def start(request, token: str):
    """The annotator link (also the Prolific study URL, with PROLIFIC_PID/STUDY_ID/SESSION_ID)."""
    rnd = StudyRound.objects.filter(token=token).first()
    if rnd is None:
        return _not_found(request)
    ids = PlatformIds.from_query(request.GET)
    ann = _returning(request, token, rnd, ids)
    if ann is not None:
        return _remember(redirect(_step_url(token, ann)), token, ann)
    try:
        round_check_open(rnd)
    except AnnotateError as exc:
        return _error_page(request, exc, token)
    capacity = round_capacity(rnd)
    if capacity.items == 0:
        return _full_page(request, ids)
    cfg = config_of(rnd)
    trials = trials_on_offer(rnd, capacity)
    minutes = max(2, round((trials + cfg.practice_trials) * 12 / 60 + 2))
    context = {
        "token": token, "ids": ids, "trials": trials, "fewer": trials < cfg.trials_per_annotator,
        "practice": cfg.practice_trials, "minutes": minutes, "consent_text": cfg.consent_text,
        "malformed": PlatformIds.malformed(request.GET),
        "window_minutes": -(-create_limit()[1] // 60),
    }
    return _page(request, "consent.html", context)


@require_POST
@_tokens_checked
def consent(request, token: str):
    rnd = StudyRound.objects.filter(token=token).first()
    if rnd is None:
        return _not_found(request)
    if request.POST.get("consent") != "yes":
        return _message(request, "No consent given", "You chose not to take part. You can close this page.",
                        link=reverse("annotate:start", args=[token]), link_text="Back to the consent page")
    ids = PlatformIds.from_query(request.POST)
    mine = _returning(request, token, rnd, ids)
    if mine is not None:  # a second click on "I agree", or a reload
        return _remember(redirect(_step_url(token, mine)), token, mine)
    try:
        ann = annotator_consent(rnd=rnd, ids=ids, user_agent=request.META.get("HTTP_USER_AGENT", ""),
                                client=_client(request))
    except AnnotateError as exc:
        if exc.code == "study_full":
            return _full_page(request, ids)
        return _error_page(request, exc, token)
    return _remember(redirect(_step_url(token, ann)), token, ann)


def _require(request, token: str, statuses) -> tuple[Annotator | None, HttpResponse | None]:
    ann = _annotator(request, token)
    if ann is None:
        if not StudyRound.objects.filter(token=token).exists():
            return None, _not_found(request)
        return None, redirect("annotate:start", token=token)
    if ann.status not in statuses:
        return None, redirect(_step_url(token, ann))
    return ann, None


@require_GET
@_tokens_checked
def instructions(request, token: str):
    ann, away = _require(request, token, (Status.NEW, Status.CONSENTED))
    if away:
        return away
    cfg = config_of(ann.round)
    return _page(request, "instructions.html", {"token": token, "cfg": cfg})


@require_http_methods(["GET", "POST"])
@_tokens_checked
def check(request, token: str):
    ann, away = _require(request, token, (Status.NEW, Status.CONSENTED))
    if away:
        return away
    context = {"token": token, "questions": COMPREHENSION,
               "attempts_left": COMPREHENSION_ATTEMPTS - ann.comprehension_attempts}
    if request.method == "GET":
        return _page(request, "check.html", context)
    try:
        result = annotator_check_comprehension(
            annotator_id=ann.pk, answers={f: request.POST.get(f, "") for f, *_ in COMPREHENSION}
        )
    except AnnotateError as exc:
        return _error_page(request, exc, token)
    ann.refresh_from_db()
    if result.passed or ann.status == Status.SCREENED_OUT:
        return redirect(_step_url(token, ann))
    context.update(attempts_left=result.attempts_left, wrong=result.wrong)
    return _page(request, "check.html", context, status=200)


@require_http_methods(["GET", "POST"])
@_tokens_checked
def trial(request, token: str):
    """The trial page; a POST is the no-JavaScript answer (the script posts to ``api_answer``)."""
    ann, away = _require(request, token, (Status.PRACTICE, Status.ACTIVE))
    if away:
        return away
    error = None
    if request.method == "POST":
        try:
            position = votes.parse_position(request.POST.get("position"))
            answer = votes.answer_parse(request.POST)
            result = _retrying(votes.trial_answer, annotator_id=ann.pk, position=position, answer=answer,
                               revise=request.POST.get("revise") == "1")
        except AnnotateError as exc:
            if exc.code not in ("bad_answer", "too_fast", "trial_expired", "already_answered"):
                return _error_page(request, exc, token)
            error = exc.message
        else:
            if result.feedback:
                return _page(request, "feedback.html", {"token": token, "feedback": result.feedback})
            return redirect("annotate:trial", token=token)
    try:
        nxt = _retrying(allocation.trial_next, annotator_id=ann.pk)
    except AnnotateError as exc:
        return _error_page(request, exc, token)
    if nxt.trial is None:
        return redirect("annotate:done", token=token)
    payload = _trial_payload(token, nxt.config, nxt)
    if error and request.POST.get("position") == str(payload["position"]):
        # Keep what the annotator chose when the same trial is shown again with the message.
        payload["answers"] = {c: request.POST.get(c, "") for c in votes.CRITERIA}
    return _page(request, "trial.html", {"token": token, "t": payload, "error": error}, status=400 if error else 200)


@require_GET
@_tokens_checked
def done(request, token: str):
    ann, away = _require(request, token, (Status.COMPLETED, Status.SCREENED_OUT))
    if away:
        return away
    if ann.status == Status.COMPLETED and not Trial.objects.filter(
        annotator=ann, answered_at__isnull=False, kind__in=(Trial.Kind.REGULAR, Trial.Kind.ATTENTION)
    ).exists():
        # The study filled up between consent and the first comparison: no code for 0 comparisons.
        ids = PlatformIds(ann.prolific_pid, ann.prolific_study_id, ann.prolific_session_id)
        return _page(request, "full.html", {"prolific": bool(ids.prolific_pid or ids.study_id or ids.session_id),
                                            "late": True})
    return _page(request, "done.html", {
        "token": token,
        "screened_out": ann.status == Status.SCREENED_OUT,
        "code": ann.completion_code,
        "return_url": completion_url(ann),
    })


# -- JSON API (used by annotate.js and the load benchmark) -----------------------------------


@require_GET
@_tokens_checked
def api_next(request, token: str):
    pseudonym = _pseudonym(request, token)
    if pseudonym is None:
        return _no_annotator_json()
    try:
        nxt = _retrying(allocation.trial_next, pseudonym=pseudonym, round_token=token)
    except AnnotateError as exc:
        return _json_error(exc)
    return _json(_next_json(token, nxt))


def _next_json(token: str, nxt: allocation.NextResult) -> dict:
    if nxt.trial is None:
        return {"ok": True, "trial": None, "done_url": reverse("annotate:done", args=[token])}
    return {"ok": True, "trial": _trial_payload(token, nxt.config, nxt)}


@require_POST
@_tokens_checked
def api_answer(request, token: str):
    """Answer both questions of one trial. ``?next=1`` adds the following trial to the reply."""
    pseudonym = _pseudonym(request, token)
    if pseudonym is None:
        return _no_annotator_json()
    try:
        position = votes.parse_position(request.POST.get("position"))
        answer = votes.answer_parse(request.POST)
        result = _retrying(votes.trial_answer, pseudonym=pseudonym, round_token=token, position=position, answer=answer,
                           revise=request.POST.get("revise") == "1")
    except AnnotateError as exc:
        return _json_error(exc)
    payload = {"ok": True, "outcome": result.outcome, "position": result.position, "feedback": result.feedback}
    if request.GET.get("next") == "1":
        try:
            payload.update(_next_json(token, _retrying(allocation.trial_next, pseudonym=pseudonym, round_token=token)))
        except AnnotateError as exc:
            payload.update(trial=None, next_error=exc.message)
    return _json(payload)


@require_GET
@_tokens_checked
def api_undo(request, token: str):
    """The last answered trial with its answers, while it can still be changed."""
    ann = _annotator(request, token)
    if ann is None:
        return _no_annotator_json()
    try:
        t, answers = votes.trial_for_undo(annotator_id=ann.pk)
    except AnnotateError as exc:
        return _json_error(exc)
    return _json({"ok": True, "trial": _trial_payload(token, config_of(ann.round), trial=t, answers=answers, revising=True)})


@require_GET
@_tokens_checked
def image(request, token: str, image_token: str):
    """One side of one trial, to the annotator who holds the trial only (404 to anyone else)."""
    ann = _annotator(request, token)
    if ann is None:
        raise Http404("No such image.")
    t = (
        Trial.objects.select_related("left_render", "right_render")
        .filter(Q(left_token=image_token) | Q(right_token=image_token), annotator=ann)
        .first()
    )
    if t is None:
        raise Http404("No such image.")
    try:
        data = trial_image_png(t, "left" if t.left_token == image_token else "right")
    except (OSError, ValueError):
        raise Http404("No such image.") from None
    response = HttpResponse(data, content_type="image/png")
    # Private to this browser; no validators derived from files (no ETag, no Last-Modified).
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Disposition"] = "inline"
    return response
