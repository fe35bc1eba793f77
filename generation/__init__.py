"""Framework-free generation core: guided-diffusion UNet steered by BLIP.

``import generation`` stays light (no torch): the public functions load their modules on
first use.

- ``generation.load_unet(path_or_state_dict, **guided_diffusion_flags)`` -> ``UNetModel``
- ``generation.load_blip(path_or_state_dict, vocab_file, image_size=384, **cfg)`` -> ``BlipScorer``
"""

from __future__ import annotations

import importlib

_LAZY = {"load_unet": "generation.unet", "load_blip": "generation.blip"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'generation' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
