"""The whole analysis of one round's votes: ``analyse(votes, settings) -> summary dict``.

Every result is computed twice: on all regular votes ("all") and after the declared exclusions
("declared"). Votes are aggregated to counts first (per cell, per cell x cluster, per pair x
prompt); every test, interval and bootstrap works on those counts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import stats as _st

from studyapp.stats.agreement import alpha_bootstrap, krippendorff_alpha_nominal
from studyapp.stats.binomial import benjamini_hochberg, clopper_pearson, holm, sign_test_pvalue, wilson
from studyapp.stats.bt import bt_fit
from studyapp.stats.common import clean, compact
from studyapp.stats.config import AnalysisSettings
from studyapp.stats.primary import family_verdict
from studyapp.stats.qc import declared_mask, regular_mask
from studyapp.stats.resample import (
    STREAM_ANNOTATORS,
    STREAM_BT,
    STREAM_PROMPTS,
    percentile_interval,
    resample_totals,
    rng_for,
)
from studyapp.stats.scores import score_agreement
from studyapp.stats.table import SCORE_COLUMNS, TIE, VoteTable

SCHEMA = "studyapp.stats/1"
OBJECTIVE_ORDER = ("ITC", "ITM", "CAP", "SHIFT", "BLEND")
STREAM_ALPHA = 5
WIN, LOSS, TIE_OUTCOME = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Helpers


def _rate(w, l, t, rule: str):
    w, l, t = (np.asarray(x, dtype=float) for x in (w, l, t))
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule == "half":
            return (w + 0.5 * t) / (w + l + t)
        return w / (w + l)


def _interval(lo, hi) -> list:
    return [lo, hi]


class _Rows:
    """Integer-coded view of the regular votes of one subset."""

    def __init__(self, votes: VoteTable, mask: np.ndarray):
        idx = np.flatnonzero(mask)
        self.n = len(idx)
        self._idx = idx
        self._votes = votes
        f = votes.factor
        self.obj_levels = f("objective_a").levels
        self.a = f("objective_a").codes[idx]
        self.b = f("objective_b").codes[idx]
        self.left = f("left_objective").codes[idx]
        self.winner = f("winner").codes[idx]
        ch = f("choice")
        self.choice_left = ch.codes[idx] == ch.code_of("left")
        self.choice_right = ch.codes[idx] == ch.code_of("right")
        self.criterion = f("criterion").codes[idx]
        self.criterion_levels = f("criterion").levels
        self.prompt, self.prompt_labels = compact(f("prompt_id").codes[idx], f("prompt_id").levels)
        self.annotator, self.annotator_labels = compact(f("annotator").codes[idx], f("annotator").levels)
        # Sorted by label, so that item bootstraps do not depend on row order.
        self.item, _ = compact(f("item_id").codes[idx], f("item_id").levels)
        self.category, self.category_labels = compact(f("category").codes[idx], f("category").levels)
        self.tie_code = self.obj_levels.index(TIE) if TIE in self.obj_levels else -1

    def has_scores(self) -> bool:
        return all(self._votes.has(c) for c in SCORE_COLUMNS)

    def column(self, name: str, positions: np.ndarray) -> np.ndarray:
        """Raw values of a table column at these positions of the subset."""
        return self._votes[name][self._idx[positions]]

    def criterion_index(self, criteria: tuple[str, ...]) -> np.ndarray:
        lut = np.array([criteria.index(c) if c in criteria else -1 for c in self.criterion_levels] + [-1])
        return lut[self.criterion]

    def obj_code(self, name: str) -> int:
        return self.obj_levels.index(name) if name in self.obj_levels else -2


# ---------------------------------------------------------------------------------------------
# One subset's results


def _preference(rows: _Rows, settings: AnalysisSettings, crit_idx: np.ndarray) -> dict[str, Any]:
    """Cells (baseline x criterion): counts, tests, intervals, bootstraps, position bias."""
    s = settings
    nb, nc = len(s.baselines), len(s.criteria)
    focal = rows.obj_code(s.focal)
    lut = np.full(len(rows.obj_levels) + 1, -1)
    for i, name in enumerate(s.baselines):
        c = rows.obj_code(name)
        if c >= 0:
            lut[c] = i
    has_focal = (rows.a == focal) | (rows.b == focal)
    other = np.where(rows.a == focal, rows.b, rows.a)
    b_idx = np.where(has_focal, lut[other], -1)
    in_family = (b_idx >= 0) & (crit_idx >= 0)
    cell = np.where(in_family, b_idx * nc + crit_idx, -1)
    outcome = np.where(rows.winner == focal, WIN, np.where(rows.winner == rows.tie_code, TIE_OUTCOME, LOSS))
    sel = np.flatnonzero(in_family)
    key = cell[sel] * 3 + outcome[sel]
    counts = np.bincount(key, minlength=nb * nc * 3).reshape(nb * nc, 3)
    w, l, t = counts[:, 0], counts[:, 1], counts[:, 2]
    n, nt = w + l + t, w + l
    conf = s.confidence
    p = sign_test_pvalue(w, nt)
    p_holm = holm(p)
    fam = family_verdict(_family_arrays(rows, s, sel, cell, outcome, focal), nb * nc, s)
    tests = fam["tests"]
    cp_lo, cp_hi = clopper_pearson(w, nt, conf)
    wi_lo, wi_hi = wilson(w, nt, conf)
    wh_lo, wh_hi = wilson(w + 0.5 * t, n, conf)
    rate_ex, rate_half = _rate(w, l, t, "exclude"), _rate(w, l, t, "half")

    # Cluster bootstraps: counts per (cluster, cell, outcome), resampled by cluster.
    boot = {}
    for name, clusters, n_clusters, stream in (
        ("prompt", rows.prompt, len(rows.prompt_labels), STREAM_PROMPTS),
        ("annotator", rows.annotator, len(rows.annotator_labels), STREAM_ANNOTATORS),
    ):
        if s.bootstrap_replicates == 0:
            boot[name] = (np.full(nb * nc, np.nan), np.full(nb * nc, np.nan))
            continue
        flat = np.bincount(clusters[sel] * (nb * nc * 3) + key, minlength=n_clusters * nb * nc * 3)
        per_cluster = flat.reshape(n_clusters, nb * nc, 3)
        tot = resample_totals(per_cluster, s.bootstrap_replicates, rng_for(s.bootstrap_seed, stream))
        rates = _rate(tot[..., 0], tot[..., 1], tot[..., 2], s.tie_rule)
        boot[name] = percentile_interval(rates, conf)

    # Position: which side was chosen, and the focal objective's rate by its side.
    chosen_left = rows.choice_left[sel]
    non_tie = outcome[sel] != TIE_OUTCOME
    left_counts = np.bincount(cell[sel][chosen_left & non_tie], minlength=nb * nc)
    focal_left = rows.left[sel] == focal
    side_key = (cell[sel] * 2 + focal_left.astype(int)) * 3 + outcome[sel]
    by_side = np.bincount(side_key, minlength=nb * nc * 2 * 3).reshape(nb * nc, 2, 3)
    p_left = sign_test_pvalue(left_counts, nt)

    cells = []
    for bi, base in enumerate(s.baselines):
        for ci, crit in enumerate(s.criteria):
            k = bi * nc + ci
            headline = rate_half[k] if s.tie_rule == "half" else rate_ex[k]
            ci_head = (wh_lo[k], wh_hi[k]) if s.tie_rule == "half" else (wi_lo[k], wi_hi[k])
            side_rates = {}
            for label, j in (("focal_left", 1), ("focal_right", 0)):
                bw, bl, bt_ = by_side[k, j]
                side_rates[label] = {
                    "wins": int(bw),
                    "losses": int(bl),
                    "ties": int(bt_),
                    "rate": _rate(bw, bl, bt_, s.tie_rule)[()],
                }
            table = [[by_side[k, 1, 0], by_side[k, 1, 1]], [by_side[k, 0, 0], by_side[k, 0, 1]]]
            fisher_p = _st.fisher_exact(table).pvalue if min(np.sum(table, axis=1)) > 0 else float("nan")
            cells.append(
                {
                    "comparison": f"{s.focal} vs {base}",
                    "focal": s.focal,
                    "baseline": base,
                    "criterion": crit,
                    "wins": int(w[k]),
                    "losses": int(l[k]),
                    "ties": int(t[k]),
                    "n": int(n[k]),
                    "tie_rate": t[k] / n[k] if n[k] else None,
                    "rate": headline,
                    "rate_excl_ties": rate_ex[k],
                    "rate_ties_half": rate_half[k],
                    "ci": _interval(*ci_head),
                    "ci_exact": _interval(cp_lo[k], cp_hi[k]),
                    "ci_wilson": _interval(wi_lo[k], wi_hi[k]),
                    "ci_wilson_ties_half": _interval(wh_lo[k], wh_hi[k]),
                    "ci_bootstrap_prompt": _interval(boot["prompt"][0][k], boot["prompt"][1][k]),
                    "ci_bootstrap_annotator": _interval(boot["annotator"][0][k], boot["annotator"][1][k]),
                    "p_value": tests.p_value[k],
                    "p_holm": fam["p_holm"][k],
                    "significant": bool(fam["significant"][k]),
                    "verdict": fam["verdict"][k],
                    "fragility": fam["fragility"][k],
                    "primary": {
                        "method": tests.method[k],
                        "note": tests.note[k],
                        "votes": int(tests.n[k]),
                        "annotators": int(tests.annotators[k]),
                        "prompts": int(tests.prompts[k]),
                        "estimate": tests.estimate[k],
                        "ci": _interval(tests.ci_low[k], tests.ci_high[k]),
                        "log_odds": tests.log_odds[k],
                        "se": tests.se[k],
                        "se_independent": tests.se_naive[k],
                        "design_effect": tests.design_effect[k],
                        "t": tests.stat[k],
                        "df": int(tests.df[k]),
                    },
                    "monitoring": fam["monitoring"]["cells"][k] if fam["monitoring"] else None,
                    "p_binomial": p[k],
                    "p_binomial_holm": p_holm[k],
                    "position": {
                        "left_chosen": int(left_counts[k]),
                        "left_rate": left_counts[k] / nt[k] if nt[k] else None,
                        "left_p": p_left[k],
                        **side_rates,
                        "side_effect_p": fisher_p,
                    },
                }
            )
    return {"cells": cells, "cell": cell, "outcome": outcome, "sel": sel}


def _answer_rank(rows: _Rows, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Each vote's position within its cell in answer order (answered_at, then vote id)."""
    at = rows.column("answered_at", positions).astype(str)
    vid = rows.column("vote_id", positions).astype(str)
    # Numeric ids sort as numbers ("9" before "10"), others as text after them.
    try:  # exports have numeric vote ids: parse them at C speed
        num = vid.astype(np.int64)
    except (ValueError, OverflowError):
        num = np.array([int(v) if v.isdigit() and len(v) < 19 else -1 for v in vid], dtype=np.int64)
    _, at_rank = np.unique(at, return_inverse=True)
    _, vid_rank = np.unique(vid, return_inverse=True)
    order = np.lexsort((vid_rank, np.where(num >= 0, num, np.iinfo(np.int64).max), at_rank, cell))
    rank = np.empty(len(order), dtype=np.int64)
    starts = np.searchsorted(cell[order], cell[order], side="left")
    rank[order] = np.arange(len(order)) - starts
    return rank


def _family_arrays(rows: _Rows, s: AnalysisSettings, sel, cell, outcome, focal: int) -> dict[str, np.ndarray]:
    """The family's votes for the primary analysis, after the tie rule."""
    keep = sel if s.tie_rule == "half" else sel[outcome[sel] != TIE_OUTCOME]
    o = outcome[keep]
    arr = {
        "cell": cell[keep],
        "y": np.where(o == WIN, 1.0, np.where(o == LOSS, 0.0, 0.5)),
        "focal_left": rows.left[keep] == focal,
        "annotator": rows.annotator[keep],
        "prompt": rows.prompt[keep],
    }
    if s.monitoring is not None:
        # Looks count every vote of the cell (ties too); the rank is over all of them.
        rank_all = _answer_rank(rows, sel, cell[sel]) if len(sel) else np.zeros(0, np.int64)
        pos = np.searchsorted(sel, keep)
        arr["rank"] = rank_all[pos]
        arr["cell_votes"] = np.bincount(cell[sel], minlength=len(s.baselines) * len(s.criteria))
    return arr


def _position_overall(rows: _Rows, crit_idx: np.ndarray, settings: AnalysisSettings) -> dict[str, Any]:
    def block(mask: np.ndarray) -> dict[str, Any]:
        left = int((rows.choice_left & mask).sum())
        right = int((rows.choice_right & mask).sum())
        ties = int(mask.sum()) - left - right
        lo, hi = wilson(left, left + right, settings.confidence)
        return {
            "left": left,
            "right": right,
            "ties": ties,
            "left_rate": left / (left + right) if left + right else None,
            "ci_wilson": [lo, hi],
            "p_value": sign_test_pvalue(left, left + right),
        }

    out = {"all_criteria": block(crit_idx >= 0)}
    for ci, crit in enumerate(settings.criteria):
        out[crit] = block(crit_idx == ci)
    return out


def _objective_order(names: list[str]) -> list[str]:
    known = [o for o in OBJECTIVE_ORDER if o in names]
    return known + sorted(n for n in names if n not in OBJECTIVE_ORDER)


def _bradley_terry(rows: _Rows, crit_idx: np.ndarray, settings: AnalysisSettings) -> dict[str, Any]:
    """BT strengths of every objective seen in regular votes, per criterion, prompt-bootstrapped."""
    s = settings
    out = {}
    real = (rows.a != rows.b) & (rows.a != rows.tie_code) & (rows.b != rows.tie_code)
    for ci, crit in enumerate(s.criteria):
        m = real & (crit_idx == ci)
        a, b, win = rows.a[m], rows.b[m], rows.winner[m]
        used = np.unique(np.concatenate([a, b]))
        names = _objective_order([rows.obj_levels[c] for c in used])
        k = len(names)
        pos = np.full(len(rows.obj_levels) + 1, -1)
        for i, name in enumerate(names):
            pos[rows.obj_levels.index(name)] = i
        ia, ib = pos[a], pos[b]
        lo_i, hi_i = np.minimum(ia, ib), np.maximum(ia, ib)
        wi = pos[win]  # -1 for a tie
        outcome = np.where(wi == lo_i, 0, np.where(wi == hi_i, 1, 2))
        pair_key = lo_i * k + hi_i
        pairs_used = np.unique(pair_key)
        pairs = np.stack([pairs_used // k, pairs_used % k], axis=1) if k else np.zeros((0, 2), int)
        n_pairs = len(pairs_used)
        p_idx = np.searchsorted(pairs_used, pair_key)
        counts = np.bincount(p_idx * 3 + outcome, minlength=n_pairs * 3).reshape(n_pairs, 3)

        def fold(c):
            if s.tie_rule == "half":
                return c[..., 0] + 0.5 * c[..., 2], c[..., 1] + 0.5 * c[..., 2]
            return c[..., 0].astype(float), c[..., 1].astype(float)

        strength = bt_fit(k, pairs, *fold(counts))
        lo = hi = np.full(k, np.nan)
        failed = 0
        if s.bt_replicates and n_pairs:
            prompts = rows.prompt[m]
            n_p = len(rows.prompt_labels)
            per_prompt = np.bincount(
                prompts * (n_pairs * 3) + p_idx * 3 + outcome, minlength=n_p * n_pairs * 3
            ).reshape(n_p, n_pairs, 3)
            tot = resample_totals(per_prompt, s.bt_replicates, rng_for(s.bootstrap_seed, STREAM_BT * 10 + ci))
            reps = bt_fit(k, pairs, *fold(tot))
            failed = int(np.isnan(reps).any(axis=1).sum())
            lo, hi = percentile_interval(reps, s.confidence)
        order = np.argsort(-np.nan_to_num(strength, nan=-np.inf), kind="stable")
        rank = np.empty(k, dtype=int)
        rank[order] = np.arange(1, k + 1)
        out[crit] = {
            "objectives": [
                {"objective": names[i], "strength": strength[i], "ci": [lo[i], hi[i]], "rank": int(rank[i])}
                for i in range(k)
            ],
            "pairs": [
                {
                    "a": names[pairs[j, 0]],
                    "b": names[pairs[j, 1]],
                    "wins_a": int(counts[j, 0]),
                    "wins_b": int(counts[j, 1]),
                    "ties": int(counts[j, 2]),
                    "rate_a": _rate(counts[j, 0], counts[j, 1], counts[j, 2], s.tie_rule)[()],
                }
                for j in range(n_pairs)
            ],
            "votes": int(m.sum()),
            "scale": "log-odds, mean 0",
            "bootstrap_failed_replicates": failed,
        }
    return out


def _agreement(rows: _Rows, crit_idx: np.ndarray, settings: AnalysisSettings) -> dict[str, Any]:
    """Nominal alpha per criterion; unit = (item, criterion), value = a won / b won / tie.

    Alpha pairs values of different coders, so of an annotator's repeated votes on one unit
    (e.g. a side-swapped repeat) only the first answer counts (earliest ``answered_at``, then
    smallest ``vote_id`` as text): the result does not depend on row order.
    """
    value = np.where(rows.winner == rows.a, 0, np.where(rows.winner == rows.b, 1, 2))
    out = {}
    n_ann = len(rows.annotator_labels) + 1
    for ci, crit in enumerate(settings.criteria):
        m = np.flatnonzero(crit_idx == ci)
        key = rows.item[m].astype(np.int64) * n_ann + rows.annotator[m]
        _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
        keep = counts[inv] == 1
        dup = np.flatnonzero(~keep)
        if len(dup):
            at = rows.column("answered_at", m[dup])
            vid = rows.column("vote_id", m[dup])
            seen = set()
            for j in sorted(range(len(dup)), key=lambda j: (key[dup[j]], at[j], vid[j])):
                if key[dup[j]] not in seen:
                    seen.add(key[dup[j]])
                    keep[dup[j]] = True
        res = krippendorff_alpha_nominal(rows.item[m][keep], value[m][keep])
        lo, hi = alpha_bootstrap(rows.item[m][keep], value[m][keep], settings.bootstrap_replicates,
                                 rng_for(settings.bootstrap_seed, STREAM_ALPHA * 10 + ci), settings.confidence)
        out[crit] = {**res.to_dict(), "ci_bootstrap_items": [lo, hi]}
    return out


def _categories(rows: _Rows, pref: dict[str, Any], settings: AnalysisSettings) -> list[dict[str, Any]]:
    """Exploratory: each cell split by prompt category, with Benjamini-Hochberg adjusted p."""
    s = settings
    n_cells = len(s.baselines) * len(s.criteria)
    n_cat = len(rows.category_labels)
    sel = pref["sel"]
    if n_cat == 0:
        return []
    key = (pref["cell"][sel] * n_cat + rows.category[sel]) * 3 + pref["outcome"][sel]
    counts = np.bincount(key, minlength=n_cells * n_cat * 3).reshape(n_cells * n_cat, 3)
    w, l, t = counts[:, 0], counts[:, 1], counts[:, 2]
    n = w + l + t
    p = sign_test_pvalue(w, w + l)
    p_bh = benjamini_hochberg(p)
    if s.tie_rule == "half":
        lo, hi = wilson(w + 0.5 * t, n, s.confidence)
    else:
        lo, hi = wilson(w, w + l, s.confidence)
    rate = _rate(w, l, t, s.tie_rule)
    out = []
    for bi, base in enumerate(s.baselines):
        for ci, crit in enumerate(s.criteria):
            for gi, cat in enumerate(rows.category_labels):
                k = (bi * len(s.criteria) + ci) * n_cat + gi
                if n[k] == 0:
                    continue
                out.append(
                    {
                        "comparison": f"{s.focal} vs {base}",
                        "baseline": base,
                        "criterion": crit,
                        "category": cat or "(none)",
                        "wins": int(w[k]),
                        "losses": int(l[k]),
                        "ties": int(t[k]),
                        "rate": rate[k],
                        "ci_wilson": [lo[k], hi[k]],
                        "p_value": p[k],
                        "p_bh": p_bh[k],
                    }
                )
    return out


def _section(votes: VoteTable, mask: np.ndarray, settings: AnalysisSettings) -> dict[str, Any]:
    rows = _Rows(votes, mask)
    crit_idx = rows.criterion_index(settings.criteria)
    pref = _preference(rows, settings, crit_idx)
    return {
        "votes": rows.n,
        "annotators": len(rows.annotator_labels),
        "prompts": len(rows.prompt_labels),
        "items": int(len(np.unique(rows.item))),
        "preference": pref["cells"],
        "position_bias": _position_overall(rows, crit_idx, settings),
        "bradley_terry": _bradley_terry(rows, crit_idx, settings),
        "agreement": _agreement(rows, crit_idx, settings),
        "categories": _categories(rows, pref, settings),
        "score_agreement": score_agreement(rows, crit_idx, settings),
    }


def category_breakdown(votes: VoteTable, settings: AnalysisSettings | None = None, *, declared: bool = True) -> list:
    """Per comparison x criterion x category: wins/losses/ties, rate, Wilson CI, p and BH-adjusted p.

    Exploratory (Benjamini-Hochberg over all non-empty category cells, STUDY.md 4.4).
    """
    settings = settings or AnalysisSettings()
    mask = declared_mask(votes, settings)[0] if declared else regular_mask(votes)
    rows = _Rows(votes, mask)
    crit_idx = rows.criterion_index(settings.criteria)
    s0 = dataclasses.replace(settings, bootstrap_replicates=0)
    return clean(_categories(rows, _preference(rows, s0, crit_idx), settings))


def analyse(votes: VoteTable, settings: AnalysisSettings | None = None) -> dict[str, Any]:
    """Run the declared analysis on a vote table; returns the JSON-ready summary.

    Deterministic given ``settings.bootstrap_seed`` and independent of row order; floats are
    rounded to 6 significant digits and undefined values (no votes) are ``None``.

    Summary structure::

        schema        "studyapp.stats/1"
        settings      AnalysisSettings.to_dict() (feed back with --settings to reproduce)
        data          rows, regular_votes, attention_votes, practice_votes
        exclusions    rules; attention / side_rate: {annotators, votes} (each rule on its own);
                      fast_votes: {votes}; total: {annotators, votes, annotators_kept,
                      votes_kept} (the union); excluded_annotators: [{annotator, reasons}]
        results       "all" (every regular vote) and "declared" (exclusions applied), each:
          votes, annotators, prompts, items
          preference      one per baseline x criterion: comparison, focal, baseline,
                          criterion, wins, losses, ties, n, tie_rate, rate (headline, by the
                          tie rule), rate_excl_ties, rate_ties_half, ci (Wilson of the headline
                          rate), ci_exact and ci_wilson (non-tie rate), ci_wilson_ties_half,
                          ci_bootstrap_prompt, ci_bootstrap_annotator (headline rate,
                          percentile), p_value (the primary clustered test; None without
                          a verdict), p_holm (Holm over the cells with a test), significant
                          (p_holm <= alpha, or the monitoring decision), verdict ("for",
                          "against", "no_difference", "continue", "no_verdict"), fragility
                          (votes that, flipped, remove the verdict), primary {method, note,
                          votes, annotators, prompts, estimate, ci, log_odds, se,
                          se_independent, design_effect, t, df}, monitoring (None, or the
                          looks: status, decided_at_look/_votes, looks_done, next_look_votes,
                          next_look_boundary, ...), p_binomial and p_binomial_holm (secondary:
                          exact binomial assuming independent votes),
                          position {left_chosen, left_rate, left_p, focal_left, focal_right,
                          side_effect_p (Fisher's exact, focal rate by side)}
          position_bias   all_criteria and per criterion: left, right, ties, left_rate,
                          ci_wilson, p_value (left-choice rate vs 0.5, non-tie votes)
          bradley_terry   per criterion: objectives [{objective, strength, ci, rank}],
                          pairs [{a, b, wins_a, wins_b, ties, rate_a}], votes, scale,
                          bootstrap_failed_replicates (prompt bootstrap)
          agreement       per criterion: Krippendorff's alpha (nominal), units, values,
                          percent_agreement, ci_bootstrap_items
          score_agreement available, note, criteria: per criterion and score (itc, itm,
                          cap): agree, disagree, human_ties, score_ties, missing, rate,
                          ci_bootstrap_prompt (docs/statistics.md, section 6)
          categories      exploratory, per baseline x criterion x category: wins, losses,
                          ties, rate, ci_wilson, p_value, p_bh (Benjamini-Hochberg)

    The CLI adds ``input`` (file name, sha256, rows).
    """
    settings = settings or AnalysisSettings()
    kind = votes.factor("trial_kind")
    regular = regular_mask(votes)
    keep, report = declared_mask(votes, settings)
    summary = {
        "schema": SCHEMA,
        "settings": settings.to_dict(),
        "data": {
            "rows": len(votes),
            "regular_votes": int(regular.sum()),
            "attention_votes": int((kind.codes == kind.code_of("attention")).sum()),
            "practice_votes": int((kind.codes == kind.code_of("practice")).sum()),
        },
        "exclusions": report,
        "results": {
            "all": _section(votes, regular, settings),
            "declared": _section(votes, keep, settings),
        },
    }
    return clean(summary)
