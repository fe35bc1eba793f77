"""Simulated studies: vote tables drawn from a logistic model with annotator and prompt effects.

Used by the tests (power and size of the whole pipeline, STUDY.md 4.8 "check the whole pipeline
by simulation"), the benchmark, and for planning. Each regular trial shows the focal objective
against one baseline and is answered on every criterion::

    logit P(focal wins | not a tie) = logit(p[baseline, criterion]) + u_annotator + v_prompt
                                      + side_bias * (+1 if focal on the left else -1)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from studyapp.stats.table import CRITERIA, FACTOR_COLUMNS, OBJECTIVE_COLUMNS, Factor, VoteTable


def simulate_votes(
    *,
    trials_per_baseline: int = 150,
    n_prompts: int = 50,
    n_annotators: int = 30,
    preference: float | Mapping[tuple[str, str], float] = 0.6,
    focal: str = "SHIFT",
    baselines: tuple[str, ...] = ("ITC", "CAP", "BLEND"),
    criteria: tuple[str, ...] = CRITERIA,
    tie_rate: float = 0.0,
    annotator_sd: float = 0.0,
    prompt_sd: float = 0.0,
    annotator_beta: float = 0.0,
    prompt_beta: float = 0.0,
    side_bias: float = 0.0,
    attention_per_annotator: int = 0,
    careless_annotators: int = 0,
    n_categories: int = 0,
    seed: int = 0,
) -> VoteTable:
    """A simulated round. ``preference`` is the true focal win share among non-tie votes, one
    number or ``{(baseline, criterion): p}``. Careless annotators (the last ones) choose sides at
    random, answer fast, and fail attention checks half of the time.

    ``annotator_beta`` / ``prompt_beta`` (> 0) draw each annotator's / prompt's tendency as
    ``logit(Beta(a, a))`` instead of a normal with ``*_sd`` (a Beta(5, 5) spread on the
    probability scale, as in issue 12)."""
    rng = np.random.default_rng(seed)
    nb, nc = len(baselines), len(criteria)
    n_trials = trials_per_baseline * nb
    base = np.repeat(np.arange(nb), trials_per_baseline)
    prompt = rng.integers(0, n_prompts, n_trials)
    annot = rng.integers(0, n_annotators, n_trials)
    focal_left = rng.random(n_trials) < 0.5
    u = rng.normal(0, annotator_sd, n_annotators) if annotator_sd else np.zeros(n_annotators)
    v = rng.normal(0, prompt_sd, n_prompts) if prompt_sd else np.zeros(n_prompts)
    if annotator_beta:
        q = rng.beta(annotator_beta, annotator_beta, n_annotators)
        u = np.log(q) - np.log1p(-q)
    if prompt_beta:
        q = rng.beta(prompt_beta, prompt_beta, n_prompts)
        v = np.log(q) - np.log1p(-q)
    careless = np.zeros(n_annotators, dtype=bool)
    if careless_annotators:
        careless[n_annotators - careless_annotators :] = True

    p_cell = np.empty((nb, nc))
    for bi, b in enumerate(baselines):
        for ci, c in enumerate(criteria):
            p_cell[bi, ci] = preference[(b, c)] if isinstance(preference, Mapping) else preference
    # Rows: trial-major, one per criterion.
    t_idx = np.repeat(np.arange(n_trials), nc)
    c_idx = np.tile(np.arange(nc), n_trials)
    n = len(t_idx)
    logit = (
        np.log(p_cell[base[t_idx], c_idx] / (1 - p_cell[base[t_idx], c_idx]))
        + u[annot[t_idx]]
        + v[prompt[t_idx]]
        + side_bias * np.where(focal_left[t_idx], 1.0, -1.0)
    )
    focal_wins = rng.random(n) < 1 / (1 + np.exp(-logit))
    tie = rng.random(n) < tie_rate
    sloppy = careless[annot[t_idx]]
    # Careless annotators click the left button at random, regardless of content.
    random_left = rng.random(n) < 0.5
    chose_left = np.where(sloppy, random_left, focal_wins == focal_left[t_idx])
    tie &= ~sloppy

    obj = [focal, *baselines, "tie", "GOLD", "DECOY"]
    f_code, tie_code = 0, nb + 1
    b_code = 1 + base[t_idx]
    left = np.where(focal_left[t_idx], f_code, b_code)
    right = np.where(focal_left[t_idx], b_code, f_code)
    winner = np.where(tie, tie_code, np.where(chose_left, left, right))
    choice = np.where(tie, 2, np.where(chose_left, 0, 1))
    # Attentive annotators never answer under a second; careless ones always do.
    resp = np.maximum(rng.lognormal(np.log(3000), 0.5, n), 1000).astype(np.int64)
    resp = np.where(sloppy, rng.integers(200, 700, n), resp)

    cols = {
        "annotator": annot[t_idx],
        "prompt_id": prompt[t_idx],
        "item_id": prompt[t_idx] * nb + base[t_idx],
        "trial_id": t_idx,
        "trial_kind": np.zeros(n, np.int64),
        "criterion": c_idx,
        "objective_a": np.full(n, f_code),
        "objective_b": b_code,
        "left_objective": left,
        "right_objective": right,
        "winner": winner,
        "choice": choice,
        "expected": np.zeros(n, np.int64),
        "response_ms": resp,
    }
    if attention_per_annotator:
        m = n_annotators * attention_per_annotator
        a_ann = np.repeat(np.arange(n_annotators), attention_per_annotator)
        gold_left = rng.random(m) < 0.5
        correct = np.where(careless[a_ann], rng.random(m) < 0.5, rng.random(m) < 0.98)
        a_left = np.where(gold_left, nb + 2, nb + 3)
        a_right = np.where(gold_left, nb + 3, nb + 2)
        a_choice_left = correct == gold_left
        extra = {
            "annotator": a_ann,
            "prompt_id": rng.integers(0, n_prompts, m),
            "item_id": np.full(m, n_prompts * nb),
            "trial_id": n_trials + np.arange(m),
            "trial_kind": np.ones(m, np.int64),
            "criterion": np.zeros(m, np.int64),
            "objective_a": np.full(m, nb + 2),
            "objective_b": np.full(m, nb + 3),
            "left_objective": a_left,
            "right_objective": a_right,
            "winner": np.where(a_choice_left, a_left, a_right),
            "choice": np.where(a_choice_left, 0, 1),
            "expected": np.where(gold_left, 1, 2),
            "response_ms": np.maximum(rng.lognormal(np.log(3000), 0.5, m), 1000).astype(np.int64),
        }
        cols = {k: np.concatenate([cols[k], extra[k]]) for k in cols}
        n += m

    levels = {
        "annotator": tuple(f"ann{i:05d}" for i in range(n_annotators)),
        "prompt_id": tuple(f"p{i:05d}" for i in range(n_prompts)),
        "item_id": tuple(f"item{i:06d}" for i in range(n_prompts * nb + 1)),
        "trial_id": tuple(str(i) for i in range(int(cols["trial_id"].max()) + 1)) if n else (),
        "trial_kind": ("regular", "attention", "practice"),
        "criterion": tuple(criteria),
        "choice": ("left", "right", "tie"),
        "expected": ("", "left", "right"),
    }
    out: dict[str, np.ndarray | Factor] = {}
    for c in OBJECTIVE_COLUMNS:
        out[c] = Factor(cols[c].astype(np.int32), tuple(obj))
    for c, lv in levels.items():
        out[c] = Factor(cols[c].astype(np.int32), lv)
    out["round_id"] = Factor(np.zeros(n, np.int32), ("1",))
    cats = tuple(f"cat{i}" for i in range(n_categories)) if n_categories else ("",)
    out["category"] = Factor((cols["prompt_id"] % len(cats)).astype(np.int32), cats)
    assert set(FACTOR_COLUMNS) <= set(out)
    ids = np.arange(n)
    out["vote_id"] = ids.astype(str).astype(object)
    out["prompt"] = np.asarray(levels["prompt_id"], dtype=object)[cols["prompt_id"]]
    out["answered_at"] = np.full(n, "2026-01-01T00:00:00+00:00", dtype=object)
    out["seed"] = np.zeros(n, np.int64)
    out["response_ms"] = cols["response_ms"]
    return VoteTable(out, n)
