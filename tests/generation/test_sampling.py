"""The sampling loop's self-recurrence (Universal Guidance, Bansal et al. 2023, Alg. 1): the passes and
noise draws it makes, the forward step it goes back by, and that it leaves the sampled distribution
alone when the guidance is zero."""

import numpy as np
import pytest
import torch

from generation.diffusion import Diffusion
from generation.sampling import sample


def _linear_denoiser(x, t):
    return torch.cat([0.1 * x, torch.zeros_like(x)], 1)


class _Recording:
    """A guide that records (i, k) and pushes by a fixed gradient."""

    def __init__(self, push=0.0):
        self.calls, self.push = [], push

    def __call__(self, x, i, k):
        self.calls.append((i, k))
        return _linear_denoiser(x, None), torch.full_like(x, self.push)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_each_guided_step_is_taken_r_times_except_the_last(r):
    d = Diffusion("6")
    guide, draws = _Recording(), []
    g = torch.Generator().manual_seed(0)

    def noise():
        draws.append(1)
        return torch.randn(2, 3, 4, 4, generator=g)

    frames = []
    sample(d, _linear_denoiser, torch.randn(2, 3, 4, 4, generator=g), noise_fn=noise, guide=guide, recurrence=r,
           callback=lambda k, n, x, out: frames.append(k))
    n = d.num_timesteps
    expected = [(n - 1 - k, k) for k in range(n) for _ in range(r if k < n - 1 else 1)]
    assert guide.calls == expected and len(guide.calls) == (n - 1) * r + 1
    # a step draws its noise once; each extra pass draws the going-back noise and the step's again
    assert len(draws) == (n - 1) * (2 * r - 1) + 1
    assert frames == list(range(n))  # the callback still sees each step once, after its last pass


def test_recurrence_goes_back_by_the_respaced_forward_step():
    """By hand: after a pass x_t -> x_{t-1}, x_t' = sqrt(ab_t / ab_{t-1}) x_{t-1} + sqrt(1 - ab_t / ab_{t-1}) z
    (the respaced process's own q(x_t | x_{t-1})), then the step again from x_t'."""
    d = Diffusion("5")
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(1, 3, 4, 4, generator=g)
    stream = [torch.randn(1, 3, 4, 4, generator=g) for _ in range(40)]
    it = iter(stream)
    got = sample(d, _linear_denoiser, x_T, noise_fn=lambda: next(it), guide=_Recording(push=0.3), recurrence=2)

    ref = iter(stream)
    x = x_T
    for i in reversed(range(d.num_timesteps)):
        for r in range(2 if i > 0 else 1):
            if r:
                ratio = d.alphas_cumprod[i] / d.alphas_cumprod[i - 1]
                x = float(np.sqrt(ratio)) * x_next + float(np.sqrt(1 - ratio)) * next(ref)
            out = d.condition_mean(d.p_mean_variance(_linear_denoiser(x, None), x, i), torch.full_like(x, 0.3))
            x_next = d.ddpm_step(out, i, next(ref))
        x = x_next
    torch.testing.assert_close(got, x)


def test_without_a_guide_or_at_one_the_sampler_is_unchanged():
    d = Diffusion("5")

    def run(**kw):
        g = torch.Generator().manual_seed(1)
        return sample(d, _linear_denoiser, torch.randn(2, 3, 4, 4, generator=g),
                      noise_fn=lambda: torch.randn(2, 3, 4, 4, generator=g), **kw)

    assert torch.equal(run(recurrence=4), run())  # no guide: nothing to repeat
    assert torch.equal(run(guide=_Recording(), recurrence=1), run(guide=_Recording()))
    assert not torch.equal(run(guide=_Recording(), recurrence=2), run(guide=_Recording()))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_junk_recurrence_is_refused(bad):
    with pytest.raises(ValueError, match="recurrence"):
        sample(Diffusion("3"), _linear_denoiser, torch.zeros(1, 3, 2, 2), noise_fn=lambda: torch.zeros(1, 3, 2, 2),
               guide=_Recording(), recurrence=bad)


def test_with_zero_guidance_the_exact_denoiser_keeps_its_distribution():
    """Data x0 ~ N(0, s^2): the exact reverse step is Gaussian, with eps-prediction
    sqrt(1 - ab) x_t / (ab s^2 + 1 - ab) and variance beta-tilde + coef1^2 Var(x0 | x_t), which the
    learned-range output can express exactly. Going back by q(x_t | x_{t-1}) and stepping again is
    then a Markov move that keeps each marginal, so with zero guidance the samples stay N(0, s^2)
    with any recurrence; going back by the wrong step (e.g. the coefficients swapped) leaves them
    far off. s = 0.5, 20000 draws: the sample variance's standard error is about 0.0025."""
    s2 = 0.25
    d = Diffusion("50")
    t_index = {int(t): j for j, t in enumerate(d.timestep_map)}

    def exact(x, t):
        j = t_index[int(t[0])]
        a = d.alphas_cumprod[j]
        eps = float(np.sqrt(1 - a) / (a * s2 + 1 - a)) * x
        var_x0 = s2 * (1 - a) / (a * s2 + 1 - a)
        lo, hi = d.posterior_log_variance_clipped[j], d.log_betas[j]
        target = np.log(np.exp(lo) + d.posterior_mean_coef1[j] ** 2 * var_x0) if j else lo
        frac = (target - lo) / (hi - lo) if hi > lo else 0.0
        return torch.cat([eps, torch.full_like(x, 2 * frac - 1)], 1)

    class Zero:
        def __call__(self, x, i, k):
            return exact(x, d.model_timestep(i, x.shape[0], x.device)), torch.zeros_like(x)

    variances = {}
    for r in (1, 3):
        g = torch.Generator().manual_seed(7)
        x = sample(d, exact, torch.randn(20000, 1, 1, 1, generator=g, dtype=torch.float64),
                   noise_fn=lambda: torch.randn(20000, 1, 1, 1, generator=g, dtype=torch.float64),
                   clip_denoised=False, guide=Zero(), recurrence=r)
        variances[r] = float(x.var())
    assert variances[1] == pytest.approx(s2, abs=0.02)
    assert variances[3] == pytest.approx(variances[1], abs=0.02)
