"""Planning a study in the units a researcher budgets: votes, prompts, annotators, and the
expected number of votes under the monitoring rule.

1. Votes per cell for the exact test at the Holm first-step level
   (:func:`studyapp.stats.binomial.votes_needed`), times the design effect.
2. The design effect is given, or estimated from an earlier round's (pilot's) votes file: per
   cell, the clustered variance of the primary estimate over its independent-votes variance
   (:mod:`studyapp.stats.clustered`), pooled as the vote-weighted mean of the cells that have one.
3. With monitoring (K equally spaced looks, O'Brien-Fleming-type spending), the maximum size is
   inflated so that the group-sequential test keeps the fixed test's power, and the expected
   number of votes to a decision is computed under H1 (the planned preference) and under H0
   (normal approximation on the clustered z scale; :mod:`studyapp.stats.sequential`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize
from scipy import stats as _st

from studyapp.stats.binomial import votes_needed
from studyapp.stats.config import AnalysisSettings
from studyapp.stats.sequential import equal_looks, expected_fraction


def pilot_design_effect(votes, settings: AnalysisSettings | None = None) -> dict:
    """The design effect measured on a pilot (or earlier) round's votes (declared subset).

    Returns ``{"design_effect": pooled (>= 1) or None, "cells": [{comparison, criterion, votes,
    design_effect}], "note": ...}``.
    """
    from studyapp.stats.analysis import analyse

    import dataclasses

    s = dataclasses.replace(settings or AnalysisSettings(), bootstrap_replicates=0, bt_replicates=0, monitoring=None)
    cells = analyse(votes, s)["results"]["declared"]["preference"]
    rows, num, den = [], 0.0, 0
    for c in cells:
        de = c["primary"]["design_effect"]
        rows.append({"comparison": c["comparison"], "criterion": c["criterion"], "votes": c["primary"]["votes"],
                     "design_effect": de})
        # Only cells the clustered test accepts (enough annotators and prompts) measure it.
        if de is not None and c["p_value"] is not None and c["primary"]["votes"]:
            num += de * c["primary"]["votes"]
            den += c["primary"]["votes"]
    pooled = max(1.0, num / den) if den else None
    note = "" if den else (f"no cell of the pilot has a design effect (each needs votes from at least {s.min_clusters} "
                           "annotators and prompts, not all one way)")
    return {"design_effect": pooled, "cells": rows, "note": note}


@dataclass(frozen=True)
class StudyPlan:
    """The planner's answer in budget units. ``votes_per_cell`` counts all votes (ties included)
    of one comparison on one criterion; a trial answers every criterion, so a comparison needs
    that many trials."""

    p: float
    power: float
    alpha: float
    n_tests: int
    tie_rate: float
    design_effect: float
    votes_per_cell: int
    comparisons: int
    trials: int
    trials_per_annotator: int
    annotators: int
    seeds_per_prompt: int
    votes_per_item: int
    prompts: int
    min_clusters: int
    warnings: list = field(default_factory=list)
    looks: int = 1
    planned_votes_per_cell: int = 0  # with monitoring: the inflated maximum
    expected_votes_h1: float | None = None
    expected_votes_h0: float | None = None
    power_monitored: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _inflation(looks: int, level: float, power: float) -> float:
    """Max-size inflation R so that K OBF looks keep the fixed test's power."""
    if looks == 1:
        return 1.0
    fr = equal_looks(looks)
    drift = _st.norm.isf(level / 2) + _st.norm.ppf(power)

    def gap(r):
        return expected_fraction(fr, level, drift * math.sqrt(r))["power"] - power

    return float(optimize.brentq(gap, 1.0, 2.0, xtol=1e-6))


def plan_study(
    p: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    n_tests: int = 6,
    tie_rate: float = 0.0,
    design_effect: float = 1.0,
    comparisons: int = 3,
    trials_per_annotator: int = 60,
    seeds_per_prompt: int = 1,
    votes_per_item: int = 3,
    looks: int = 1,
    min_clusters: int = 10,
) -> StudyPlan:
    """Votes, trials, annotators and prompts for a study of ``comparisons`` x criteria cells."""
    for name, v in (("comparisons", comparisons), ("trials_per_annotator", trials_per_annotator),
                    ("seeds_per_prompt", seeds_per_prompt), ("votes_per_item", votes_per_item), ("looks", looks)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} ({v!r}) must be a positive integer")
    base = votes_needed(p, power=power, alpha=alpha, n_tests=n_tests, tie_rate=tie_rate, design_effect=design_effect)
    per_cell = base.votes_stable
    level = alpha / n_tests
    r = _inflation(looks, level, power)
    planned = int(math.ceil(per_cell * r - 1e-9))
    prompts = int(math.ceil(planned / (seeds_per_prompt * votes_per_item)))
    trials = planned * comparisons
    annotators = int(math.ceil(trials / trials_per_annotator))
    warnings = []
    if prompts < min_clusters:
        warnings.append(f"{prompts} prompts is fewer than the {min_clusters} the clustered test needs for a verdict; "
                        f"use at least {min_clusters} prompts (fewer votes per item)")
    if annotators < min_clusters:
        warnings.append(f"{annotators} annotators is fewer than the {min_clusters} the clustered test needs; "
                        f"lower trials per annotator to at most {max(1, trials // min_clusters)}")
    e1 = e0 = pm = None
    if looks > 1:
        fr = equal_looks(looks)
        drift = (_st.norm.isf(level / 2) + _st.norm.ppf(power)) * math.sqrt(r)
        h1 = expected_fraction(fr, level, drift)
        h0 = expected_fraction(fr, level, 0.0)
        e1, e0, pm = h1["expected_fraction"] * planned, h0["expected_fraction"] * planned, h1["power"]
    return StudyPlan(
        p=float(p), power=float(power), alpha=float(alpha), n_tests=int(n_tests), tie_rate=float(tie_rate),
        design_effect=float(design_effect), votes_per_cell=per_cell, comparisons=comparisons, trials=trials,
        trials_per_annotator=trials_per_annotator, annotators=annotators, seeds_per_prompt=seeds_per_prompt,
        votes_per_item=votes_per_item, prompts=prompts, min_clusters=min_clusters, warnings=warnings, looks=looks,
        planned_votes_per_cell=planned, expected_votes_h1=None if e1 is None else round(e1, 1),
        expected_votes_h0=None if e0 is None else round(e0, 1), power_monitored=None if pm is None else round(pm, 4),
    )


def design_effect_ratio(se_clustered, se_independent) -> np.ndarray:
    """Design effect = (clustered SE / independent SE)^2."""
    return (np.asarray(se_clustered, float) / np.asarray(se_independent, float)) ** 2
