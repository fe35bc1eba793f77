"""Gaussian diffusion maths of guided-diffusion (``gaussian_diffusion.py``, ``respace.py``).

Only what sampling needs: the linear schedule in float64, respacing, the learned-range
variance, x̂0 and the posterior mean, DDPM and DDIM steps, and the two ways classifier guidance
enters (``condition_mean``, ``condition_score``). The network call is kept outside: every
function takes the model output, so the guided sampler can reuse one forward pass for the mean
and for the gradient. References: Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021 (learned range,
respacing), Dhariwal & Nichol 2021 (guidance, eqs. in §4), Song et al. 2021 (DDIM, eq. 12).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from generation.respace import space_timesteps  # noqa: F401  (re-exported)


def linear_betas(num_diffusion_timesteps: int = 1000) -> np.ndarray:
    """guided-diffusion's linear schedule, float64: ``linspace(1e-4, 0.02) * 1000 / T``."""
    scale = 1000 / num_diffusion_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)


@dataclass(frozen=True)
class ModelOut:
    """``p_mean_variance`` results for one step; tensors ``(B, C, H, W)`` (variances broadcast)."""

    mean: Tensor
    variance: Tensor
    log_variance: Tensor
    pred_xstart: Tensor
    eps: Tensor


class Diffusion:
    """A (possibly respaced) diffusion process, indexed by ``i = 0..N-1``.

    ``timestep_map[i]`` is the original timestep the model and the guidance receive.

    Parameters
    ----------
    respacing: ``"100"``, ``"250"``, ``"ddim50"``, ``"10,20"``... (``""`` keeps all steps).
    diffusion_steps: length of the original schedule (1000 for the public checkpoints).
    """

    def __init__(self, respacing: str = "", diffusion_steps: int = 1000):
        base = linear_betas(diffusion_steps)
        base_ac = np.cumprod(1.0 - base)
        use = sorted(space_timesteps(diffusion_steps, respacing)) if respacing else list(range(diffusion_steps))
        # Keep ᾱ at the kept steps: beta_i = 1 - ᾱ_{t_i} / ᾱ_{t_{i-1}} (SpacedDiffusion).
        betas, last = [], 1.0
        for t in use:
            betas.append(1 - base_ac[t] / last)
            last = base_ac[t]
        self.respacing = respacing
        self.timestep_map = np.array(use, dtype=np.int64)
        self.betas = b = np.array(betas, dtype=np.float64)
        self.num_timesteps = len(b)
        ac = np.cumprod(1.0 - b)
        ac_prev = np.append(1.0, ac[:-1])
        self.alphas_cumprod, self.alphas_cumprod_prev = ac, ac_prev
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.posterior_variance = pv = b * (1.0 - ac_prev) / (1.0 - ac)
        # log(0) at i = 0: upstream substitutes the value at i = 1.
        self.posterior_log_variance_clipped = np.log(np.append(pv[1], pv[1:]))
        self.posterior_mean_coef1 = b * np.sqrt(ac_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - ac_prev) * np.sqrt(1.0 - b) / (1.0 - ac)
        self.log_betas = np.log(b)
        # FIXED_LARGE, for models without learn_sigma.
        self.log_fixed_large = np.log(np.append(pv[1], b[1:]))
        self._cache: dict[tuple[str, str], Tensor] = {}

    def _c(self, name: str, i: int, like: Tensor) -> Tensor:
        """Coefficient ``name[i]``: float64 array gathered, then float32 on ``like``'s device (upstream's cast)."""
        key = (name, str(like.device))
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(getattr(self, name)).to(like.device).float()
        return self._cache[key][i]

    def model_timestep(self, i: int, batch: int, device: torch.device | str) -> Tensor:
        """``(B,)`` original timesteps for loop index ``i``: what the UNet and cond_fn receive."""
        return torch.full((batch,), int(self.timestep_map[i]), dtype=torch.long, device=device)

    def predict_xstart(self, x: Tensor, i: int, eps: Tensor) -> Tensor:
        """x̂0 = √(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε̂."""
        return self._c("sqrt_recip_alphas_cumprod", i, x) * x - self._c("sqrt_recipm1_alphas_cumprod", i, x) * eps

    def predict_eps(self, x: Tensor, i: int, pred_xstart: Tensor) -> Tensor:
        return (self._c("sqrt_recip_alphas_cumprod", i, x) * x - pred_xstart) / self._c("sqrt_recipm1_alphas_cumprod", i, x)

    def posterior_mean(self, x_start: Tensor, x: Tensor, i: int) -> Tensor:
        """μ̃ = c1·x̂0 + c2·x_t."""
        return self._c("posterior_mean_coef1", i, x) * x_start + self._c("posterior_mean_coef2", i, x) * x

    def p_mean_variance(self, model_output: Tensor, x: Tensor, i: int, *, clip_denoised: bool = True) -> ModelOut:
        """Mean, variance and x̂0 of p(x_{i-1} | x_i) from a model output.

        Parameters
        ----------
        model_output: ``(B, 2C, H, W)`` (ε̂ then v, learned range) or ``(B, C, H, W)`` (ε̂, fixed large variance).
        x: ``(B, C, H, W)`` x_t.
        i: loop index into the (respaced) schedule.
        clip_denoised: clamp x̂0 to [-1, 1] before the posterior mean.
        """
        c = x.shape[1]
        if model_output.shape[1] == 2 * c:
            eps, v = model_output[:, :c], model_output[:, c:]
            # Learned range: interpolate *log* variance between β̃_t (clipped) and β_t.
            frac = (v + 1) / 2
            log_var = frac * self._c("log_betas", i, x) + (1 - frac) * self._c("posterior_log_variance_clipped", i, x)
            var = torch.exp(log_var)
        elif model_output.shape[1] == c:
            eps = model_output
            log_var = self._c("log_fixed_large", i, x).expand_as(x)
            var = torch.exp(log_var)
        else:
            raise ValueError(f"model output has {model_output.shape[1]} channels for a {c}-channel x; expected {c} or {2 * c}")
        pred_xstart = self.predict_xstart(x, i, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        return ModelOut(self.posterior_mean(pred_xstart, x, i), var, log_var, pred_xstart, eps)

    # -- guidance -------------------------------------------------------------------------

    @staticmethod
    def condition_mean(out: ModelOut, grad: Tensor) -> ModelOut:
        """Classifier guidance on the DDPM mean: μ' = μ + Σ·g (``g`` already scaled), in float32."""
        mean = out.mean.float() + out.variance * grad.float()
        return ModelOut(mean, out.variance, out.log_variance, out.pred_xstart, out.eps)

    def condition_score(self, out: ModelOut, x: Tensor, i: int, grad: Tensor) -> ModelOut:
        """Guidance folded into the noise estimate (DDIM): ε' = ε̂ − √(1−ᾱ_t)·g, x̂0 recomputed from ε'.

        Written as x̂0' = x̂0 + √(1/ᾱ−1)·√(1−ᾱ)·g, algebraically the same as upstream's
        recomputation, so that ``g = 0`` returns x̂0 bit for bit.
        """
        coef = self._c("sqrt_recipm1_alphas_cumprod", i, x) * self._c("sqrt_one_minus_alphas_cumprod", i, x)
        pred_xstart = out.pred_xstart + coef * grad
        eps = self.predict_eps(x, i, pred_xstart)
        return ModelOut(self.posterior_mean(pred_xstart, x, i), out.variance, out.log_variance, pred_xstart, eps)

    # -- steps ----------------------------------------------------------------------------

    @staticmethod
    def ddpm_step(out: ModelOut, i: int, noise: Tensor) -> Tensor:
        """x_{i-1} = μ + 1[i≠0]·exp(½ log σ²)·z."""
        if i == 0:
            return out.mean
        return out.mean + torch.exp(0.5 * out.log_variance) * noise

    def ddim_step(self, out: ModelOut, x: Tensor, i: int, noise: Tensor, eta: float = 0.0) -> Tensor:
        """DDIM update (Song et al. eq. 12) from x̂0; ε re-derived from x̂0 as upstream does."""
        eps = self.predict_eps(x, i, out.pred_xstart)
        ab = self._c("alphas_cumprod", i, x)
        ab_prev = self._c("alphas_cumprod_prev", i, x)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        mean = out.pred_xstart * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma**2) * eps
        if i == 0:
            return mean
        return mean + sigma * noise
