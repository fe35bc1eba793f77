"""Guidance on the tiny UNet with the real tiny BLIP: exactness at scale 0, SHIFT's end points,
one UNet forward per step, per-sample gradients, and that every objective improves its own score."""

import numpy as np
import pytest
import torch

from generation.blip import tiny_blip
from generation.diffusion import Diffusion
from generation.guidance import Guide, augmented_views, range_loss
from generation.pipeline import make_denoiser, render_batch
from generation.sampling import per_image_noise, sample
from generation.spec import GenerationSpec

PROMPTS = ["a red cat", "a dog on the grass", "a green tree"]


@pytest.fixture(scope="module")
def blip():
    return tiny_blip(seed=0, image_size=32)


def make_guide(unet, blip, diffusion, objective, prompts, **kw):
    kw.setdefault("scale", 1.0)
    return Guide(diffusion, make_denoiser(unet, "fp32"), blip, blip.encode_text(prompts), objective=objective, **kw)


def x_at(seed, b=2):
    return torch.randn(b, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def run(unet, diffusion, guide, sampler="ddpm", seed=0, b=2):
    gens = [torch.Generator().manual_seed(seed * 100 + n) for n in range(b)]
    x_T = per_image_noise(gens, (3, 16, 16), "cpu")
    return sample(diffusion, make_denoiser(unet, "fp32"), x_T, noise_fn=lambda: per_image_noise(gens, (3, 16, 16), "cpu"),
                  sampler=sampler, guide=guide)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("objective", ["ITC", "SHIFT"])
def test_scale_zero_equals_unguided_exactly(tiny_unet_model, blip, sampler, objective):
    d = Diffusion("ddim4" if sampler == "ddim" else "4")
    guide = make_guide(tiny_unet_model, blip, d, objective, PROMPTS[:2], scale=0.0)
    guided = run(tiny_unet_model, d, guide, sampler)
    assert guide.last.losses  # the gradient path really ran
    assert torch.equal(guided, run(tiny_unet_model, d, None, sampler))
    nonzero = make_guide(tiny_unet_model, blip, d, objective, PROMPTS[:2], scale=1.0)
    assert not torch.equal(run(tiny_unet_model, d, nonzero, sampler), guided)


def test_shift_gradient_is_cap_first_and_itc_last(tiny_unet_model, blip):
    d = Diffusion("5")
    x = x_at(1)
    shift, cap, itc = (make_guide(tiny_unet_model, blip, d, o, PROMPTS[:2]) for o in ("SHIFT", "CAP", "ITC"))
    first, last = d.num_timesteps - 1, 0  # loop index i of the first (noisiest) and last step
    assert torch.equal(shift(x, first, 0)[1], cap(x, first, 0)[1])
    assert torch.equal(shift(x, last, d.num_timesteps - 1)[1], itc(x, last, d.num_timesteps - 1)[1])
    assert not torch.allclose(cap(x, first, 0)[1], itc(x, first, 0)[1])


def test_shift_mixes_linearly_in_between(tiny_unet_model, blip):
    d = Diffusion("5")
    x, i, k = x_at(2), 2, 2  # t = k / (N - 1) = 0.5
    g = {o: make_guide(tiny_unet_model, blip, d, o, PROMPTS[:2], normalization="none")(x, i, k)[1] for o in ("SHIFT", "CAP", "ITC")}
    torch.testing.assert_close(g["SHIFT"], 0.5 * g["ITC"] + 0.5 * g["CAP"], rtol=1e-4, atol=1e-6)
    blend = make_guide(tiny_unet_model, blip, d, "BLEND", PROMPTS[:2], normalization="none", blend_weights=(0.25, 0.75))(x, i, 0)[1]
    torch.testing.assert_close(blend, 0.25 * g["ITC"] + 0.75 * g["CAP"], rtol=1e-4, atol=1e-6)


def test_one_unet_forward_per_guided_step(tiny_unet_model, blip):
    d = Diffusion("4")
    calls = []
    handle = tiny_unet_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        run(tiny_unet_model, d, make_guide(tiny_unet_model, blip, d, "BLEND", PROMPTS[:2], views=2,
                                           view_generators=[torch.Generator().manual_seed(n) for n in range(2)]))
    finally:
        handle.remove()
    assert len(calls) == d.num_timesteps


def test_gradient_is_per_sample(tiny_unet_model, blip):
    d = Diffusion("5")
    x = x_at(3, b=3)
    both = make_guide(tiny_unet_model, blip, d, "CAP", PROMPTS)(x, 3, 1)[1]
    alone = make_guide(tiny_unet_model, blip, d, "CAP", PROMPTS[1:2])(x[1:2], 3, 1)[1]
    torch.testing.assert_close(both[1:2], alone, rtol=1e-3, atol=1e-4 * alone.abs().max().item())


def test_grad_normalisation_gives_unit_rms_per_term(tiny_unet_model, blip):
    d = Diffusion("5")
    images = x_at(4).clamp(-1, 1)
    for objective in ("ITC", "ITM", "CAP"):
        g = make_guide(tiny_unet_model, blip, d, objective, PROMPTS[:2]).image_gradient(images, 0)
        rms = g.pow(2).flatten(1).mean(1).sqrt()
        torch.testing.assert_close(rms, torch.ones(2), rtol=1e-4, atol=1e-4)


def test_blend_image_range_loss_and_views_change_the_gradient(tiny_unet_model, blip):
    d = Diffusion("5")
    x = x_at(5) * 3
    base = make_guide(tiny_unet_model, blip, d, "ITC", PROMPTS[:2])(x, 3, 1)[1]
    for kw in ({"guided_image": "blend"}, {"range_weight": 50.0},
               {"views": 3, "view_generators": [torch.Generator().manual_seed(n) for n in range(2)]}):
        other = make_guide(tiny_unet_model, blip, d, "ITC", PROMPTS[:2], **kw)(x, 3, 1)[1]
        assert torch.isfinite(other).all() and not torch.allclose(other, base), kw


def test_views_and_range_loss_helpers():
    img = torch.linspace(-2, 2, 2 * 3 * 8 * 8).view(2, 3, 8, 8)
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    views = augmented_views(img, 3, 16, gens)
    assert views.shape == (6, 3, 16, 16)
    torch.testing.assert_close(views[3], augmented_views(img[1:], 1, 16, gens[1:])[0])  # first view un-augmented
    expected = ((img - img.clamp(-1, 1)) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(range_loss(img), expected)


def own_loss(objective, s):
    return {"ITC": -s["itc"], "ITM": -s["itm"], "CAP": s["cap"]}.get(objective)


@pytest.mark.parametrize("objective", ["ITC", "ITM", "CAP", "SHIFT", "BLEND"])
def test_each_objective_improves_its_own_score(tiny_models, objective):
    prompts, seeds = PROMPTS[:2], [0, 1]
    guided = render_batch(tiny_models, GenerationSpec.tiny(respacing="5"), objective=objective, prompts=prompts, seeds=seeds)
    zero = GenerationSpec.tiny(respacing="5", **{f"scale_{objective.lower()}": 0.0})
    plain = render_batch(tiny_models, zero, objective=objective, prompts=prompts, seeds=seeds)
    for g, p in zip(guided, plain):
        if objective in ("SHIFT", "BLEND"):  # both of their terms improve
            assert g.scores["itc"] > p.scores["itc"] and g.scores["cap"] < p.scores["cap"], (g.scores, p.scores)
        else:
            assert own_loss(objective, g.scores) < own_loss(objective, p.scores), (g.scores, p.scores)


def test_images_identical_across_runs(tiny_models):
    spec = GenerationSpec.tiny(views=2, respacing="4")
    a = render_batch(tiny_models, spec, objective="SHIFT", prompts=PROMPTS[:2], seeds=[7, 8])
    b = render_batch(tiny_models, spec, objective="SHIFT", prompts=PROMPTS[:2], seeds=[7, 8])
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.image, rb.image) and ra.scores == rb.scores


def test_one_forward_equals_the_reference_two_forward_structure(tiny_unet_model, blip):
    """Blended Diffusion's cond_fn runs p_mean_variance again with grad on x_t (a second UNet
    forward) and returns -scale * grad of the loss on the unclipped x0; ours reuses one forward."""
    d = Diffusion("5")
    den = make_denoiser(tiny_unet_model, "fp32")
    text = blip.encode_text(PROMPTS[:2])
    scale = 0.7

    def reference_guide(x, i, k):
        t = d.model_timestep(i, x.shape[0], x.device)
        with torch.no_grad():
            model_output = den(x, t)  # the sampler's own forward
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0 = d.p_mean_variance(den(x_in, t), x_in, i, clip_denoised=False).pred_xstart
            loss = -blip.itc(x0, text=text).sum()
            grad = -scale * torch.autograd.grad(loss, x_in)[0]
        return model_output, grad

    ours = make_guide(tiny_unet_model, blip, d, "ITC", PROMPTS[:2], scale=scale, normalization="none")
    torch.testing.assert_close(run(tiny_unet_model, d, ours), run(tiny_unet_model, d, reference_guide), rtol=1e-4, atol=1e-5)


# -- normalisation, range loss on x̂0, Blended-Diffusion-style views (issue 14 item 1) ---------


@pytest.mark.parametrize("objective, k", [("ITC", 1), ("CAP", 1), ("ITM", 1), ("SHIFT", 2), ("BLEND", 1)])
def test_unit_normalisation_gives_every_objective_the_same_push(tiny_unet_model, blip, objective, k):
    d = Diffusion("5")
    guide = make_guide(tiny_unet_model, blip, d, objective, PROMPTS[:2], normalization="unit")
    g = guide.image_gradient(x_at(3).clamp(-1, 1), k)
    torch.testing.assert_close(g.pow(2).flatten(1).mean(1).sqrt(), torch.ones(2), rtol=1e-4, atol=1e-4)


def test_grad_normalisation_pushes_blend_less_than_one_objective(tiny_unet_model, blip):
    """The flaw "unit" fixes: a 50/50 mix of two unit directions has RMS 0.5*sqrt(2 + 2cos) < 1."""
    d = Diffusion("5")
    img = x_at(3).clamp(-1, 1)
    unit = {o: make_guide(tiny_unet_model, blip, d, o, PROMPTS[:2], normalization="grad").image_gradient(img, 1)
            for o in ("ITC", "CAP", "BLEND")}
    rms = unit["BLEND"].pow(2).flatten(1).mean(1).sqrt()
    cos = torch.nn.functional.cosine_similarity(unit["ITC"].flatten(1), unit["CAP"].flatten(1))
    torch.testing.assert_close(rms, 0.5 * torch.sqrt(2 + 2 * cos), rtol=1e-4, atol=1e-5)
    assert (rms < 0.999).all()


def test_range_loss_acts_on_pure_x0_and_ignores_scale(tiny_unet_model, blip):
    """Blended Diffusion: range_loss(out['pred_xstart']) * range_lambda, even when CLIP sees the blend."""
    d = Diffusion("5")
    x, i = x_at(5) * 3, 3
    kw = dict(guided_image="blend", normalization="none")
    for scale in (1.0, 4.0):
        with_range = make_guide(tiny_unet_model, blip, d, "ITC", PROMPTS[:2], scale=scale, range_weight=50.0, **kw)(x, i, 1)[1]
        without = make_guide(tiny_unet_model, blip, d, "ITC", PROMPTS[:2], scale=scale, **kw)(x, i, 1)[1]
        x_in = x.clone().requires_grad_(True)
        x0 = d.predict_xstart(x_in, i, make_denoiser(tiny_unet_model, "fp32")(x_in, d.model_timestep(i, 2, "cpu"))[:, :3])
        expected = -torch.autograd.grad(50.0 * range_loss(x0).sum(), x_in)[0]
        assert expected.abs().max() > 0
        torch.testing.assert_close(with_range - without, expected, rtol=1e-3, atol=1e-4)


def test_scale_zero_is_unguided_even_with_a_range_loss(tiny_unet_model, blip):
    d = Diffusion("4")
    guide = make_guide(tiny_unet_model, blip, d, "ITC", PROMPTS[:2], scale=0.0, range_weight=50.0)
    assert torch.equal(run(tiny_unet_model, d, guide), run(tiny_unet_model, d, None))


def test_affine_perspective_views():
    from generation.guidance import affine_perspective_view

    img = torch.linspace(-1, 1, 2 * 3 * 16 * 16).view(2, 3, 16, 16).requires_grad_(True)
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    views = augmented_views(img, 4, 8, gens, "affine_perspective")
    assert views.shape == (8, 3, 8, 8) and torch.isfinite(views).all()
    again = augmented_views(img, 4, 8, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)], "affine_perspective")
    assert torch.equal(views, again)  # deterministic from the generators
    torch.testing.assert_close(views[0], augmented_views(img[:1], 1, 8, gens[:1], "affine_perspective")[0])  # first view plain
    assert not torch.allclose(views[1], views[0])
    (grad,) = torch.autograd.grad(views.sum(), img)
    assert grad.abs().sum() > 0  # differentiable: guidance flows through the augmentation
    # Neither augmentation drawn (both probabilities missed): the identity map.
    torch.testing.assert_close(affine_perspective_view(img.detach(), [0.9] * 9), img.detach(), rtol=0, atol=1e-5)
    # Only the affine part, no rotation or shift (u = 0.5 centres both): the identity too.
    torch.testing.assert_close(affine_perspective_view(img.detach(), [0.0, 0.5, 0.5, 0.5, 0.9, 0, 0, 0, 0]), img.detach(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="augment"):
        augmented_views(img, 2, 8, gens, "rotate")
