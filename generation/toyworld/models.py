"""Configs of the toy models and loaders of the shipped weights (checksums verified).

The toy BLIP is :class:`generation.blip.BlipScorer` with a small config and the world's own
vocabulary (BERT specials, characters, ``##`` continuations and the grammar's words, built by
:func:`generation.tokenization.tiny_vocab`); the toy UNet is
:class:`generation.unet.UNetModel` with a small config. Both load strictly.
"""

from __future__ import annotations

import os

import torch

from generation.blip import BlipConfig, BlipScorer
from generation.checkpoints import load_strict
from generation.tokenization import BlipTokenizer, tiny_vocab
from generation.toyworld import store
from generation.toyworld.captions import WORDS


def toy_vocab() -> list[str]:
    return tiny_vocab(extra_words=WORDS)


def toy_blip_config(vocab_size: int, **overrides) -> BlipConfig:
    """32x32 input, patch 4 (64 patches), width 64, 2 layers each side, 2 heads (CPU budget)."""
    fields = dict(
        image_size=32, patch_size=4, vision_width=64, vision_depth=2, vision_heads=2,
        vocab_size=vocab_size, text_width=64, text_layers=2, text_heads=2, text_intermediate=256,
        max_position_embeddings=48, embed_dim=64, text_max_length=24, cap_max_length=28,
    )
    fields.update(overrides)
    return BlipConfig(**fields)


def sincos_pos_embed(grid: int, dim: int) -> torch.Tensor:
    """``(1, 1 + grid*grid, dim)`` 2D sine-cosine position embedding (MAE's), zeros for the class token.

    Half the channels encode the row, half the column, at ``dim // 4`` geometric frequencies.
    """
    if dim % 4:
        raise ValueError(f"a 2D sine-cosine embedding needs a width divisible by 4, not {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    pos = torch.arange(grid, dtype=torch.float64)
    yy, xx = torch.meshgrid(pos, pos, indexing="ij")
    parts = []
    for axis in (yy.flatten(), xx.flatten()):
        angles = axis[:, None] * freqs[None, :]
        parts += [angles.sin(), angles.cos()]
    emb = torch.cat([torch.zeros(1, dim, dtype=torch.float64), torch.cat(parts, dim=1)])
    return emb.float()[None]


def build_toy_blip(*, seed: int = 0, pos_init: str = "random", **config_overrides) -> BlipScorer:
    """A randomly initialised toy BLIP (training mode), deterministic from ``seed``.

    ``pos_init="sincos"`` starts the ViT's (learned) position embedding from
    :func:`sincos_pos_embed` instead of timm's small random one, so patch tokens carry their
    place from the first step (relations between objects need it); the keys are the same.
    ``config_overrides`` change :func:`toy_blip_config`'s fields (e.g. ``text_layers=4``); the
    manifest records the whole config, so :func:`load_toy_blip` needs nothing more.
    """
    if pos_init not in ("random", "sincos"):
        raise ValueError(f"pos_init must be 'random' or 'sincos', not {pos_init!r}")
    tokenizer = BlipTokenizer(toy_vocab())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipScorer(toy_blip_config(len(tokenizer), **config_overrides), tokenizer)
    if pos_init == "sincos":
        c = model.config
        with torch.no_grad():
            model.visual_encoder.pos_embed.copy_(sincos_pos_embed(c.image_size // c.patch_size, c.vision_width))
    return model


def load_toy_blip(weights_dir: str | os.PathLike | None = None, device: str = "cpu") -> BlipScorer:
    """The shipped toy BLIP (eval mode, frozen), from ``weights/blip.pt`` after its checksum."""
    sd, info = store.load_state_dict("blip", weights_dir or store.WEIGHTS_DIR)
    tokenizer = BlipTokenizer(info["vocab"])
    model = BlipScorer(BlipConfig(**info["config"]), tokenizer)
    load_strict(model, sd, what="toy BLIP weights/blip.pt")
    return model.to(device).eval().requires_grad_(False)


def load_toy_unet(weights_dir: str | os.PathLike | None = None, device: str = "cpu"):
    """The shipped toy UNet (EMA weights; eval mode, frozen), strictly loaded after its checksum."""
    from generation.unet import UNetConfig, UNetModel

    sd, info = store.load_state_dict("unet", weights_dir or store.WEIGHTS_DIR)
    model = UNetModel(UNetConfig.from_flags(**info["flags"]))
    load_strict(model, sd, what="toy UNet weights/unet.pt")
    return model.to(device).eval().requires_grad_(False)


def checkpoint_ids(weights_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """``{"toyworld/<file>": sha256}`` of the shipped weights, for provenance."""
    return {f"toyworld/{e['file']}": e["sha256"] for e in store.read_manifest(weights_dir or store.WEIGHTS_DIR).values()}
