"""Validation of the verdict by simulation (issue 12; run on demand, not part of the suite).

    nice -n 10 .venv/bin/python tests/benchmarks/validate_inference.py [--studies 1000] [--scenario NAME]

Each study: 3 baselines x 2 criteria, ``--votes`` votes per cell (300), 30 annotators, 50 prompts
(``simulate_votes``). For every scenario it prints one JSON line with, for the reported verdict
(the clustered primary test + Holm, ``studyapp.stats.primary.family_verdict``, the function
``analyse`` calls) and for the naive method (exact binomial on pooled votes + Holm, the old
verdict): the family-wise false-positive rate (null scenarios) or the power (any / every cell
decided for SHIFT), each with a 95% Wilson Monte Carlo interval; then the same with monitoring
(a look after every 5% of the planned votes, Lan-DeMets O'Brien-Fleming, Holm with recycling),
and its mean number of votes per cell to a decision against the fixed size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from studyapp.stats import AnalysisSettings, simulate_votes  # noqa: E402
from studyapp.stats.binomial import holm, sign_test_pvalue, wilson  # noqa: E402
from studyapp.stats.config import Monitoring  # noqa: E402
from studyapp.stats.primary import FOR, family_verdict  # noqa: E402

SCENARIOS = {
    "homogeneous": {"preference": 0.5},
    "annotator_spread": {"preference": 0.5, "annotator_beta": 5},
    "prompt_spread": {"preference": 0.5, "prompt_beta": 5},
    "both_beta55": {"preference": 0.5, "annotator_beta": 5, "prompt_beta": 5},
    "both_beta33": {"preference": 0.5, "annotator_beta": 3, "prompt_beta": 3},
    "left_bias": {"preference": 0.5, "annotator_beta": 5, "prompt_beta": 5, "side_bias": 0.4},
    "shift_060": {"preference": 0.6, "annotator_beta": 5, "prompt_beta": 5},
    "shift_065": {"preference": 0.65, "annotator_beta": 5, "prompt_beta": 5},
}


def study_arrays(votes_per_cell: int, seed: int, **kw) -> tuple[dict, int]:
    """The family's votes of one simulated study, in answer (trial) order."""
    t = simulate_votes(trials_per_baseline=votes_per_cell, n_prompts=50, n_annotators=30, seed=seed, **kw)
    f = t.factor
    a, left, winner = f("objective_a").codes, f("left_objective").codes, f("winner").codes
    base = f("objective_b").codes - 1  # simulate_votes codes: focal 0, baselines 1..nb
    crit = f("criterion").codes
    cell = base * 2 + crit
    y = (winner == a).astype(float)
    rank = np.empty(len(cell), dtype=np.int64)
    for c in range(6):
        idx = np.flatnonzero(cell == c)
        rank[idx] = np.arange(len(idx))
    return {
        "cell": cell.astype(np.int64),
        "y": y,
        "focal_left": left == a,
        "annotator": f("annotator").codes.astype(np.int64),
        "prompt": f("prompt_id").codes.astype(np.int64),
        "rank": rank,
    }, 6


def naive_rejects(arr: dict, n_cells: int) -> np.ndarray:
    w = np.bincount(arr["cell"], weights=arr["y"], minlength=n_cells)
    n = np.bincount(arr["cell"], minlength=n_cells)
    p = holm(sign_test_pvalue(w, n))
    return p <= 0.05, w > n / 2


def run_scenario(name: str, studies: int, votes: int, seed0: int = 0) -> dict:
    kw = SCENARIOS[name]
    null = kw["preference"] == 0.5
    fixed = AnalysisSettings(bootstrap_replicates=0, bt_replicates=0)
    mon = AnalysisSettings(bootstrap_replicates=0, bt_replicates=0, monitoring=Monitoring(planned_votes=votes, looks=20))
    counts = {k: 0 for k in ("fixed_any", "fixed_all", "naive_any", "naive_all", "mon_any", "mon_all")}
    votes_used = []
    t0 = time.perf_counter()
    for i in range(studies):
        arr, nc = study_arrays(votes, seed0 + i, **kw)
        fv = family_verdict(arr, nc, fixed, with_fragility=False)
        fr = np.array(fv["significant"])
        fpos = np.array([v == FOR for v in fv["verdict"]])
        nr, nfor = naive_rejects(arr, nc)
        mv = family_verdict(arr, nc, mon, with_fragility=False)
        mcells = mv["monitoring"]["cells"]
        mr = np.array([c["status"] in ("for", "against") for c in mcells])
        mfor = np.array([c["status"] == "for" for c in mcells])
        votes_used.append(np.mean([c["decided_at_votes"] or votes for c in mcells]))
        if null:
            counts["fixed_any"] += fr.any()
            counts["naive_any"] += nr.any()
            counts["mon_any"] += mr.any()
        else:
            counts["fixed_any"] += fpos.any()
            counts["fixed_all"] += fpos.all()
            counts["naive_any"] += (nr & nfor).any()
            counts["naive_all"] += (nr & nfor).all()
            counts["mon_any"] += mfor.any()
            counts["mon_all"] += mfor.all()

    def rate(k):
        lo, hi = wilson(counts[k], studies)
        return {"rate": counts[k] / studies, "mc95": [round(float(lo), 4), round(float(hi), 4)]}

    out = {"scenario": name, "studies": studies, "votes_per_cell": votes, **{k: v for k, v in kw.items()}}
    if null:
        out.update(fwer_primary=rate("fixed_any"), fwer_naive=rate("naive_any"), fwer_monitored=rate("mon_any"))
    else:
        out.update(
            power_any_primary=rate("fixed_any"), power_all_primary=rate("fixed_all"),
            power_any_naive=rate("naive_any"), power_all_naive=rate("naive_all"),
            power_any_monitored=rate("mon_any"), power_all_monitored=rate("mon_all"),
        )
    out["monitored_mean_votes_per_cell"] = round(float(np.mean(votes_used)), 1)
    out["fixed_votes_per_cell"] = votes
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=1000)
    ap.add_argument("--votes", type=int, default=300, help="votes per cell (the planned size)")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    for name in args.scenario or list(SCENARIOS):
        print(json.dumps(run_scenario(name, args.studies, args.votes)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
