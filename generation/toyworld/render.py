"""Render toy-world images per condition with paired noise, and sampling trajectories.

Guided conditions go through :func:`generation.pipeline.render_batch` (the platform's own code
path). ``"NONE"`` is the unguided sampler with the *same* per-image noise streams
(:func:`generation.pipeline.noise_seed` of round seed, prompt, seed), so an unguided image and
its guided counterparts differ only by the guidance.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from generation.diffusion import Diffusion
from generation.guidance import Guide
from generation.images import to_uint8
from generation.sampling import per_image_noise, sample
from generation.spec import OBJECTIVES, GenerationSpec

UNGUIDED = "NONE"
CONDITIONS = (UNGUIDED, *OBJECTIVES)


def _noise(models, prompts, seeds, round_seed):
    from generation.pipeline import noise_seed

    gens = [torch.Generator().manual_seed(noise_seed(round_seed, p, s)) for p, s in zip(prompts, seeds)]
    size = models.unet.config.image_size
    shape = (models.unet.config.in_channels, size, size)
    return gens, shape


def render_unguided(models, spec: GenerationSpec, prompts: list[str], seeds: list[int], round_seed: int = 0) -> np.ndarray:
    """``uint8 (N, H, W, 3)``: the sampler without guidance, noise paired with ``render_batch``."""
    from generation.pipeline import make_denoiser

    diffusion = Diffusion(spec.respacing)
    denoiser = make_denoiser(models.unet, spec.precision)
    out = []
    for start in range(0, len(prompts), spec.batch_size):
        p, s = prompts[start: start + spec.batch_size], seeds[start: start + spec.batch_size]
        gens, shape = _noise(models, p, s, round_seed)
        x_T = per_image_noise(gens, shape, models.device)
        x = sample(diffusion, denoiser, x_T, noise_fn=lambda: per_image_noise(gens, shape, models.device),
                   sampler=spec.sampler, eta=spec.eta, clip_denoised=spec.clip_denoised, guide=None)
        out.append(to_uint8(x))
    return np.concatenate(out)


def render_condition(models, spec: GenerationSpec, condition: str, prompts: list[str], seeds: list[int],
                     round_seed: int = 0, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``uint8 (N, H, W, 3)`` of one condition (an objective, or ``"NONE"``)."""
    if condition == UNGUIDED:
        return render_unguided(models, spec, prompts, seeds, round_seed)
    from generation.pipeline import render_batch

    results = render_batch(models, spec, objective=condition, prompts=prompts, seeds=seeds, round_seed=round_seed,
                           callback=progress)
    return np.stack([r.image for r in results])


def trajectory(models, spec: GenerationSpec, condition: str, prompt: str, seed: int, round_seed: int = 0) -> np.ndarray:
    """``uint8 (N_steps, H, W, 3)``: the predicted clean image x̂0 after every sampling step."""
    from generation.pipeline import make_denoiser

    diffusion = Diffusion(spec.respacing)
    denoiser = make_denoiser(models.unet, spec.precision)
    gens, shape = _noise(models, [prompt], [seed], round_seed)
    x_T = per_image_noise(gens, shape, models.device)
    guide = None
    if condition != UNGUIDED:
        text = models.blip.encode_text([prompt])
        guide = Guide(diffusion, denoiser, models.blip, text, objective=condition, scale=spec.scale_for(condition),
                      itc_loss=spec.itc_loss, label_smoothing=spec.cap_label_smoothing, normalization=spec.normalization,
                      blend_weights=(spec.blend_weight_itc, spec.blend_weight_cap), guided_image=spec.guided_image,
                      range_weight=spec.range_loss_weight)
    frames = []
    sample(diffusion, denoiser, x_T, noise_fn=lambda: per_image_noise(gens, shape, models.device),
           sampler=spec.sampler, eta=spec.eta, clip_denoised=spec.clip_denoised, guide=guide,
           callback=lambda k, n, x_next, out: frames.append(to_uint8(out.pred_xstart.clamp(-1, 1))[0]),
           recurrence=spec.recurrence)
    return np.stack(frames)
