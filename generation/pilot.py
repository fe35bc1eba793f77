"""Calibration pilot: the guidance-scale sweep's scales, its over-guidance signal and the suggestion.

A pilot renders, for each objective, a few prompts x seeds at log-spaced guidance scales with 0
(unguided) as the anchor; the noise of an image depends on (round seed, prompt, seed) only, so the
image at scale s and its anchor differ by the guidance alone.

Over-guidance signal: the *high-frequency energy ratio*, the mean squared Laplacian of the final
image's luminance divided by that of its paired unguided anchor. Why this one: strong gradient
guidance through a ViT turns into pixel-scale adversarial texture long before it changes the
layout, which raises exactly this energy; pairing with the anchor cancels what the prompt and the
noise contribute, so the ratio is scale-free across prompts and models (no threshold per
checkpoint). The final BLIP scores cannot tell: they keep improving as the texture fools BLIP. The
range excess of the unclipped x̂0 is recorded too (``x0_range_excess_late``) and shown, but it is
not used for the flag, since the paper preset's own range loss holds it down.

Suggestion per objective: among the scales > 0 whose median ratio is at most
:data:`HF_RATIO_LIMIT`, the one with the best median own-objective BLIP score (ITC: cosine, ITM:
p(match), CAP: −NLL; SHIFT and BLEND: the mean of the ITC and CAP ranks across the scales); ties
go to the smaller scale. If every guided scale is flagged, the smallest one, marked as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median
from typing import Iterable, Mapping

# Twice the pixel-scale detail of the unguided image from the same noise: more than the prompt's
# own content adds (in the toy world, guided images at good scales sit at 0.5-1x their anchor).
HF_RATIO_LIMIT = 2.0
MAX_SCALES = 12

# Which final scores make an objective's own score (higher is better after the sign).
OWN_TERMS = {"ITC": ("itc",), "ITM": ("itm",), "CAP": ("cap",), "SHIFT": ("itc", "cap"), "BLEND": ("itc", "cap")}
SIGN = {"itc": 1.0, "itm": 1.0, "cap": -1.0}


def log_spaced_scales(low: float, high: float, count: int) -> list[float]:
    """``[0, low, ..., high]``: 0 (the unguided anchor) then ``count`` log-spaced scales, 3 significant digits."""
    if not (isinstance(count, int) and 1 <= count <= MAX_SCALES - 1):
        raise ValueError(f"count must be an integer from 1 to {MAX_SCALES - 1}, got {count!r}")
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"need 0 < low <= high, got low={low!r}, high={high!r}")
    if count == 1:
        return [0.0, float(f"{low:.3g}")]
    ratio = (high / low) ** (1 / (count - 1))
    return [0.0] + [float(f"{low * ratio**k:.3g}") for k in range(count)]


def check_scales(scales: Iterable) -> list[float]:
    """Sorted, distinct, finite, >= 0, with the 0 anchor and at least one guided scale; ValueError naming the problem."""
    try:
        values = [float(s) for s in scales]
    except (TypeError, ValueError):
        raise ValueError("scales must be numbers") from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"scales must be finite and >= 0, got {values}")
    values = sorted(set(values))
    if not values or values[0] != 0.0:
        raise ValueError("scales must include 0, the unguided anchor every other scale is compared with")
    if len(values) < 2:
        raise ValueError("scales need at least one guided scale besides 0")
    if len(values) > MAX_SCALES:
        raise ValueError(f"at most {MAX_SCALES} scales, got {len(values)}")
    return values


@dataclass
class Cell:
    """One image of the sweep: its objective, scale, prompt, seed, final scores and HF energy."""

    objective: str
    scale: float
    prompt: str
    seed: int
    scores: Mapping[str, float]
    hf_energy: float
    x0_range_excess_late: float | None = None
    hf_ratio: float | None = None  # filled by analyse(): energy / the anchor's


@dataclass
class ScaleSummary:
    scale: float
    n: int
    median_scores: dict[str, float]
    median_hf_ratio: float | None
    over_guided: bool
    own_score: float | None = None

    @property
    def label(self) -> str:
        return f"{self.scale:g}"


@dataclass
class ObjectiveSummary:
    objective: str
    scales: list[ScaleSummary] = field(default_factory=list)
    suggested: float | None = None
    all_flagged: bool = False
    reason: str = ""

    @property
    def suggested_label(self) -> str:
        return "" if self.suggested is None else f"{self.suggested:g}"


def analyse(cells: list[Cell], *, limit: float = HF_RATIO_LIMIT) -> dict[str, ObjectiveSummary]:
    """Pair every cell with its anchor (same prompt and seed at scale 0), summarise and suggest."""
    anchors = {(c.prompt, c.seed): c.hf_energy for c in cells if c.scale == 0.0}
    for c in cells:
        a = anchors.get((c.prompt, c.seed))
        c.hf_ratio = None if a is None else c.hf_energy / max(a, 1e-12)
    out: dict[str, ObjectiveSummary] = {}
    for objective in dict.fromkeys(c.objective for c in cells):
        mine = [c for c in cells if c.objective == objective or c.scale == 0.0]
        summary = ObjectiveSummary(objective)
        for scale in sorted({c.scale for c in mine}):
            at = [c for c in mine if c.scale == scale and (c.objective == objective or scale == 0.0)]
            if scale == 0.0:  # the anchor is shared: one image per (prompt, seed)
                at = list({(c.prompt, c.seed): c for c in at}.values())
            ratios = [c.hf_ratio for c in at if c.hf_ratio is not None]
            med_ratio = median(ratios) if ratios else None
            summary.scales.append(ScaleSummary(
                scale, len(at), {k: median(c.scores[k] for c in at) for k in ("itc", "itm", "cap")}, med_ratio,
                over_guided=scale > 0 and med_ratio is not None and med_ratio > limit,
            ))
        _suggest(summary)
        out[objective] = summary
    return out


def _suggest(summary: ObjectiveSummary) -> None:
    terms = OWN_TERMS[summary.objective]
    guided = [s for s in summary.scales if s.scale > 0]
    if not guided:
        summary.reason = "no guided scale rendered"
        return
    # Rank of each term's median across the guided scales (1 = worst): scale-free, so ITC's cosine
    # and CAP's NLL can be averaged for SHIFT and BLEND.
    for s in guided:
        s.own_score = 0.0
    for term in terms:
        order = sorted(guided, key=lambda s: SIGN[term] * s.median_scores[term])
        for rank, s in enumerate(order, 1):
            s.own_score += rank / len(terms)
    ok = [s for s in guided if not s.over_guided]
    if not ok:
        summary.suggested, summary.all_flagged = guided[0].scale, True
        summary.reason = (f"every guided scale is over-guided (HF ratio > {HF_RATIO_LIMIT:g}); the smallest is "
                          f"suggested: sweep lower scales")
        return
    best = max(ok, key=lambda s: (s.own_score, -s.scale))
    summary.suggested = best.scale
    summary.reason = (f"best own BLIP score ({'+'.join(terms)}) among the scales with HF ratio <= {HF_RATIO_LIMIT:g}")


def suggested_generation(base: Mapping, summaries: Mapping[str, ObjectiveSummary]) -> dict:
    """``base`` (a round config's ``generation``) with each objective's suggested scale written in."""
    out = dict(base)
    for objective, s in summaries.items():
        if s.suggested is not None:
            out[f"scale_{objective.lower()}"] = s.suggested
    return out
