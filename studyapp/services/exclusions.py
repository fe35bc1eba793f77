"""Staff exclusion of annotators from the analysis: an explicit, logged, append-only decision.

The annotator's votes and trials stay as they are (nothing is deleted or edited, so no vote is
lost and the items' counters keep agreeing with the trials); the round's analysis settings gain
the exclusion (``staff_exclusions``) and the "declared" results leave the annotator out, showing
the reason. Who, when and why are stored in ``AnnotatorExclusion`` and in the admin's log.
"""

from __future__ import annotations

import logging

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction

from studyapp.exceptions import StudyError
from studyapp.models import Annotator, AnnotatorExclusion

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


class ExclusionError(StudyError):
    code = "bad_exclusion"


def exclusion_reason_clean(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise ExclusionError("give a reason for the exclusion (it is shown next to the results)")
    if "\x00" in reason:
        raise ExclusionError("the reason contains a NUL character; type it again")
    if len(reason) > MAX_REASON_CHARS:
        raise ExclusionError(f"the reason is {len(reason)} characters; keep it under {MAX_REASON_CHARS}")
    return reason


@transaction.atomic
def annotators_exclude(*, annotator_ids: list[int], reason: str, by) -> list[AnnotatorExclusion]:
    """Exclude each annotator not excluded yet; returns the new exclusions (already excluded
    annotators are left as they were: the first decision and its reason stand)."""
    reason = exclusion_reason_clean(reason)
    if by is None or not getattr(by, "is_staff", False):
        raise ExclusionError("only staff can exclude annotators", code="forbidden")
    annotators = list(Annotator.objects.select_for_update().filter(pk__in=annotator_ids).order_by("pk"))
    done = set(AnnotatorExclusion.objects.filter(annotator__in=annotators).values_list("annotator_id", flat=True))
    created = []
    for ann in annotators:
        if ann.pk in done:
            continue
        created.append(AnnotatorExclusion.objects.create(annotator=ann, reason=reason, excluded_by=by, excluded_by_name=by.get_username()))
        LogEntry.objects.log_actions(
            user_id=by.pk, queryset=[ann], action_flag=CHANGE,
            change_message=f"Excluded from the analysis: {reason}", single_object=True,
        )
        log.info("annotator %s of round #%s excluded by %s: %s", ann.pseudonym, ann.round_id, by.get_username(), reason)
    return created

