"""The pilot's scales, over-guidance signal and suggestion; in the toy world the suggestion is
checked against the oracle's own measurement of the best scale range."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from generation.pilot import HF_RATIO_LIMIT, Cell, analyse, check_scales, log_spaced_scales, suggested_generation
from generation.pipeline import high_frequency_energy


def test_log_spaced_scales_start_at_the_unguided_anchor():
    assert log_spaced_scales(0.01, 10, 4) == [0.0, 0.01, 0.1, 1.0, 10.0]
    assert log_spaced_scales(0.03, 0.03, 1) == [0.0, 0.03]
    for bad in ((0, 1, 3), (1, 0.5, 3), (0.1, 1, 0), (0.1, 1, 12), (float("nan"), 1, 2)):
        with pytest.raises(ValueError):
            log_spaced_scales(*bad)


@pytest.mark.parametrize("scales, message", [([0.1, 1], "must include 0"), ([0], "at least one guided"),
                                              ([0, -1], ">= 0"), ([0, float("inf")], "finite"), (["x"], "numbers"),
                                              ([0] + list(range(1, 13)), "at most 12")])
def test_check_scales_refuses(scales, message):
    with pytest.raises(ValueError, match=message):
        check_scales(scales)


def test_check_scales_sorts_and_dedupes():
    assert check_scales([1, 0, 0.1, 1]) == [0.0, 0.1, 1.0]


def test_high_frequency_energy_is_zero_for_flat_and_grows_with_texture():
    flat = np.full((16, 16, 3), 128, np.uint8)
    checker = ((np.indices((16, 16)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    assert high_frequency_energy(flat) == 0.0
    # Interior Laplacian of a 0/1 checkerboard is ±4 everywhere: energy 16.
    assert high_frequency_energy(checker) == pytest.approx(16.0)


def cell(objective, scale, prompt, seed, hf, itc=0.2, itm=0.5, cap=2.0):
    return Cell(objective, scale, prompt, seed, {"itc": itc, "itm": itm, "cap": cap}, hf)


def test_ratio_threshold_at_below_and_above():
    """The flag fires strictly above HF_RATIO_LIMIT: at it and just below it, not flagged."""
    for ratio, flagged in ((HF_RATIO_LIMIT, False), (HF_RATIO_LIMIT - 1e-9, False), (HF_RATIO_LIMIT + 1e-9, True)):
        cells = [cell("ITC", 0.0, "p", 0, 1.0), cell("ITC", 1.0, "p", 0, ratio)]
        (s,) = [x for x in analyse(cells)["ITC"].scales if x.scale == 1.0]
        assert s.over_guided is flagged and s.median_hf_ratio == pytest.approx(ratio)


def test_suggestion_is_the_best_unflagged_scale_per_objective():
    cells = []
    for p in ("a", "b"):
        cells += [cell("ITC", 0.0, p, 0, 1.0, itc=0.1, cap=3.0), cell("CAP", 0.0, p, 0, 1.0, itc=0.1, cap=3.0)]
        # ITC: 0.1 good, 1.0 better score but over-guided texture.
        cells += [cell("ITC", 0.1, p, 0, 1.5, itc=0.3), cell("ITC", 1.0, p, 0, 9.0, itc=0.5)]
        # CAP: lower NLL is better; 1.0 fine.
        cells += [cell("CAP", 0.1, p, 0, 0.8, cap=2.0), cell("CAP", 1.0, p, 0, 1.9, cap=1.5)]
    out = analyse(cells)
    assert out["ITC"].suggested == 0.1 and out["CAP"].suggested == 1.0
    assert [s.over_guided for s in out["ITC"].scales] == [False, False, True]
    gen = suggested_generation({"preset": "toy", "scale_itc": 5.0}, out)
    assert gen == {"preset": "toy", "scale_itc": 0.1, "scale_cap": 1.0}


def test_every_scale_flagged_suggests_the_smallest_and_says_so():
    cells = [cell("ITM", 0.0, "p", 0, 1.0), cell("ITM", 0.3, "p", 0, 5.0, itm=0.9), cell("ITM", 1.0, "p", 0, 7.0, itm=0.95)]
    s = analyse(cells)["ITM"]
    assert s.suggested == 0.3 and s.all_flagged and "sweep lower" in s.reason


def test_shift_own_score_uses_itc_and_cap_ranks():
    """SHIFT: scale 0.1 is best on ITC, 1.0 best on CAP, 0.3 second on both: 0.3 wins on mean rank."""
    cells = [cell("SHIFT", 0.0, "p", 0, 1.0)]
    for scale, itc, cap in ((0.1, 0.5, 2.0), (0.3, 0.45, 1.6), (1.0, 0.2, 1.5)):
        cells.append(cell("SHIFT", scale, "p", 0, 1.0, itc=itc, cap=cap))
    # Ranks (1 worst): ITC 0.1->3, 0.3->2, 1.0->1; CAP 0.1->1, 0.3->2, 1.0->3: all mean 2, tie -> smaller scale.
    assert analyse(cells)["SHIFT"].suggested == 0.1
    cells[2] = cell("SHIFT", 0.3, "p", 0, 1.0, itc=0.55, cap=1.6)  # now best on ITC too
    assert analyse(cells)["SHIFT"].suggested == 0.3


# -- the toy world: does the suggestion land where the oracle measures the best scales? --------

TOY_SCALES = [0.0, 0.03, 0.1, 0.3, 1.0]


PLATEAU = pytest.mark.xfail(strict=True, reason=(
    "known limitation: with self-recurrence 3 ITC's cosine plateaus (median 0.4997 at 0.3, 0.5013 at 1.0) "
    "and no texture appears (HF ratio 0.72), so the pilot takes 1.0 on a difference far inside the noise "
    "while the oracle's alignment x realism falls from 0.556 to 0.341 (the named colour floods the image); "
    "a rule that prefers the smaller scale within the noise (one standard error) is the fix to make"))


@pytest.mark.slow
@pytest.mark.parametrize("objective,recurrence", [("ITC", 1), ("CAP", 3), pytest.param("ITC", 3, marks=PLATEAU)])
def test_toy_pilot_suggestion_is_in_the_oracles_best_range(objective, recurrence):
    """The oracle's best range: guided scales whose mean alignment x realism (per image, paired) is
    within two paired standard errors of the best scale's. The pilot never sees the oracle. The toy
    preset samples with self-recurrence 3; 1 is the plain sampler the pilot was first checked with."""
    import torch

    from generation.pipeline import load_models, render_batch
    from generation.presets import spec_from_config
    from generation.toyworld.oracle import load_oracle

    torch.set_num_threads(1)
    tsv = Path(__file__).resolve().parents[2] / "generation" / "toyworld" / "toyworld_prompts.tsv"
    prompts = [r["prompt"] for r in csv.DictReader(tsv.open(), delimiter="\t")][::3][:6]
    seeds = [0, 1, 2]
    P, S = [p for p in prompts for _ in seeds], [s for _ in prompts for s in seeds]
    models = load_models(spec_from_config({"preset": "toy"}), weights_dir=None, device="cpu")
    oracle = load_oracle()
    cells, quality = [], {}
    for scale in TOY_SCALES:
        spec = spec_from_config({"preset": "toy", f"scale_{objective.lower()}": scale, "recurrence": recurrence})
        results = render_batch(models, spec, objective=objective, prompts=P, seeds=S)
        images = np.stack([r.image for r in results])
        quality[scale] = oracle.alignment(images, P) * oracle.realism(images)
        cells += [Cell(objective, scale, p, s, r.scores, r.provenance["diagnostics"]["high_frequency_energy"])
                  for p, s, r in zip(P, S, results)]
    suggested = analyse(cells)[objective].suggested
    guided = [s for s in TOY_SCALES if s > 0]
    best = max(guided, key=lambda s: quality[s].mean())
    best_range = []
    for s in guided:
        diff = quality[best] - quality[s]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if s != best else 0.0
        if diff.mean() <= 2 * se:
            best_range.append(s)
    summary = {s: round(float(quality[s].mean()), 3) for s in TOY_SCALES}
    assert suggested in best_range, f"suggested {suggested}, oracle's best range {best_range}, alignment x realism {summary}"
