"""Reads for the results feature: a round's votes as rows of the stats module's vote table, and
the analysis settings the round is reported with.

One row per vote, in the column order of ``studyapp.stats.VOTE_COLUMNS``, then the optional
``studyapp.stats.SCORE_COLUMNS`` (the final BLIP scores of the left and right images). Rows are plain dicts of
strings and ints, so the same rows feed the CSV export and the in-memory table. ``objective_a``
is SHIFT whenever the pair has it (all-pairs rounds store pairs in objective order, e.g. ITC/SHIFT).
The server-side ``Vote.winner`` (resolved from the stored sides, DESIGN invariant 3) is exported as recorded for
regular trials.

Attention trials have no comparison item. Their two images are named ``GOLD`` (the side with the
known answer, ``Trial.expected_side``) and ``DECOY``; ``expected`` holds the correct side only on
the vote whose criterion is the trial's ``check_criterion`` (the other criterion has no known
answer). Practice trials are exported with ``trial_kind`` practice; the analysis ignores them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone as dt_timezone

from studyapp.models import AnnotatorExclusion, StudyRound, Trial, Vote
from studyapp.round_config import FOCAL
from studyapp.services.rounds import analysis_settings_for

GOLD = "GOLD"
DECOY = "DECOY"
TIE = "tie"


def _iso(dt) -> str:
    return dt.astimezone(dt_timezone.utc).isoformat() if dt is not None else ""


def _side_winner(choice: str, left: str, right: str) -> str:
    return left if choice == "left" else right if choice == "right" else TIE


def round_vote_rows(rnd: StudyRound) -> Iterator[dict]:
    """Every vote of ``rnd`` (regular, attention and practice trials) as an export row, by vote id."""
    qs = (
        Vote.objects.filter(trial__annotator__round=rnd)
        .order_by("id")
        .values(
            "id",
            "criterion",
            "choice",
            "winner",
            "response_ms",
            "created_at",
            "trial_id",
            "trial__kind",
            "trial__item_id",
            "trial__item__seed",
            "trial__item__objective_a",
            "trial__item__objective_b",
            "trial__annotator__pseudonym",
            "trial__prompt_id",
            "trial__prompt__text",
            "trial__prompt__category",
            "trial__left_render__objective",
            "trial__right_render__objective",
            "trial__left_render__seed",
            "trial__left_render__itc_score",
            "trial__left_render__itm_score",
            "trial__left_render__cap_score",
            "trial__right_render__itc_score",
            "trial__right_render__itm_score",
            "trial__right_render__cap_score",
            "trial__check_criterion",
            "trial__expected_side",
            "trial__answered_at",
        )
    )
    for v in qs.iterator(chunk_size=2000):
        kind = v["trial__kind"]
        choice = v["choice"]
        expected = ""
        if kind == Trial.Kind.REGULAR:
            a, b = v["trial__item__objective_a"], v["trial__item__objective_b"]
            if b == FOCAL:  # all-pairs rounds store pairs in objective order; the export puts SHIFT first
                a, b = b, a
            left, right = v["trial__left_render__objective"], v["trial__right_render__objective"]
            winner = v["winner"]
            seed = v["trial__item__seed"]
        elif v["trial__expected_side"]:
            # An attention check (or a practice trial with a known answer): gold vs decoy.
            a, b = GOLD, DECOY
            left, right = (GOLD, DECOY) if v["trial__expected_side"] == "left" else (DECOY, GOLD)
            winner = _side_winner(choice, left, right)
            seed = v["trial__left_render__seed"]
            if kind == Trial.Kind.ATTENTION and v["criterion"] == v["trial__check_criterion"]:
                expected = v["trial__expected_side"]
        else:
            # A practice trial without a known answer: the objectives shown (staff-only export).
            left, right = v["trial__left_render__objective"], v["trial__right_render__objective"]
            a, b = (v["trial__item__objective_a"], v["trial__item__objective_b"]) if v["trial__item_id"] else (left, right)
            winner = _side_winner(choice, left, right)
            seed = v["trial__item__seed"] if v["trial__item_id"] else v["trial__left_render__seed"]
        yield {
            "round_id": rnd.pk,
            "vote_id": v["id"],
            "trial_id": v["trial_id"],
            "annotator": v["trial__annotator__pseudonym"],
            "item_id": v["trial__item_id"] if v["trial__item_id"] is not None else "",
            "prompt_id": v["trial__prompt_id"],
            "prompt": v["trial__prompt__text"],
            "category": v["trial__prompt__category"] or "",
            "seed": seed,
            "trial_kind": kind,
            "criterion": v["criterion"],
            "objective_a": a,
            "objective_b": b,
            "left_objective": left,
            "right_objective": right,
            "choice": choice,
            "winner": winner,
            "expected": expected,
            "response_ms": v["response_ms"],
            "answered_at": _iso(v["trial__answered_at"] or v["created_at"]),
            # Final BLIP scores of the images shown (None: not recorded, e.g. an imported render).
            **{f"{side}_{name}_score": v[f"trial__{side}_render__{name}_score"]
               for side in ("left", "right") for name in ("itc", "itm", "cap")},
        }


def round_vote_count(rnd: StudyRound) -> int:
    """All votes of the round, whatever the trial kind (the results cache key)."""
    return Vote.objects.filter(trial__annotator__round=rnd).count()


def round_analysis_settings(rnd: StudyRound) -> dict:
    """The round's analysis settings in the stats module's format (``AnalysisSettings.from_dict``):
    frozen when the round opened, or before opening those its config declares."""
    base = rnd.analysis_settings if rnd.analysis_settings is not None else analysis_settings_for(rnd)
    staff = dict(AnnotatorExclusion.objects.filter(annotator__round=rnd).values_list("annotator__pseudonym", "reason"))
    # Exclusions decided by staff after opening join the frozen settings (and so settings.json).
    return {**base, "staff_exclusions": staff} if staff else base
