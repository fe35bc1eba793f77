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


def build_toy_blip(*, seed: int = 0) -> BlipScorer:
    """A randomly initialised toy BLIP (training mode), deterministic from ``seed``."""
    tokenizer = BlipTokenizer(toy_vocab())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BlipScorer(toy_blip_config(len(tokenizer)), tokenizer)


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
