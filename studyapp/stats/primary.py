"""The family's verdict: the clustered test of every cell, Holm over the cells, the fragility of
each verdict, and (when declared) the group-sequential monitoring that makes looking safe.

The arrays passed in hold the votes of the family (focal vs a declared baseline, on a declared
criterion) after the tie rule: ``y`` is 1 / 0 (0.5 for a tie counted as half a win).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from studyapp.stats.binomial import holm
from studyapp.stats.clustered import CellTests, clustered_tests, group_index, side_sums, tests_from_sums
from studyapp.stats.config import AnalysisSettings
from studyapp.stats.sequential import boundaries

FOR, AGAINST, NO_DIFFERENCE, CONTINUE, NO_VERDICT = "for", "against", "no_difference", "continue", "no_verdict"


def _tests(arr: dict, mask: np.ndarray | None, n_cells: int, s: AnalysisSettings, index: dict | None = None) -> CellTests:
    if mask is None:
        return clustered_tests(arr["cell"], arr["y"], arr["focal_left"], arr["annotator"], arr["prompt"], n_cells,
                               confidence=s.confidence, min_clusters=s.min_clusters, groups_index=index)
    sub = {k: (inv[mask], gcell) for k, (inv, gcell) in index.items()} if index is not None else None
    return clustered_tests(arr["cell"][mask], arr["y"][mask], arr["focal_left"][mask], arr["annotator"][mask],
                           arr["prompt"][mask], n_cells, confidence=s.confidence, min_clusters=s.min_clusters,
                           groups_index=sub)


def _holm_rejects(p: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    adj = holm(p)
    return adj, np.where(np.isnan(adj), False, adj <= alpha)


def fragility(arr: dict, n_cells: int, s: AnalysisSettings, tests: CellTests, reject: np.ndarray) -> list:
    """For each rejected cell: the fewest votes that, flipped from the verdict's side to the other,
    make the cell's Holm-adjusted p exceed alpha (or turn its estimate to the other side); None
    elsewhere.

    Votes are flipped in one fixed order (annotator, then prompt, then side: codes sorted by
    label, so the answer does not depend on row order); votes alike in all three are
    interchangeable in the model. Other orders could need fewer flips, so this is an upper
    bound on the exact minimum, found by bisection (the p-value grows with each flip)."""
    out: list[int | None] = [None] * n_cells
    base_p = tests.p_value.copy()
    for k in np.flatnonzero(reject):
        favour = 1.0 if tests.log_odds[k] > 0 else 0.0
        in_cell = np.flatnonzero(arr["cell"] == k)
        y, left = arr["y"][in_cell], arr["focal_left"][in_cell]
        ann, prompt = arr["annotator"][in_cell], arr["prompt"][in_cell]
        zeros = np.zeros(len(in_cell), dtype=np.int64)
        index = group_index(zeros, ann, prompt, 1)
        base = side_sums(index, left, y)
        idx = np.flatnonzero(y == favour)
        idx = idx[np.lexsort((left[idx], prompt[idx], ann[idx]))]
        step = (1.0 - favour) - favour  # change of y per flipped vote

        def removed(m: int) -> bool:
            # Flipping changes only the outcome sums of the flipped votes' groups.
            f = idx[:m]
            fl = left[f]
            sums = {}
            for name, (gcell, nl, nr, yl, yr) in base.items():
                inv = index[name][0][f]
                sums[name] = (gcell, nl, nr,
                              yl + step * np.bincount(inv[fl], minlength=len(gcell)),
                              yr + step * np.bincount(inv[~fl], minlength=len(gcell)))
            t = tests_from_sums(sums, 1, confidence=s.confidence, min_clusters=s.min_clusters)
            p = base_p.copy()
            p[k] = t.p_value[0]
            adj = holm(p)[k]
            same_side = (t.log_odds[0] > 0) == (favour == 1.0)
            return bool(np.isnan(adj) or adj > s.alpha or not same_side)

        # Flipping past the balance point would make the opposite verdict: search up to it.
        other = int(np.sum(y == 1.0 - favour))
        lo, hi = 0, min(len(idx), (len(idx) - other) // 2 + 1)  # removed(lo) is False
        if not removed(hi):
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if removed(mid):
                hi = mid
            else:
                lo = mid
        out[k] = hi
    return out


def monitor(arr: dict, n_cells: int, s: AnalysisSettings, index: dict | None = None) -> dict[str, Any]:
    """Replay the declared looks on the votes in answer order (``arr["rank"]``: the vote's position
    within its cell). Holm-wise alpha with recycling (Maurer & Bretz 2013): each open cell is
    tested at level alpha / (open cells); after a decision the others are re-tested, at every
    look they have reached, at the larger level."""
    m = s.monitoring
    fractions = m.fractions()
    look_n = m.look_votes()
    # Looks count every vote of the cell, ties too (the tie rule may have dropped them from arr).
    cell_n = arr["cell_votes"] if "cell_votes" in arr else np.bincount(arr["cell"], minlength=n_cells)
    reached = [sum(1 for n_k in look_n if cell_n[c] >= n_k) for c in range(n_cells)]
    z = np.full((n_cells, m.looks), np.nan)
    if index is None:  # who voted on what: the same for every look
        index = group_index(arr["cell"], arr["annotator"], arr["prompt"], n_cells)
    looks = []
    for k, n_k in enumerate(look_n):
        if not any(r > k for r in reached):
            break
        t = _tests(arr, arr["rank"] < n_k, n_cells, s, index)
        zk = t.z_equivalent()
        for c in range(n_cells):
            if reached[c] > k:
                z[c, k] = zk[c]
    open_cells = set(range(n_cells))
    decided_at = [None] * n_cells
    changed = True
    while changed and open_cells:
        changed = False
        level = s.alpha / len(open_cells)
        b = boundaries(fractions, level)
        for c in sorted(open_cells):
            hit = [k for k in range(reached[c]) if not np.isnan(z[c, k]) and abs(z[c, k]) >= b[k]]
            if hit:
                decided_at[c] = hit[0]
                open_cells.discard(c)
                changed = True
                break  # recompute the level before testing the next cell
    level = s.alpha / max(len(open_cells), 1)
    b_now = boundaries(fractions, level)
    for c in range(n_cells):
        k_last = reached[c] - 1
        if decided_at[c] is not None:
            k = decided_at[c]
            status = FOR if z[c, k] > 0 else AGAINST
        elif reached[c] == m.looks:
            status = NO_DIFFERENCE
        else:
            status = CONTINUE
        looks.append(
            {
                "status": status,
                "decided_at_look": None if decided_at[c] is None else decided_at[c] + 1,
                "decided_at_votes": None if decided_at[c] is None else look_n[decided_at[c]],
                "looks_done": reached[c],
                "looks": m.looks,
                "last_look_z": None if k_last < 0 else z[c, k_last],
                "last_look_boundary": None if k_last < 0 else b_now[k_last],
                "next_look_votes": look_n[reached[c]] if reached[c] < m.looks and decided_at[c] is None else None,
                "next_look_boundary": b_now[reached[c]] if reached[c] < m.looks and decided_at[c] is None else None,
                "planned_votes": m.planned_votes,
            }
        )
    return {"cells": looks, "alpha_level_open": level}


def family_verdict(arr: dict, n_cells: int, s: AnalysisSettings, *, with_fragility: bool = True) -> dict[str, Any]:
    """Tests, Holm, verdicts, fragility and (declared) monitoring of every cell."""
    index = group_index(arr["cell"], arr["annotator"], arr["prompt"], n_cells)
    tests = _tests(arr, None, n_cells, s, index)
    p_adj, reject = _holm_rejects(tests.p_value, s.alpha)
    mon = monitor(arr, n_cells, s, index) if s.monitoring is not None else None
    if mon is not None:
        decided = np.array([c["status"] in (FOR, AGAINST) for c in mon["cells"]])
        verdict = [c["status"] for c in mon["cells"]]
    else:
        decided = reject
        verdict = []
        for k in range(n_cells):
            if np.isnan(tests.p_value[k]):
                verdict.append(NO_VERDICT)
            elif reject[k]:
                verdict.append(FOR if tests.log_odds[k] > 0 else AGAINST)
            else:
                verdict.append(NO_DIFFERENCE)
    frag = fragility(arr, n_cells, s, tests, reject) if with_fragility and reject.any() else [None] * n_cells
    # Fragility is that of the fixed-size verdict; a cell the monitoring rule has not decided has none.
    frag = [f if decided[k] else None for k, f in enumerate(frag)]
    return {"tests": tests, "p_holm": p_adj, "significant": decided, "verdict": verdict, "fragility": frag,
            "monitoring": mon}
