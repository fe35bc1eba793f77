"""The five guidance objectives as weighted sums of per-sample BLIP losses (lower is better).

- ITC: ``-cos`` of projected image/text features (or ``-cos / temp``);
- ITM: ``-log p(match)`` of the ITM head;
- CAP: the decoder's mean NLL of the prompt tokens given the image;
- SHIFT: ``t * L_ITC + (1 - t) * L_CAP``, ``t = k / (N - 1)`` with ``k`` the sampling step counted
  from the noisiest (pure CAP first, pure ITC last);
- BLEND: ``w_itc * L_ITC + w_cap * L_CAP``, constant.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generation.spec import OBJECTIVES

TERMS = ("itc", "itm", "cap")


def shift_progress(step: int, num_steps: int) -> float:
    """``t = k / (N - 1)``: 0 at the first (noisiest) step, 1 at the last; 1 when N == 1."""
    if not 0 <= step < num_steps:
        raise ValueError(f"step {step} outside 0..{num_steps - 1}")
    return 1.0 if num_steps == 1 else step / (num_steps - 1)


def term_weights(objective: str, *, step: int, num_steps: int, blend_itc: float = 0.5, blend_cap: float = 0.5) -> dict[str, float]:
    """Weights of the loss terms at sampling step ``step`` (0 = noisiest); zero weights are left out."""
    if objective == "ITC":
        w = {"itc": 1.0}
    elif objective == "ITM":
        w = {"itm": 1.0}
    elif objective == "CAP":
        w = {"cap": 1.0}
    elif objective == "SHIFT":
        t = shift_progress(step, num_steps)
        w = {"itc": t, "cap": 1.0 - t}
    elif objective == "BLEND":
        w = {"itc": blend_itc, "cap": blend_cap}
    else:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    return {k: v for k, v in w.items() if v != 0.0}


def blip_losses(scorer, image_embeds: Tensor, text, terms, *, itc_loss: str = "cos", label_smoothing: float = 0.0) -> dict[str, Tensor]:
    """Per-sample losses ``{term: (B,)}`` for the requested ``terms`` from shared ViT tokens.

    Parameters
    ----------
    scorer: a ``BlipScorer``.
    image_embeds: ``(B, 1 + P, D)`` ViT tokens (computed once, shared by all heads).
    text: the ``TextBatch`` of the prompts (one per image, or one broadcast).
    terms: subset of ``("itc", "itm", "cap")``.
    itc_loss: ``"cos"`` (−cosine) or ``"cos_temp"`` (−cosine / temp, BLIP's training logit).
    """
    out = {}
    if "itc" in terms:
        sim = scorer.itc(image_embeds=image_embeds, text=text)
        if itc_loss == "cos_temp":
            # Clamped as in BLIP training; temp is a learned scalar of the checkpoint.
            sim = sim / scorer.temp.clamp(0.001, 0.5)
        out["itc"] = -sim
    if "itm" in terms:
        out["itm"] = -scorer.itm(image_embeds=image_embeds, text=text)
    if "cap" in terms:
        out["cap"] = scorer.cap(image_embeds=image_embeds, text=text, label_smoothing=label_smoothing)
    unknown = set(terms) - set(TERMS)
    if unknown:
        raise ValueError(f"unknown loss term(s) {sorted(unknown)}; choose from {TERMS}")
    return out


@torch.no_grad()
def final_scores(scorer, images: Tensor, text) -> dict[str, Tensor]:
    """Scores of finished images, reported per image: ``itc`` cosine, ``itm`` p(match), ``cap`` NLL (no smoothing)."""
    emb = scorer.image_embeds(images)
    return {
        "itc": scorer.itc(image_embeds=emb, text=text).float(),
        "itm": scorer.itm(image_embeds=emb, text=text).float().exp(),
        "cap": scorer.cap(image_embeds=emb, text=text, label_smoothing=0.0).float(),
    }
