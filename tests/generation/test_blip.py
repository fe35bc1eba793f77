"""BlipScorer contract on the tiny random model: shapes, per-sample scores, gradients, options."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from generation.blip import IMAGE_MEAN, IMAGE_STD, BlipConfig, BlipScorer, tiny_blip

TEXTS = ["a picture of a red cat", "dog", "a green tree on the table!"]


@pytest.fixture(scope="module")
def model():
    return tiny_blip(seed=0)


def images(b=3, size=40, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, size, size, generator=g, dtype=dtype) * 2 - 1)


def with_config(model, **changes):
    """Same weights, other options."""
    other = BlipScorer(dataclasses.replace(model.config, **changes), model.tokenizer)
    other.load_state_dict(model.state_dict())
    return other.eval().requires_grad_(False)


def test_tiny_blip_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_blip(seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b, c = tiny_blip(seed=5), tiny_blip(seed=6)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.vision_proj.weight, c.vision_proj.weight)
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_shapes_and_ranges(model):
    x = images()
    emb = model.image_embeds(x)
    c = model.config
    assert emb.shape == (3, 1 + (c.image_size // c.patch_size) ** 2, c.vision_width)
    itc, itm, cap = model.itc(x, TEXTS), model.itm(x, TEXTS), model.cap(x, TEXTS)
    for s in (itc, itm, cap):
        assert s.shape == (3,) and torch.isfinite(s).all()
    assert (itc.abs() <= 1 + 1e-6).all()
    assert (itm <= 0).all()
    assert (cap > 0).all()


def test_itc_is_cosine_of_projected_cls_features(model):
    x = images()
    emb = model.image_embeds(x)
    text = model.encode_text(TEXTS)
    img = model.vision_proj(emb[:, 0])
    txt = model.text_proj(model.text_encoder(text.ids, text.mask)[:, 0])
    expected = F.cosine_similarity(img, txt, dim=-1)
    torch.testing.assert_close(model.itc(image_embeds=emb, text=text), expected, rtol=0, atol=1e-6)


def test_scores_are_per_sample(model):
    """A sample's score must not depend on the rest of the batch (nor on its padding)."""
    x = images()
    text = model.encode_text(TEXTS)
    assert text.mask[1].sum() < text.mask.shape[1]  # "dog" is padded in this batch
    for head in ("itc", "itm", "cap"):
        batched = getattr(model, head)(x, TEXTS)
        for i in range(3):
            alone = getattr(model, head)(x[i : i + 1], [TEXTS[i]])
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=0, atol=2e-5, msg=head)


def test_one_text_broadcasts_over_the_batch(model):
    x = images()
    one = model.encode_text(["a cat"])
    many = model.encode_text(["a cat"] * 3)
    for head in ("itc", "itm", "cap"):
        a = getattr(model, head)(image_embeds=model.image_embeds(x), text=one)
        b = getattr(model, head)(image_embeds=model.image_embeds(x), text=many)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="2 texts for 3 images"):
        model.itm(x, ["a", "b"])


def test_images_and_texts_arguments_are_checked(model):
    x = images()
    with pytest.raises(ValueError, match="exactly one of images or image_embeds"):
        model.itc(x, TEXTS, image_embeds=model.image_embeds(x))
    with pytest.raises(ValueError, match="exactly one of texts or text"):
        model.cap(x)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.image_embeds(x[0])


def test_text_batch_layout(model):
    tok = model.tokenizer
    text = model.encode_text(TEXTS)
    assert (text.ids[:, 0] == tok.cls_token_id).all()
    assert (text.itm_ids[:, 0] == tok.enc_token_id).all()
    assert torch.equal(text.itm_ids[:, 1:], text.ids[:, 1:])
    assert (text.cap_ids[:, 0] == tok.bos_token_id).all()
    # "a picture of " is [DEC] a picture of: four masked positions, as in BLIP_Decoder.
    assert model.prompt_length == 4
    assert (text.cap_labels[:, :4] == -100).all()
    targets = text.cap_labels[2][text.cap_labels[2] != -100]
    assert targets.tolist() == tok.encode("a green tree on the table")[1:]  # caption + [SEP]
    assert (text.cap_labels[text.cap_mask == 0] == -100).all()


def test_cap_is_mean_token_nll_with_optional_label_smoothing(model):
    """CAP against a loop over target tokens (independent of the cross_entropy call)."""
    x = images()
    emb = model.image_embeds(x)
    text = model.encode_text(TEXTS)
    logp = model.text_decoder(text.cap_ids, text.cap_mask, emb).log_softmax(-1)
    for eps in (0.0, 0.1):
        expected = []
        for b in range(3):
            terms = []
            for t in range(1, text.cap_ids.shape[1]):
                y = int(text.cap_labels[b, t])
                if y != -100:
                    row = logp[b, t - 1]
                    terms.append(-(1 - eps) * row[y] - eps * row.mean())
            expected.append(torch.stack(terms).mean())
        got = model.cap(image_embeds=emb, text=text, label_smoothing=eps)
        torch.testing.assert_close(got, torch.stack(expected), rtol=1e-5, atol=1e-5)


def test_cap_prompt_option(model):
    plain = with_config(model, cap_prompt="")
    assert plain.prompt_length == 1  # only [DEC]: the pretraining LM objective
    text = plain.encode_text(["a cat"])
    assert text.cap_ids[0].tolist() == [plain.tokenizer.bos_token_id] + plain.tokenizer.encode("a cat")[1:]
    x = images(1)
    assert not torch.allclose(plain.cap(x, ["a cat"]), model.cap(x, ["a cat"]))


def test_caption_truncated_away_is_reported(model):
    short = with_config(model, cap_max_length=5)  # [DEC] a picture of [SEP]: nothing left but [SEP]
    assert short.encode_text(["a cat"]).cap_labels[0, 1:].tolist() == [-100, -100, -100, short.tokenizer.sep_token_id]
    tiny = with_config(model, cap_max_length=4)
    with pytest.raises(ValueError, match="raise cap_max_length"):
        tiny.encode_text(["a cat"])


def test_itm_first_token_option(model):
    cls = with_config(model, itm_first_token="[CLS]")
    text = cls.encode_text(TEXTS)
    assert torch.equal(text.itm_ids, text.ids)
    x = images()
    assert not torch.allclose(cls.itm(x, TEXTS), model.itm(x, TEXTS))
    with pytest.raises(ValueError, match="itm_first_token"):
        BlipConfig.tiny(itm_first_token="[SEP]")


def test_image_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="not divisible by patch_size=8"):
        tiny_blip(image_size=36)


def test_preprocess_matches_blip_transform(model):
    """(x+1)/2, PIL-style bicubic resize, CLIP normalisation (BLIP's eval transform)."""
    from PIL import Image

    x = images(1, size=20)
    got = model.preprocess(x)[0]
    size = model.config.image_size
    for ch in range(3):
        pil = Image.fromarray(((x[0, ch] + 1) / 2).numpy().astype(np.float32), mode="F")
        resized = torch.from_numpy(np.array(pil.resize((size, size), Image.BICUBIC)))
        expected = (resized - IMAGE_MEAN[ch]) / IMAGE_STD[ch]
        torch.testing.assert_close(got[ch], expected, rtol=0, atol=2e-4)
    # At the working size there is no resampling at all.
    y = images(1, size=size)
    expected = ((y + 1) / 2 - torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(model.preprocess(y), expected, rtol=0, atol=1e-6)


def test_pixel_gradients_match_finite_differences(model):
    """Directional derivatives in float64 against central differences, for every head."""
    m = tiny_blip(seed=0).double()
    x = images(2, size=24, dtype=torch.float64).requires_grad_(True)
    text = m.encode_text(["a red cat", "a dog on a table"])
    g = torch.Generator().manual_seed(3)
    for head in ("itc", "itm", "cap"):
        fn = lambda z: getattr(m, head)(z, text=text).sum()  # noqa: E731
        (grad,) = torch.autograd.grad(fn(x), x)
        assert grad.abs().sum() > 0
        for _ in range(2):
            v = torch.randn(x.shape, generator=g, dtype=torch.float64)
            h = 1e-5
            with torch.no_grad():
                fd = (fn(x + h * v) - fn(x - h * v)) / (2 * h)
            torch.testing.assert_close((grad * v).sum(), fd, rtol=1e-5, atol=1e-8, msg=head)


def test_frozen_weights_still_pass_gradients_to_pixels(model):
    assert not any(p.requires_grad for p in model.parameters())
    x = images().requires_grad_(True)
    (model.itc(x, TEXTS) + model.itm(x, TEXTS) + model.cap(x, TEXTS)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_text_features_cached_only_without_graph(model):
    text = model.encode_text(["a cat"])
    model.itc(images(1), text=text)
    assert text.itc_feat is not None and not text.itc_feat.requires_grad
    # Another scorer does not reuse the first one's features.
    other = tiny_blip(seed=1)
    torch.testing.assert_close(other.itc(images(1), text=text), other.itc(images(1), ["a cat"]), rtol=0, atol=0)
    trainable = tiny_blip(seed=0).requires_grad_(True)
    text = trainable.encode_text(["a cat"])
    with torch.no_grad():
        trainable.itc(images(1), text=text)
    assert text.itc_feat is None


def _score_and_grad(m, x, use_autograd_grad):
    xi = x.clone().requires_grad_(True)
    score = (m.itc(xi, TEXTS) + m.cap(xi, TEXTS)).sum()
    if use_autograd_grad:
        (g,) = torch.autograd.grad(score, xi)
    else:
        score.backward()
        g = xi.grad
    return score.detach(), g


@pytest.mark.parametrize("impl", ["fairscale", "torch"])
def test_vit_gradient_checkpointing_option(model, impl):
    ckpt = with_config(model, vit_grad_checkpointing=True, vit_checkpoint_impl=impl)
    assert ckpt.state_dict().keys() == model.state_dict().keys()
    # The wrapper is really in place (both patch the instance's forward).
    assert "forward" in vars(ckpt.visual_encoder.blocks[0].attn)
    assert "forward" not in vars(model.visual_encoder.blocks[0].attn)
    x = images()
    ref_score, ref_grad = _score_and_grad(model, x, use_autograd_grad=True)
    score, grad = _score_and_grad(ckpt, x, use_autograd_grad=False)
    torch.testing.assert_close(score, ref_score, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-6)
    if impl == "torch":
        score, grad = _score_and_grad(ckpt, x, use_autograd_grad=True)
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-6)
    else:
        # BLIP's fairscale wrapper is reentrant: guidance code must use .backward() with it.
        with pytest.raises(RuntimeError, match="not compatible with .grad"):
            _score_and_grad(ckpt, x, use_autograd_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.itm(x, TEXTS), model.itm(x, TEXTS), rtol=0, atol=1e-6)


def test_vit_checkpoint_impl_is_checked():
    with pytest.raises(ValueError, match="vit_checkpoint_impl"):
        BlipConfig.tiny(vit_checkpoint_impl="deepspeed")
