"""Do the automatic scores agree with people? Per criterion and per BLIP score (ITC, ITM, CAP):
how often the image with the better score is the one people preferred.

Every regular vote of the subset whose two images both have the score counts (any pair of
objectives). Outcomes: ``agree`` (people chose the better-scored image), ``disagree``, ``tie``
(people answered "tie") and ``score_tie`` (equal scores; no better image). The rate is
agree / (agree + disagree); its interval is a percentile bootstrap over prompts (votes of one
prompt move together), the same resampling as the preference bootstraps. Votes whose images lack
a score (imported renders) are counted as ``missing`` and left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from studyapp.stats.resample import percentile_interval, resample_totals, rng_for
from studyapp.stats.table import SCORE_NAMES

STREAM_SCORES = 4
AGREE, DISAGREE, HUMAN_TIE, SCORE_TIE = range(4)


def score_agreement(rows, crit_idx: np.ndarray, settings) -> dict[str, Any]:
    """``rows``: the analysis' integer-coded subset (``analysis._Rows``)."""
    available = rows.has_scores()
    out: dict[str, Any] = {"available": available, "criteria": {}}
    if not available:
        out["note"] = "this votes file has no score columns (exported before scores were recorded)"
        return out
    pos = np.arange(rows.n)
    n_p = len(rows.prompt_labels)
    for ci, crit in enumerate(settings.criteria):
        m = np.flatnonzero(crit_idx == ci)
        per_score = {}
        for si, name in enumerate(SCORE_NAMES):
            left = rows.column(f"left_{name}_score", pos[m]).astype(float)
            right = rows.column(f"right_{name}_score", pos[m]).astype(float)
            ok = np.isfinite(left) & np.isfinite(right)
            ch_l, ch_r = rows.choice_left[m], rows.choice_right[m]
            better_left = left > right
            outcome = np.where(
                left == right, SCORE_TIE,
                np.where(~(ch_l | ch_r), HUMAN_TIE, np.where(ch_l == better_left, AGREE, DISAGREE)),
            )
            o, prompts = outcome[ok], rows.prompt[m][ok]
            counts = np.bincount(o, minlength=4)
            agree, disagree = int(counts[AGREE]), int(counts[DISAGREE])
            lo = hi = None
            if settings.bootstrap_replicates and agree + disagree:
                per_prompt = np.bincount(prompts * 4 + o, minlength=n_p * 4).reshape(n_p, 4)
                tot = resample_totals(per_prompt[:, :2], settings.bootstrap_replicates,
                                      rng_for(settings.bootstrap_seed, STREAM_SCORES * 100 + ci * 10 + si))
                with np.errstate(invalid="ignore", divide="ignore"):
                    rates = tot[:, 0] / tot[:, :2].sum(axis=1)
                lo, hi = percentile_interval(rates[:, None], settings.confidence)
                lo, hi = float(lo[0]), float(hi[0])
            per_score[name] = {
                "agree": agree,
                "disagree": disagree,
                "human_ties": int(counts[HUMAN_TIE]),
                "score_ties": int(counts[SCORE_TIE]),
                "missing": int((~ok).sum()),
                "rate": agree / (agree + disagree) if agree + disagree else None,
                "ci_bootstrap_prompt": [lo, hi],
            }
        out["criteria"][crit] = per_score
    missing = sum(v["missing"] for c in out["criteria"].values() for v in c.values())
    out["note"] = (f"{missing} vote-score pair(s) without a score on both images (imported renders) left out"
                   if missing else "")
    return out
