"""UNet: the 256x256 uncond checkpoint's keys/shapes, strict loading, and the layer conventions."""

import math

import numpy as np
import pytest
import torch

from generation.checkpoints import CheckpointError, read_keys_tsv
from generation.weights import KEYS_DIR
from generation.nn import GroupNorm32, timestep_embedding
from generation.unet import (
    TINY_FLAGS, UNCOND_256_FLAGS, AttentionBlock, ResBlock, UNetConfig, UNetModel, load_unet,
    qkv_attention_legacy, qkv_attention_new_order,
)

LISTING = read_keys_tsv(KEYS_DIR / "guided_diffusion_256x256_uncond.keys.tsv")


def meta_256():
    with torch.device("meta"):
        return UNetModel(UNetConfig.from_flags(**UNCOND_256_FLAGS))


def listing_state_dict():
    return {k: torch.empty(shape, device="meta") for k, shape in LISTING.items()}


def test_full_model_on_meta_has_exactly_the_listing():
    model = meta_256()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(LISTING) == 566
    assert got == LISTING
    assert list(got) == list(LISTING)  # same order as the checkpoint, too
    assert sum(v.numel() for v in model.state_dict().values()) == 552_814_086
    # Attention weights are Conv1d-shaped, which a Linear port would get wrong.
    assert got["input_blocks.10.1.qkv.weight"] == (1536, 512, 1)


def test_listing_state_dict_loads_strictly():
    model = load_unet(listing_state_dict(), **UNCOND_256_FLAGS)
    assert isinstance(model, UNetModel)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.config.out_channels == 6


def test_default_flags_are_the_256_uncond_checkpoint():
    model = load_unet(listing_state_dict())
    assert model.config.num_head_channels == 64 and model.config.image_size == 256


def test_wrong_state_dict_names_the_keys():
    sd = listing_state_dict()
    del sd["middle_block.1.qkv.weight"]
    sd["middle_block.1.qkv_linear.weight"] = torch.empty(3072, 1024, device="meta")
    with pytest.raises(CheckpointError) as err:
        load_unet(sd, **UNCOND_256_FLAGS)
    msg = str(err.value)
    assert "missing" in msg and "middle_block.1.qkv.weight" in msg
    assert "unexpected" in msg and "middle_block.1.qkv_linear.weight" in msg


def test_linear_shaped_attention_weight_fails_on_shape():
    sd = listing_state_dict()
    sd["input_blocks.10.1.qkv.weight"] = torch.empty(1536, 512, device="meta")
    with pytest.raises(CheckpointError, match=r"input_blocks\.10\.1\.qkv\.weight.*\(1536, 512\)"):
        load_unet(sd, **UNCOND_256_FLAGS)


def test_wrong_flags_are_reported_as_key_mismatch():
    flags = {**UNCOND_256_FLAGS, "use_scale_shift_norm": False}
    with pytest.raises(CheckpointError, match="emb_layers"):
        load_unet(listing_state_dict(), **flags)


def test_unknown_flag_is_named():
    with pytest.raises(TypeError, match="num_chanels"):
        UNetConfig.from_flags(num_chanels=256)
    with pytest.raises(ValueError, match="channel_mult"):
        UNetConfig.from_flags(image_size=48)


def test_tiny_round_trip_through_a_file(tmp_path, tiny_unet_model):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_unet_model.state_dict(), path)
    loaded = load_unet(path, **TINY_FLAGS)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 900])
    with torch.no_grad():
        assert torch.equal(loaded(x, t), tiny_unet_model(x, t))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_unet(path, **TINY_FLAGS)
    with pytest.raises(CheckpointError, match="not found"):
        load_unet(tmp_path / "absent.pt", **TINY_FLAGS)


def test_output_shape_and_timestep_dependence(tiny_unet_model):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = tiny_unet_model(x, torch.tensor([5, 5, 5]))
        b = tiny_unet_model(x, torch.tensor([800, 800, 800]))
    assert a.shape == (3, 6, 16, 16)
    assert not torch.allclose(a, b)


def test_timestep_embedding_is_cos_first():
    t = torch.tensor([0.0, 3.0, 999.0])
    emb = timestep_embedding(t, 8).double().numpy()
    freqs = np.exp(-math.log(10000) * np.arange(4) / 4)
    args = t.double().numpy()[:, None] * freqs[None]
    np.testing.assert_allclose(emb, np.concatenate([np.cos(args), np.sin(args)], 1), atol=1e-4)
    assert np.all(emb[0, :4] == 1) and np.all(emb[0, 4:] == 0)


def test_legacy_attention_splits_heads_before_qkv():
    g = torch.Generator().manual_seed(0)
    heads, c, length = 2, 4, 5
    qkv = torch.randn(1, 3 * heads * c, length, generator=g)
    out = qkv_attention_legacy(qkv, heads)
    expected = []
    for h in range(heads):
        block = qkv[0, h * 3 * c : (h + 1) * 3 * c]  # [q_h | k_h | v_h]
        q, k, v = block[:c], block[c : 2 * c], block[2 * c :]
        w = torch.softmax(q.T @ k / math.sqrt(c), dim=-1)  # (T, S)
        expected.append((w @ v.T).T)
    torch.testing.assert_close(out[0], torch.cat(expected), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out, qkv_attention_new_order(qkv, heads))


def test_attention_block_weights_are_conv1d():
    block = AttentionBlock(64, num_head_channels=32)
    assert block.num_heads == 2
    assert block.qkv.weight.shape == (192, 64, 1) and block.proj_out.weight.shape == (64, 64, 1)


def test_scale_shift_norm_takes_scale_then_shift():
    torch.manual_seed(0)
    block = ResBlock(32, 8, 0.0, use_scale_shift_norm=True).eval()
    scale, shift = torch.full((32,), 0.5), torch.full((32,), -0.25)
    with torch.no_grad():
        block.emb_layers[1].weight.zero_()
        block.emb_layers[1].bias.copy_(torch.cat([scale, shift]))
        block.out_layers[3].weight.normal_()
    x, emb = torch.randn(1, 32, 4, 4), torch.randn(1, 8)
    with torch.no_grad():
        h = block.in_layers(x)
        h = block.out_layers[0](h) * 1.5 - 0.25
        expected = x + block.out_layers[3](torch.nn.functional.silu(h))
        torch.testing.assert_close(block(x, emb), expected)


def test_up_down_resblocks_resample_without_parameters():
    down, up = ResBlock(32, 8, 0.0, down=True), ResBlock(32, 8, 0.0, up=True)
    x, emb = torch.randn(1, 32, 8, 8), torch.randn(1, 8)
    assert down(x, emb).shape == (1, 32, 4, 4) and up(x, emb).shape == (1, 32, 16, 16)
    names = {k for k, _ in down.named_parameters()}
    assert not any("upd" in k for k in names) and not any(k.startswith("skip") for k in names)


def test_groupnorm_runs_in_fp32():
    norm = GroupNorm32(32, 64)
    x = (torch.randn(2, 64, 4, 4) * 100 + 1000).bfloat16()
    out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, norm(x.float()).bfloat16())


def test_bf16_autocast_path_is_close_to_fp32(tiny_unet_model):
    from generation.pipeline import make_denoiser

    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([100, 600])
    with torch.no_grad():
        ref = make_denoiser(tiny_unet_model, "fp32")(x, t)
        low = make_denoiser(tiny_unet_model, "bf16")(x, t)
    assert low.dtype == torch.float32
    rel = (low - ref).norm() / ref.norm()
    assert 0 < rel < 0.05


def test_full_model_flops_match_the_reference_count():
    """Ref §8 counts 2.240 TFLOP forward and 4.491 TFLOP forward+backward-to-input per 256² image."""
    from torch.utils.flop_counter import FlopCounterMode

    model = meta_256().requires_grad_(False)
    x = torch.empty(1, 3, 256, 256, device="meta", requires_grad=True)
    t = torch.zeros(1, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as fwd:
        model(x, t)
    with FlopCounterMode(display=False) as both:
        model(x, t).sum().backward()
    assert fwd.get_total_flops() / 1e12 == pytest.approx(2.240, abs=5e-4)
    assert both.get_total_flops() / 1e12 == pytest.approx(4.491, abs=5e-4)
