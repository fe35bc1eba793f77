"""Diffusion maths against the formulas of guided-diffusion (reference §3), computed here in float64."""

import numpy as np
import pytest
import torch

from generation.diffusion import Diffusion, linear_betas, space_timesteps
from generation.sampling import sample


def test_linear_schedule():
    b = linear_betas(1000)
    assert b.dtype == np.float64 and len(b) == 1000
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    assert np.cumprod(1 - b)[-1] == pytest.approx(4.0e-5, rel=0.02)


@pytest.mark.parametrize(
    "spec, head, tail, n",
    [
        ("100", [0, 10, 20], [979, 989, 999], 100),
        ("250", [0, 4, 8], [995, 999], 250),
        ("50", [0, 20, 41, 61], [958, 979, 999], 50),
    ],
)
def test_respacing_examples(spec, head, tail, n):
    steps = sorted(space_timesteps(1000, spec))
    assert len(steps) == n and steps[: len(head)] == head and steps[-len(tail):] == tail


@pytest.mark.parametrize("n, stride", [(25, 40), (50, 20), (100, 10), (250, 4)])
def test_ddim_respacing_excludes_999(n, stride):
    assert space_timesteps(1000, f"ddim{n}") == set(range(0, 1000, stride))


def test_respacing_sections_and_errors():
    steps = sorted(space_timesteps(1000, "2,3"))
    assert steps == [0, 499, 500, 750, 999]
    for bad in ("abc", "ddim7x", "600,600,600", "0"):
        with pytest.raises(ValueError):
            space_timesteps(1000, bad)


def test_respaced_betas_keep_alpha_bar():
    base_ac = np.cumprod(1 - linear_betas(1000))
    d = Diffusion("100")
    np.testing.assert_allclose(d.alphas_cumprod, base_ac[d.timestep_map], rtol=1e-12)
    assert d.betas[0] == pytest.approx(1 - base_ac[0])
    assert d.betas[-1] == pytest.approx(0.182, abs=0.001)  # "beta ranges 1e-4 ... 0.182": first ... last
    assert d.num_timesteps == 100 and d.timestep_map[-1] == 999


def _by_hand(d: Diffusion, x, model_output, i):
    """Learned-range p_mean_variance written out in float64 from the betas alone."""
    b = d.betas
    ac = np.cumprod(1 - b)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = b * (1 - ac_prev) / (1 - ac)
    post_log_clipped = np.log(np.append(post_var[1], post_var[1:]))
    eps, v = model_output[:, :3], model_output[:, 3:]
    frac = (v + 1) / 2
    log_var = frac * np.log(b[i]) + (1 - frac) * post_log_clipped[i]
    x0 = np.sqrt(1 / ac[i]) * x - np.sqrt(1 / ac[i] - 1) * eps
    mean = b[i] * np.sqrt(ac_prev[i]) / (1 - ac[i]) * x0 + (1 - ac_prev[i]) * np.sqrt(1 - b[i]) / (1 - ac[i]) * x
    return mean, np.exp(log_var), x0


@pytest.mark.parametrize("i", [0, 1, 37, 99])
def test_learned_range_posterior_by_hand(i):
    d = Diffusion("100")
    g = torch.Generator().manual_seed(i)
    x = torch.randn(2, 3, 4, 4, generator=g)
    out_t = torch.cat([torch.randn(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g) * 2 - 1], 1)
    out = d.p_mean_variance(out_t, x, i, clip_denoised=False)
    mean, var, x0 = _by_hand(d, x.double().numpy(), out_t.double().numpy(), i)
    np.testing.assert_allclose(out.variance.numpy(), var, rtol=1e-5)
    np.testing.assert_allclose(out.pred_xstart.numpy(), x0, rtol=1e-4, atol=1e-4 * np.abs(x0).max())
    np.testing.assert_allclose(out.mean.numpy(), mean, rtol=1e-4, atol=1e-5 * np.abs(mean).max() + 1e-6)
    clipped = d.p_mean_variance(out_t, x, i, clip_denoised=True)
    assert clipped.pred_xstart.abs().max() <= 1


def test_ddpm_step_and_condition_mean():
    d = Diffusion("10")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 4, 4, generator=g)
    out = d.p_mean_variance(torch.randn(1, 6, 4, 4, generator=g), x, 5)
    grad, noise = torch.randn(1, 3, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    guided = d.condition_mean(out, grad)
    torch.testing.assert_close(guided.mean, out.mean + out.variance * grad)
    torch.testing.assert_close(d.ddpm_step(out, 5, noise), out.mean + out.variance.sqrt() * noise)
    assert torch.equal(d.ddpm_step(out, 0, noise), out.mean)


def test_condition_score_matches_upstream_formula():
    d = Diffusion("ddim10")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, generator=g)
    i = 6
    out = d.p_mean_variance(torch.randn(2, 6, 4, 4, generator=g), x, i, clip_denoised=False)
    grad = torch.randn(2, 3, 4, 4, generator=g)
    ac = d.alphas_cumprod[i]
    eps = (np.sqrt(1 / ac) * x.double() - out.pred_xstart.double()) / np.sqrt(1 / ac - 1)
    eps_new = eps - np.sqrt(1 - ac) * grad.double()
    x0_new = np.sqrt(1 / ac) * x.double() - np.sqrt(1 / ac - 1) * eps_new
    cond = d.condition_score(out, x, i, grad)
    torch.testing.assert_close(cond.pred_xstart.double(), x0_new, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cond.eps.double(), eps_new, rtol=1e-3, atol=1e-3)
    assert torch.equal(d.condition_score(out, x, i, torch.zeros_like(grad)).pred_xstart, out.pred_xstart)


def test_ddim_step_formula():
    d = Diffusion("ddim10")
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 4, 4, generator=g)
    i = 4
    out = d.p_mean_variance(torch.randn(1, 6, 4, 4, generator=g), x, i)
    noise = torch.randn(1, 3, 4, 4, generator=g)
    ab, abp = d.alphas_cumprod[i], d.alphas_cumprod_prev[i]
    eps = (np.sqrt(1 / ab) * x.double() - out.pred_xstart.double()) / np.sqrt(1 / ab - 1)
    for eta in (0.0, 1.0):
        sigma = eta * np.sqrt((1 - abp) / (1 - ab)) * np.sqrt(1 - ab / abp)
        expected = out.pred_xstart.double() * np.sqrt(abp) + np.sqrt(1 - abp - sigma**2) * eps + sigma * noise.double()
        torch.testing.assert_close(d.ddim_step(out, x, i, noise, eta).double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampler_feeds_original_timesteps_in_order(sampler):
    d = Diffusion("ddim5" if sampler == "ddim" else "5")
    seen = []

    def denoiser(x, t):
        seen.append(t.tolist())
        return torch.cat([0.1 * x, torch.zeros_like(x)], 1)

    g = torch.Generator().manual_seed(0)
    x = sample(d, denoiser, torch.randn(2, 3, 4, 4, generator=g), noise_fn=lambda: torch.randn(2, 3, 4, 4, generator=g), sampler=sampler)
    assert [s[0] for s in seen] == list(d.timestep_map[::-1]) and all(s[0] == s[1] for s in seen)
    assert x.shape == (2, 3, 4, 4) and torch.isfinite(x).all()
