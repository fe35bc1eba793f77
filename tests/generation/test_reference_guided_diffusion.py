"""Cross-check against openai/guided-diffusion's own code (22e0df8), when its source is available.

The reference is not a dependency, so this module skips unless ``GUIDED_DIFFUSION_SRC`` names a
checkout (the folder that contains ``guided_diffusion/``)::

    git clone https://github.com/openai/guided-diffusion /tmp/gd
    GUIDED_DIFFUSION_SRC=/tmp/gd .venv/bin/python -m pytest tests/generation/test_reference_guided_diffusion.py -q

Last run (torch 2.14, CPU): UNet outputs bit-identical in both configs below; DDPM steps with
cond_fn bit-identical; DDIM steps with cond_fn within 3e-6 (condition_score is rearranged).
"""

import os
import sys

import numpy as np
import pytest
import torch

from generation.diffusion import Diffusion
from generation.pipeline import make_denoiser
from generation.unet import TINY_FLAGS, tiny_unet

SRC = os.environ.get("GUIDED_DIFFUSION_SRC")
pytestmark = pytest.mark.skipif(
    not SRC or not os.path.isdir(os.path.join(SRC, "guided_diffusion")),
    reason="set GUIDED_DIFFUSION_SRC to an openai/guided-diffusion checkout to run the reference cross-check",
)

MODEL_KEYS = ("image_size", "num_channels", "num_res_blocks", "channel_mult", "learn_sigma", "class_cond",
              "use_checkpoint", "attention_resolutions", "num_heads", "num_head_channels", "num_heads_upsample",
              "use_scale_shift_norm", "dropout", "resblock_updown", "use_fp16", "use_new_attention_order")


@pytest.fixture(scope="module")
def su():
    sys.path.insert(0, SRC)
    try:
        from guided_diffusion import script_util
    finally:
        sys.path.remove(SRC)
    return script_util


@pytest.mark.parametrize("flags", [
    TINY_FLAGS,
    dict(TINY_FLAGS, use_new_attention_order=True, resblock_updown=False, use_scale_shift_norm=False,
         num_head_channels=-1, num_heads=2, class_cond=True),
])
def test_unet_matches_reference(su, flags):
    args = {**su.model_and_diffusion_defaults(), **flags}
    ref = su.create_model(**{k: args[k] for k in MODEL_KEYS}).eval()
    mine = tiny_unet(seed=3, **flags)
    ref.load_state_dict(mine.state_dict(), strict=True)  # same names and shapes
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t, y = torch.tensor([17, 903]), (torch.tensor([1, 5]) if flags.get("class_cond") else None)
    with torch.no_grad():
        assert torch.equal(mine(x, t, y), ref(x, t, y=y))


@pytest.mark.parametrize("respacing", ["100", "ddim25", "7,3"])
def test_guided_steps_match_reference(su, respacing):
    ref = su.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear", timestep_respacing=respacing)
    d = Diffusion(respacing)
    assert list(ref.timestep_map) == list(d.timestep_map)
    assert np.array_equal(ref.betas, d.betas)
    unet = tiny_unet(seed=1)
    den = make_denoiser(unet, "fp32")

    def cond(x, t, **_):  # depends on t, so a wrong timestep mapping shows
        return -0.3 * x * (t.float() / 1000).view(-1, 1, 1, 1) + 0.05

    for i in (0, 1, d.num_timesteps // 2, d.num_timesteps - 1):
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(i))
        ti = torch.full((2,), i, dtype=torch.long)
        t_orig = d.model_timestep(i, 2, "cpu")
        torch.manual_seed(123)
        expected = ref.p_sample(unet, x, ti, clip_denoised=True, cond_fn=cond, model_kwargs={})["sample"]
        torch.manual_seed(123)
        noise = torch.randn_like(x)
        with torch.no_grad():
            out = d.p_mean_variance(den(x, t_orig), x, i, clip_denoised=True)
            assert torch.equal(d.ddpm_step(d.condition_mean(out, cond(x, t_orig)), i, noise), expected)
            for eta in (0.0, 0.7):
                torch.manual_seed(7)
                expected = ref.ddim_sample(unet, x, ti, clip_denoised=True, cond_fn=cond, eta=eta, model_kwargs={})["sample"]
                torch.manual_seed(7)
                noise = torch.randn_like(x)
                got = d.ddim_step(d.condition_score(out, x, i, cond(x, t_orig)), x, i, noise, eta)
                torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
