"""Sampling loops: DDPM (guidance on the mean) and DDIM (guidance on the score).

Randomness is injected (``noise_fn``), never drawn from global state, so a caller can give
every image its own generator (paired sampling across objectives, batch-independent images).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from generation.diffusion import Diffusion, ModelOut

# (x, i, k) -> (model_output, grad): see generation.guidance.Guide.
GuideFn = Callable[[Tensor, int, int], "tuple[Tensor, Tensor]"]
# (k, num_steps, x_next, out) after every step.
Callback = Callable[[int, int, Tensor, ModelOut], None]


def per_image_noise(generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device | str) -> Tensor:
    """``(B, *shape)`` standard normal noise, image ``n`` from ``generators[n]``, drawn on CPU.

    Drawing on the CPU makes the noise identical on every device (CUDA's generator would give
    other numbers), and one generator per image makes it independent of batch composition.
    """
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


def sample(
    diffusion: Diffusion,
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x_T: Tensor,
    *,
    noise_fn: Callable[[], Tensor],
    sampler: str = "ddpm",
    eta: float = 0.0,
    clip_denoised: bool = True,
    guide: GuideFn | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Run the reverse process from ``x_T`` ``(B, C, H, W)`` to x_0.

    Parameters
    ----------
    diffusion: the respaced process; step ``k = 0..N-1`` uses index ``i = N-1-k``.
    denoiser: ``denoiser(x, t) -> (B, 2C, H, W)`` float32 with ``t`` the *original* timesteps;
        called under ``no_grad`` when there is no guide.
    noise_fn: returns the ``(B, C, H, W)`` noise of the next step; called once per step, also at
        the last step and for DDIM with ``eta=0`` (so the noise stream never depends on settings).
    sampler: ``"ddpm"`` (``p_sample`` + ``condition_mean``) or ``"ddim"`` (+ ``condition_score``).
    guide: ``guide(x, i, k) -> (model_output, g)`` computes the model output with grad itself
        (one UNet forward per step serves the mean and the gradient).
    """
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', not {sampler!r}")
    x = x_T
    n = diffusion.num_timesteps
    for k in range(n):
        i = n - 1 - k
        if guide is None:
            with torch.no_grad():
                model_output, grad = denoiser(x, diffusion.model_timestep(i, x.shape[0], x.device)), None
        else:
            model_output, grad = guide(x, i, k)
        with torch.no_grad():
            out = diffusion.p_mean_variance(model_output, x, i, clip_denoised=clip_denoised)
            noise = noise_fn()
            if sampler == "ddpm":
                if grad is not None:
                    out = diffusion.condition_mean(out, grad)
                x_next = diffusion.ddpm_step(out, i, noise)
            else:
                if grad is not None:
                    out = diffusion.condition_score(out, x, i, grad)
                x_next = diffusion.ddim_step(out, x, i, noise, eta)
        if callback is not None:
            callback(k, n, x_next, out)
        x = x_next
    return x
