"""The optional automatic close of a round (round config ``auto_close``, docs/statistics.md).

``{"when_decided": true}`` closes an open round once every cell of the declared family has a
final decision under its declared monitoring rule (decided for or against the focal objective,
or all looks done); ``{"at_votes": N}`` closes it once it has N regular votes. Both may be given
(whichever comes first).

It is evaluated where the numbers are already at hand: when the round page's results are shown
and when an export is downloaded (``studyapp.views.results``), from the cached analysis, so it
costs no extra query beyond the round's status. A round nobody looks at closes on the next look.
"""

from __future__ import annotations

import logging

from studyapp.exceptions import StudyError
from studyapp.models import StudyRound
from studyapp.services.rounds import round_config, round_transition

log = logging.getLogger(__name__)
FINAL = ("for", "against", "no_difference")


def auto_close_reason(rnd: StudyRound, summary: dict) -> str:
    """Why the round's declared rule closes it now ("" when it does not)."""
    if rnd.status != StudyRound.Status.OPEN:
        return ""
    try:
        rule = round_config(rnd).auto_close
    except StudyError:  # an unusable config is reported by the page itself
        return ""
    if not rule:
        return ""
    at = rule.get("at_votes")
    if at is not None and summary["data"]["regular_votes"] >= at:
        return f"{summary['data']['regular_votes']} regular votes reached the declared {at}"
    cells = summary["results"]["declared"]["preference"]
    if rule.get("when_decided") and summary["settings"].get("monitoring") and cells:
        if all(c["verdict"] in FINAL for c in cells):
            return "every comparison has a final decision under the declared monitoring rule"
    return ""


def maybe_auto_close(rnd: StudyRound, summary: dict) -> str:
    """Close ``rnd`` when its declared rule says so; returns the reason ("" when left open)."""
    reason = auto_close_reason(rnd, summary)
    if not reason:
        return ""
    try:
        round_transition(round_id=rnd.pk, to=StudyRound.Status.CLOSED)
    except StudyError as exc:  # e.g. closed meanwhile by a researcher
        log.info("round #%s not auto-closed: %s", rnd.pk, exc)
        return ""
    rnd.refresh_from_db(fields=["status", "closed_at"])
    log.info("round #%s closed automatically: %s", rnd.pk, reason)
    return reason
