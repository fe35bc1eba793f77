"""Annotator quality control and the declared exclusions (STUDY.md 4.7, DESIGN invariant 7).

Annotator rules (attention-check accuracy, same-side rate) remove all of an annotator's votes;
the speed floor removes single votes. Each rule's effect is reported on its own, and the union.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from studyapp.stats.binomial import sign_test_pvalue
from studyapp.stats.common import clean, compact
from studyapp.stats.config import AnalysisSettings
from studyapp.stats.table import VoteTable


def regular_mask(votes: VoteTable) -> np.ndarray:
    kind = votes.factor("trial_kind")
    return kind.codes == kind.code_of("regular")


def _annotator_arrays(votes: VoteTable, settings: AnalysisSettings) -> dict[str, Any]:
    f = votes.factor
    ann = f("annotator")
    kind = f("trial_kind")
    k_codes = kind.codes
    regular = k_codes == kind.code_of("regular")
    attention = k_codes == kind.code_of("attention")
    exp = f("expected")
    checked = attention & ~exp.is_in(("",))
    codes, labels = compact(ann.codes, ann.levels)
    codes = np.where(regular | attention, codes, -1)
    # Annotators seen only in practice rows are not part of the analysis.
    present = np.zeros(len(labels), dtype=bool)
    present[codes[codes >= 0]] = True
    a = len(labels)

    def count(mask):
        return np.bincount(codes[mask & (codes >= 0)], minlength=a)

    ch = f("choice")
    ch_dec = np.array([ch.levels[i] for i in range(len(ch.levels))] + [""], dtype=object)
    chosen = ch_dec[ch.codes]
    expected = np.array(list(exp.levels) + [""], dtype=object)[exp.codes]
    correct = checked & (chosen == expected)
    left = regular & (ch.codes == ch.code_of("left"))
    right = regular & (ch.codes == ch.code_of("right"))
    rt = votes["response_ms"]
    fast = regular & (rt < settings.exclusions.min_response_ms)
    n_reg = count(regular)
    # Median response time of regular votes per annotator (sort by annotator, then time).
    sel = np.flatnonzero(regular)
    order = sel[np.lexsort((rt[sel], codes[sel]))]
    starts = np.concatenate([[0], np.cumsum(n_reg)])[:-1]
    median = np.full(a, np.nan)
    has = n_reg > 0
    s_rt = rt[order].astype(float)
    median[has] = (s_rt[starts[has] + (n_reg[has] - 1) // 2] + s_rt[starts[has] + n_reg[has] // 2]) / 2
    return {
        "labels": labels,
        "codes": codes,
        "present": present,
        "regular_votes": n_reg,
        "attention_checks": count(checked),
        "attention_correct": count(correct),
        "left": count(left),
        "right": count(right),
        "fast": count(fast),
        "fast_mask": fast,
        "median_ms": median,
    }


def _exclusion_flags(arr: dict[str, Any], settings: AnalysisSettings) -> dict[str, np.ndarray]:
    ex = settings.exclusions
    checks = arr["attention_checks"]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = arr["attention_correct"] / checks
        side = np.maximum(arr["left"], arr["right"]) / arr["regular_votes"]
    attention = np.zeros(len(checks), dtype=bool)
    if ex.min_attention_accuracy is not None:
        attention = (checks > 0) & (acc < ex.min_attention_accuracy)
    side_rule = np.zeros(len(checks), dtype=bool)
    if ex.max_side_rate is not None:
        side_rule = (arr["regular_votes"] >= ex.side_rate_min_votes) & (side >= ex.max_side_rate)
    staff = dict(settings.staff_exclusions)
    by_staff = np.array([label in staff for label in arr["labels"]], dtype=bool)
    return {"attention": attention & arr["present"], "side_rate": side_rule & arr["present"], "staff": by_staff & arr["present"]}


def _reasons(flags: dict[str, np.ndarray], i: int, label: str, settings: AnalysisSettings) -> list[str]:
    reasons = [name for name in ("attention", "side_rate") if flags[name][i]]
    if flags["staff"][i]:
        reasons.append(f"staff: {dict(settings.staff_exclusions)[label]}")
    return reasons


def annotator_qc(votes: VoteTable, settings: AnalysisSettings | None = None) -> list[dict[str, Any]]:
    """Quality control per annotator, sorted by pseudonym.

    Each record: ``annotator``, ``votes`` (regular), ``attention_checks``, ``attention_correct``,
    ``attention_accuracy`` (None without checks), ``median_response_ms``, ``fast_votes`` and
    ``fast_share`` (regular votes under the speed floor), ``left`` / ``right`` / ``ties``,
    ``left_rate`` (among non-tie) with ``left_p`` (exact two-sided binomial vs 0.5),
    ``side_rate`` (share of votes on the more-chosen side, ties in the denominator),
    ``excluded`` and ``reasons`` (the declared annotator rules it fails).
    """
    settings = settings or AnalysisSettings()
    arr = _annotator_arrays(votes, settings)
    flags = _exclusion_flags(arr, settings)
    n = arr["regular_votes"]
    ties = n - arr["left"] - arr["right"]
    nt = arr["left"] + arr["right"]
    p_left = sign_test_pvalue(arr["left"], nt)
    out = []
    for i, label in enumerate(arr["labels"]):
        if not arr["present"][i]:
            continue
        reasons = _reasons(flags, i, label, settings)
        checks = int(arr["attention_checks"][i])
        out.append(
            clean(
                {
                    "annotator": label,
                    "votes": int(n[i]),
                    "attention_checks": checks,
                    "attention_correct": int(arr["attention_correct"][i]),
                    "attention_accuracy": arr["attention_correct"][i] / checks if checks else None,
                    "median_response_ms": arr["median_ms"][i],
                    "fast_votes": int(arr["fast"][i]),
                    "fast_share": arr["fast"][i] / n[i] if n[i] else None,
                    "left": int(arr["left"][i]),
                    "right": int(arr["right"][i]),
                    "ties": int(ties[i]),
                    "left_rate": arr["left"][i] / nt[i] if nt[i] else None,
                    "left_p": p_left[i],
                    "side_rate": max(arr["left"][i], arr["right"][i]) / n[i] if n[i] else None,
                    "excluded": bool(reasons),
                    "reasons": reasons,
                }
            )
        )
    return out


def declared_mask(votes: VoteTable, settings: AnalysisSettings) -> tuple[np.ndarray, dict[str, Any]]:
    """Regular votes kept under the declared exclusions, and a report of what each rule removed."""
    arr = _annotator_arrays(votes, settings)
    flags = _exclusion_flags(arr, settings)
    codes = arr["codes"]
    kind = votes.factor("trial_kind")
    regular = kind.codes == kind.code_of("regular")
    excluded = flags["attention"] | flags["side_rate"] | flags["staff"]
    ann_out = np.zeros(len(votes), dtype=bool)
    ok = codes >= 0
    ann_out[ok] = excluded[codes[ok]]
    keep = regular & ~ann_out & ~arr["fast_mask"]

    def removed(flag: np.ndarray) -> dict[str, int]:
        rows = np.zeros(len(votes), dtype=bool)
        rows[ok] = flag[codes[ok]]
        return {"annotators": int(flag.sum()), "votes": int((rows & regular).sum())}

    report = {
        "rules": dataclasses.asdict(settings.exclusions),
        "attention": removed(flags["attention"]),
        "side_rate": removed(flags["side_rate"]),
        "staff": removed(flags["staff"]),
        "fast_votes": {"votes": int(arr["fast_mask"].sum())},
        "total": {
            "annotators": int(excluded.sum()),
            "votes": int(regular.sum() - keep.sum()),
            # Annotators with at least one vote kept: one whose every vote fell under the speed
            # floor contributes nothing and is not counted.
            "annotators_kept": int(len(np.unique(codes[keep & ok]))),
            "votes_kept": int(keep.sum()),
        },
        "excluded_annotators": [
            {
                "annotator": arr["labels"][i],
                "reasons": _reasons(flags, i, arr["labels"][i], settings),
            }
            for i in np.flatnonzero(excluded)
        ],
    }
    return keep, report
