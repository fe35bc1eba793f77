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
    recurrence: int = 1,
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
    recurrence: guided passes per step (self-recurrence: Universal Guidance, Bansal et al. 2023,
        Alg. 1; FreeDoM's "time-travel"). After a guided step x_t -> x_{t-1}, all but the last pass
        go back to x_t by the forward step q(x_t | x_{t-1}) = N(sqrt(1-beta_t) x_{t-1}, beta_t I)
        of the respaced process, with fresh noise, and step again, so the guidance acts r times on
        a sample that stays at noise level t. Not at the last step (nothing to go back from), and
        not without a guide (1 keeps the plain sampler; each pass draws noise_fn twice).
    """
    if isinstance(recurrence, bool) or not isinstance(recurrence, int) or recurrence < 1:
        raise ValueError(f"recurrence must be an integer >= 1, not {recurrence!r}")
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', not {sampler!r}")
    x = x_T
    n = diffusion.num_timesteps
    for k in range(n):
        i = n - 1 - k
        passes = recurrence if guide is not None and i > 0 else 1
        for r in range(passes):
            if r:
                with torch.no_grad():
                    beta = float(diffusion.betas[i])
                    x = (1.0 - beta) ** 0.5 * x_next + beta**0.5 * noise_fn()
            x_next, out = _step(diffusion, denoiser, x, i, k, noise_fn, sampler, eta, clip_denoised, guide)
        if callback is not None:
            callback(k, n, x_next, out)
        x = x_next
    return x


def _step(diffusion, denoiser, x, i, k, noise_fn, sampler, eta, clip_denoised, guide) -> tuple[Tensor, ModelOut]:
    """One reverse step x_t -> x_{t-1} at index ``i`` (guided when ``guide`` is given)."""
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
            return diffusion.ddpm_step(out, i, noise), out
        if grad is not None:
            out = diffusion.condition_score(out, x, i, grad)
        return diffusion.ddim_step(out, x, i, noise, eta), out
