"""Numerical cross-checks of the BLIP scorer against timm and transformers on shared random weights.

Small configs of the same classes (the full size is checked for layout only, on the meta device).
Documented differences to transformers' BLIP (reference/GENERATION.md §7), set or fed explicitly:
vision LayerNorm eps 1e-6 (HF default 1e-5), label smoothing configured on the HF text config,
and the [ENC]/[DEC] first tokens and prompt-masked labels passed to HF as input (HF's forward
substitutes neither). Vision keys are renamed as in HF's convert_blip_original_pytorch_to_hf.py.
"""

import math
import re

import pytest
import torch

from generation.blip import BlipConfig, BlipScorer, tiny_blip

TEXTS = ["a picture of a red cat", "dog", "a green tree on the table!"]
ATOL = 1e-4


def spread_weights(model, seed):
    """Random weights wider than PyTorch's default init, so every nonlinearity is exercised.

    With the default init the tiny model's scores sit near their mean and a wrong activation
    or mask changes them by less than the tolerance; here ITM/ITC/CAP vary by O(1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "temp":
                continue
            if p.ndim >= 2 and "embed" not in name and "token" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 2 / math.sqrt(p[0].numel()))
            elif p.ndim >= 2 or "token" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def model():
    return spread_weights(tiny_blip(seed=7), seed=1)


@pytest.fixture(scope="module")
def x():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 40, 40, generator=g) * 2 - 1


def hf_vision_key(key: str) -> str:
    """Original BLIP ViT key -> HF BlipVisionModel key (the converter's rename table)."""
    key = key.replace("visual_encoder.", "vision_model.encoder.", 1)
    key = key.replace(".blocks.", ".layers.").replace(".attn.proj.", ".self_attn.projection.")
    key = key.replace(".attn.", ".self_attn.")
    key = re.sub(r"\.norm([12])\.", r".layer_norm\1.", key)
    for old, new in (
        ("encoder.norm.", "post_layernorm."),
        ("encoder.patch_embed.proj.", "embeddings.patch_embedding."),
        ("encoder.pos_embed", "embeddings.position_embedding"),
        ("encoder.cls_token", "embeddings.class_embedding"),
    ):
        key = key.replace(old, new)
    return key


def to_hf(state_dict, keep_prefixes):
    out = {}
    for k, v in state_dict.items():
        if not k.startswith(keep_prefixes) or k.endswith("position_ids"):  # HF: non-persistent
            continue
        out[hf_vision_key(k) if k.startswith("visual_encoder.") else k] = v
    return out


def hf_config(model, label_smoothing=0.0):
    from transformers import BlipConfig as HFBlipConfig, BlipTextConfig, BlipVisionConfig

    c, tok = model.config, model.tokenizer
    text = BlipTextConfig(
        vocab_size=c.vocab_size, hidden_size=c.text_width, encoder_hidden_size=c.vision_width,
        intermediate_size=c.text_intermediate, num_hidden_layers=c.text_layers,
        num_attention_heads=c.text_heads, max_position_embeddings=c.max_position_embeddings,
        layer_norm_eps=c.text_layer_norm_eps, label_smoothing=label_smoothing,
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id, sep_token_id=tok.sep_token_id,
        eos_token_id=tok.sep_token_id, tie_word_embeddings=False,
    )
    vision = BlipVisionConfig(
        hidden_size=c.vision_width, intermediate_size=int(c.vision_width * c.vision_mlp_ratio),
        num_hidden_layers=c.vision_depth, num_attention_heads=c.vision_heads, image_size=c.image_size,
        patch_size=c.patch_size, layer_norm_eps=c.vision_layer_norm_eps,
    )
    return HFBlipConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), image_text_hidden_size=c.embed_dim,
        label_smoothing=label_smoothing, tie_word_embeddings=False,
    )


@pytest.fixture(scope="module")
def hf_retrieval(model):
    from transformers import BlipForImageTextRetrieval

    hf = BlipForImageTextRetrieval(hf_config(model)).eval()
    sd = to_hf(model.state_dict(), ("visual_encoder.", "text_encoder.", "vision_proj.", "text_proj.", "itm_head."))
    hf.load_state_dict(sd, strict=True)
    return hf


def hf_captioner(model, label_smoothing):
    from transformers import BlipForConditionalGeneration

    hf = BlipForConditionalGeneration(hf_config(model, label_smoothing)).eval()
    hf.load_state_dict(to_hf(model.state_dict(), ("visual_encoder.", "text_decoder.")), strict=True)
    return hf


def test_vit_layout_matches_timm_vit_base_patch16_384():
    import timm

    with torch.device("meta"):
        ref = timm.create_model("vit_base_patch16_384", pretrained=False, num_classes=0)
        ours = BlipScorer(BlipConfig.base()).visual_encoder
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert len(ours.state_dict()) == 150


@pytest.fixture(scope="module", params=["default-init", "spread"])
def vit_model(request, model):
    # Default init keeps activations small, where LayerNorm's eps (1e-6 vs HF's 1e-5) shows.
    return tiny_blip(seed=7) if request.param == "default-init" else model


def test_vit_matches_timm_on_small_config(vit_model, x):
    import timm

    c = vit_model.config
    ref = timm.create_model(
        "vit_base_patch16_384", pretrained=False, num_classes=0, img_size=c.image_size,
        patch_size=c.patch_size, embed_dim=c.vision_width, depth=c.vision_depth, num_heads=c.vision_heads,
    ).eval()
    ref.load_state_dict(vit_model.visual_encoder.state_dict(), strict=True)
    with torch.no_grad():
        expected = ref.forward_features(vit_model.preprocess(x))
        got = vit_model.image_embeds(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


def test_vit_matches_transformers_vision_model(vit_model, x):
    from transformers import BlipVisionModel

    hf = BlipVisionModel(hf_config(vit_model).vision_config).eval()
    sd = to_hf(vit_model.state_dict(), ("visual_encoder.",))
    hf.load_state_dict({k.removeprefix("vision_model."): v for k, v in sd.items()}, strict=True)
    with torch.no_grad():
        expected = hf(pixel_values=vit_model.preprocess(x)).last_hidden_state
        got = vit_model.image_embeds(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


def test_itc_matches_transformers(model, hf_retrieval, x):
    text = model.encode_text(TEXTS)
    with torch.no_grad():
        sim = hf_retrieval(
            input_ids=text.ids, attention_mask=text.mask, pixel_values=model.preprocess(x), use_itm_head=False
        ).itm_score
        got = model.itc(x, text=text)
    assert sim.shape == (3, 3)
    torch.testing.assert_close(got, sim.diagonal(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("first_token", ["[ENC]", "[CLS]"])
def test_itm_matches_transformers(model, hf_retrieval, x, first_token):
    import dataclasses

    scorer = BlipScorer(dataclasses.replace(model.config, itm_first_token=first_token), model.tokenizer)
    scorer.load_state_dict(model.state_dict())
    scorer.eval()
    text = scorer.encode_text(TEXTS)
    expected_first = scorer.tokenizer.enc_token_id if first_token == "[ENC]" else scorer.tokenizer.cls_token_id
    assert (text.itm_ids[:, 0] == expected_first).all()
    with torch.no_grad():
        logits = hf_retrieval(
            input_ids=text.itm_ids, attention_mask=text.mask, pixel_values=scorer.preprocess(x), use_itm_head=True
        ).itm_score
        got = scorer.itm(x, text=text)
    torch.testing.assert_close(got, logits.log_softmax(-1)[:, 1], rtol=0, atol=ATOL)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cap_matches_transformers(model, x, label_smoothing):
    hf = hf_captioner(model, label_smoothing)
    text = model.encode_text(TEXTS)
    pixels = model.preprocess(x)
    with torch.no_grad():
        got = model.cap(x, text=text, label_smoothing=label_smoothing)
        out = hf(pixel_values=pixels, input_ids=text.cap_ids, attention_mask=text.cap_mask)
        ours_logits = model.text_decoder(text.cap_ids, text.cap_mask, model.image_embeds(x))
        valid = text.cap_mask.bool()
        torch.testing.assert_close(ours_logits[valid], out.logits[valid], rtol=0, atol=ATOL)
        # HF averages over the whole batch, so compare one sample at a time.
        for i in range(3):
            loss = hf(
                pixel_values=pixels[i : i + 1], input_ids=text.cap_ids[i : i + 1],
                attention_mask=text.cap_mask[i : i + 1], labels=text.cap_labels[i : i + 1],
            ).loss
            torch.testing.assert_close(got[i], loss, rtol=0, atol=ATOL)


def test_pixel_gradients_match_transformers(model, hf_retrieval, x):
    """d(score)/d(pixels) through our preprocessing, with HF's towers as the independent reference."""
    hf_cap = hf_captioner(model, 0.1)
    text = model.encode_text(TEXTS)

    def grads(fn):
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xi).sum(), xi)
        return g

    ours = {
        "itc": grads(lambda z: model.itc(z, text=text)),
        "itm": grads(lambda z: model.itm(z, text=text)),
        "cap": grads(lambda z: model.cap(z, text=text, label_smoothing=0.1)),
    }
    theirs = {
        "itc": grads(
            lambda z: hf_retrieval(
                input_ids=text.ids, attention_mask=text.mask, pixel_values=model.preprocess(z), use_itm_head=False
            ).itm_score.diagonal()
        ),
        "itm": grads(
            lambda z: hf_retrieval(
                input_ids=text.itm_ids, attention_mask=text.mask, pixel_values=model.preprocess(z)
            ).itm_score.log_softmax(-1)[:, 1]
        ),
        "cap": grads(
            lambda z: torch.stack([
                hf_cap(
                    pixel_values=model.preprocess(z[i : i + 1]), input_ids=text.cap_ids[i : i + 1],
                    attention_mask=text.cap_mask[i : i + 1], labels=text.cap_labels[i : i + 1],
                ).loss
                for i in range(3)
            ])
        ),
    }
    for head in ours:
        assert ours[head].abs().max() > 1e-4, head
        scale = theirs[head].abs().max()
        torch.testing.assert_close(ours[head], theirs[head], rtol=0, atol=ATOL * scale, msg=head)
