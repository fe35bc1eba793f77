"""BLIP checkpoint loading: the key listing of the real pretrain file, strict loading, pos_embed."""

from pathlib import Path

import pytest
import torch

from generation.blip import (
    BlipConfig,
    BlipScorer,
    interpolate_pos_embed,
    load_blip,
    prepare_pretrain_state_dict,
    tiny_blip,
)
from generation.checkpoints import CheckpointError, load_strict, read_keys_tsv
from generation.tokenization import tiny_vocab

LISTING = Path(__file__).resolve().parents[2] / "generation" / "keys" / "blip_pretrain_base.keys.tsv"
DROPPED_PREFIXES = ("visual_encoder_m.", "text_encoder_m.", "vision_proj_m.", "text_proj_m.")
DROPPED_KEYS = {"image_queue", "text_queue", "queue_ptr"}
TEXTS = ["a picture of a red cat", "dog"]


def kept(listing):
    return {k: s for k, s in listing.items() if not k.startswith(DROPPED_PREFIXES) and k not in DROPPED_KEYS}


def tiny_fields(model):
    """BlipConfig fields to hand to load_blip so it rebuilds the tiny architecture."""
    c = model.config
    names = [
        "patch_size", "vision_width", "vision_depth", "vision_heads", "text_width", "text_layers",
        "text_heads", "text_intermediate", "max_position_embeddings", "embed_dim",
    ]
    return {n: getattr(c, n) for n in names}


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(tiny_vocab()) + "\n")
    return path


@pytest.fixture(scope="module")
def source():
    return tiny_blip(seed=11)


def pretrain_like(model):
    """The tiny model's weights dressed as a BLIP_Pretrain state dict (momentum copies, queues)."""
    sd = dict(model.state_dict())
    for k in list(sd):
        head, _, rest = k.partition(".")
        if head in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
            sd[f"{head}_m.{rest}"] = sd[k].clone() + 1
    sd["image_queue"] = torch.randn(model.config.embed_dim, 57)
    sd["text_queue"] = torch.randn(model.config.embed_dim, 57)
    sd["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return sd


def test_listing_is_the_documented_pretrain_file():
    listing = read_keys_tsv(LISTING)
    assert len(listing) == 1272
    assert listing["visual_encoder.pos_embed"] == (1, 197, 768)
    assert listing["text_encoder.embeddings.word_embeddings.weight"] == (30524, 768)


@pytest.mark.parametrize("image_size", [224, 384])
def test_base_model_has_exactly_the_pretrain_keys(image_size):
    """Built on the meta device: every kept key of model_base.pth with its shape, nothing else.

    position_ids is a persistent buffer, as in the file. Only pos_embed differs at 384 px
    (577 tokens vs the file's 197): load_blip interpolates it before the strict load.
    """
    with torch.device("meta"):
        model = BlipScorer(BlipConfig.base(image_size=image_size))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = kept(read_keys_tsv(LISTING))
    assert len(expected) == 798
    assert own.keys() == expected.keys()
    differing = {k for k in own if own[k] != expected[k]}
    if image_size == 224:
        assert differing == set()
    else:
        assert differing == {"visual_encoder.pos_embed"}
        assert own["visual_encoder.pos_embed"] == (1, 577, 768)


def meta_state_dict(listing):
    return {k: torch.empty(shape, device="meta", dtype=torch.long if "position_ids" in k or k == "queue_ptr" else None)
            for k, shape in listing.items()}


def test_full_pretrain_listing_loads_strictly_at_384():
    """Every tensor of model_base.pth (as meta tensors): drops + pos_embed 197 -> 577 + strict."""
    config = BlipConfig.base(image_size=384)
    with torch.device("meta"):
        model = BlipScorer(config)
    sd = prepare_pretrain_state_dict(meta_state_dict(read_keys_tsv(LISTING)), config)
    assert tuple(sd["visual_encoder.pos_embed"].shape) == (1, 577, 768)
    assert not any(k.startswith(DROPPED_PREFIXES) or k in DROPPED_KEYS for k in sd)
    load_strict(model, sd, what="model_base.pth layout")
    del sd["text_decoder.cls.predictions.bias"]
    with pytest.raises(CheckpointError, match="text_decoder.cls.predictions.bias"):
        load_strict(model, sd, what="model_base.pth layout")


def test_base_model_params_count():
    """ViT-B/16 at 384 px has 86.09M parameters (reference §6.4)."""
    with torch.device("meta"):
        model = BlipScorer(BlipConfig.base())
    n = sum(p.numel() for p in model.visual_encoder.parameters())
    assert round(n / 1e6, 2) == 86.09


def test_load_strict_from_pretrain_state_dict(source, vocab_file):
    loaded = load_blip(pretrain_like(source), vocab_file, image_size=32, **tiny_fields(source))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for head in ("itc", "itm", "cap"):
        torch.testing.assert_close(getattr(loaded, head)(x, TEXTS), getattr(source, head)(x, TEXTS), rtol=0, atol=0)


def test_load_from_file_with_model_key(source, vocab_file, tmp_path):
    path = tmp_path / "model_base.pth"
    torch.save({"model": pretrain_like(source), "epoch": 19}, path)
    loaded = load_blip(path, vocab_file, image_size=32, itm_first_token="[CLS]", **tiny_fields(source))
    assert loaded.config.itm_first_token == "[CLS]"
    torch.testing.assert_close(loaded.vision_proj.weight, source.vision_proj.weight, rtol=0, atol=0)


def test_tied_tensors_stay_shared(source, vocab_file):
    """BLIP ties most decoder tensors to the encoder; assignment keeps the file's sharing."""
    sd = pretrain_like(source)
    key = "encoder.layer.0.intermediate.dense.weight"
    sd[f"text_decoder.bert.{key}"] = sd[f"text_encoder.{key}"]
    loaded = load_blip(sd, vocab_file, image_size=32, **tiny_fields(source))
    enc = loaded.text_encoder.encoder.layer[0].intermediate.dense.weight
    dec = loaded.text_decoder.bert.encoder.layer[0].intermediate.dense.weight
    assert enc.data_ptr() == dec.data_ptr()


def test_pos_embed_is_interpolated_like_blip(source, vocab_file):
    """A 16-px grid (2x2 patches) loaded at 32 px (4x4), against timm's resampler."""
    from timm.layers import resample_abs_pos_embed

    small = tiny_blip(seed=3, image_size=16)
    sd = pretrain_like(small)
    loaded = load_blip(sd, vocab_file, image_size=32, **tiny_fields(small))
    pos = sd["visual_encoder.pos_embed"]
    assert pos.shape[1] == 1 + 4 and loaded.visual_encoder.pos_embed.shape[1] == 1 + 16
    # BLIP's interpolate_pos_embed = timm's resampler without antialias (bicubic, align_corners False).
    expected = resample_abs_pos_embed(
        pos, new_size=[4, 4], num_prefix_tokens=1, interpolation="bicubic", antialias=False
    )
    torch.testing.assert_close(loaded.visual_encoder.pos_embed, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(loaded.visual_encoder.pos_embed[:, 0], pos[:, 0], rtol=0, atol=0)


def test_interpolate_pos_embed_shapes():
    pos = torch.randn(1, 197, 8)
    assert interpolate_pos_embed(pos, 576).shape == (1, 577, 8)
    assert interpolate_pos_embed(pos, 196) is pos
    with pytest.raises(CheckpointError, match="square"):
        interpolate_pos_embed(torch.randn(1, 198, 8), 576)


def test_wrong_state_dict_names_the_keys(source, vocab_file):
    sd = pretrain_like(source)
    del sd["itm_head.weight"]
    sd["itm_head.extra"] = torch.zeros(2)
    sd["text_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as err:
        load_blip(sd, vocab_file, image_size=32, **tiny_fields(source))
    msg = str(err.value)
    assert "itm_head.weight" in msg and "itm_head.extra" in msg and "text_proj.weight" in msg


def test_missing_position_ids_fail_strictly(source, vocab_file):
    sd = pretrain_like(source)
    del sd["text_encoder.embeddings.position_ids"]
    with pytest.raises(CheckpointError, match="text_encoder.embeddings.position_ids"):
        load_blip(sd, vocab_file, image_size=32, **tiny_fields(source))


def test_finetuned_checkpoints_are_refused_with_a_hint(source, vocab_file):
    sd = {k: v for k, v in pretrain_like(source).items() if not k.startswith("text_decoder.")}
    with pytest.raises(CheckpointError, match="retrieval finetune.*model_base.pth"):
        load_blip(sd, vocab_file, image_size=32, **tiny_fields(source))
    sd = {k: v for k, v in pretrain_like(source).items() if not k.startswith("text_encoder.")}
    with pytest.raises(CheckpointError, match="caption finetune"):
        load_blip(sd, vocab_file, image_size=32, **tiny_fields(source))


def test_vocab_that_does_not_fit_the_checkpoint(source, tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tiny_vocab(extra_words=["zebra"])) + "\n")
    with pytest.raises(CheckpointError, match="vocab"):
        load_blip(pretrain_like(source), path, image_size=32, **tiny_fields(source))


def test_missing_files_are_reported(source, vocab_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab"):
        load_blip(pretrain_like(source), tmp_path / "missing_vocab.txt", image_size=32)
    with pytest.raises(CheckpointError, match="not found"):
        load_blip(tmp_path / "model_base.pth", vocab_file)


def test_bad_image_size_is_reported(source, vocab_file):
    with pytest.raises(ValueError, match="image_size=100 is not divisible by patch_size=16"):
        load_blip(pretrain_like(source), vocab_file, image_size=100)


def test_large_checkpoints_get_the_large_vision_tower(tmp_path):
    """model_large.pth: ViT-L/16 (1024 wide, 24 blocks); the text side cross-attends 1024-wide tokens."""
    from generation.blip import _infer_preset

    assert _infer_preset({"visual_encoder.cls_token": torch.empty(1, 1, 1024, device="meta")}) == BlipConfig.large
    assert _infer_preset({"visual_encoder.cls_token": torch.empty(1, 1, 768, device="meta")}) == BlipConfig.base
    with torch.device("meta"):
        model = BlipScorer(BlipConfig.large())
    sd = model.state_dict()
    assert len(model.visual_encoder.blocks) == 24
    assert tuple(sd["text_encoder.encoder.layer.0.crossattention.self.key.weight"].shape) == (768, 1024)
    assert tuple(sd["vision_proj.weight"].shape) == (256, 1024)
