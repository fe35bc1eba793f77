"""Selectors: reads that views, commands and tasks share."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q
from django.urls import reverse

from studyapp.models import Annotator, ComparisonItem, Render, StudyRound, Trial, Vote


@dataclass(frozen=True)
class RoundCounts:
    renders: int
    renders_done: int
    renders_failed: int
    renders_pending: int
    items: int
    annotators: int
    annotators_completed: int
    trials_answered: int
    votes: int
    target_votes: int


def round_counts(rnd: StudyRound) -> RoundCounts:
    r = Render.objects.filter(round=rnd).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=Render.Status.DONE)),
        failed=Count("id", filter=Q(status=Render.Status.FAILED)),
    )
    items = ComparisonItem.objects.filter(round=rnd)
    a = Annotator.objects.filter(round=rnd).aggregate(
        total=Count("id"), completed=Count("id", filter=Q(status=Annotator.Status.COMPLETED))
    )
    return RoundCounts(
        renders=r["total"],
        renders_done=r["done"],
        renders_failed=r["failed"],
        renders_pending=r["total"] - r["done"] - r["failed"],
        items=items.count(),
        annotators=a["total"],
        annotators_completed=a["completed"],
        trials_answered=Trial.objects.filter(annotator__round=rnd, answered_at__isnull=False, kind=Trial.Kind.REGULAR).count(),
        votes=Vote.objects.filter(trial__annotator__round=rnd, trial__kind=Trial.Kind.REGULAR).count(),
        target_votes=sum(items.values_list("target_votes", flat=True)),
    )


def annotator_url(rnd: StudyRound, base_url: str | None = None) -> str:
    return (base_url or settings.SITE_URL) + reverse("annotate:start", args=[rnd.token])


def prolific_url(rnd: StudyRound, base_url: str | None = None) -> str:
    return annotator_url(rnd, base_url) + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


def round_list():
    return StudyRound.objects.select_related("prompt_set").order_by("-created_at")
