"""Images as annotators receive them (DESIGN invariant 2): pixels only.

Every image is decoded and re-encoded as a fresh PNG: same dimensions, RGB, no text chunks, no
ICC profile, no EXIF, no physical size, nothing from the stored file but its pixels. The
"degraded" variant of an attention check (blur, blocky downscale, noise) is made here on the fly,
deterministically from the trial's image token, so the same trial always shows the same image.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image, ImageFilter

from studyapp.models import Render, Trial

_CACHE_SIZE = 128
_cache: OrderedDict[tuple, bytes] = OrderedDict()
_lock = threading.Lock()


def _pixels(render: Render) -> Image.Image:
    with render.image.open("rb") as f:
        src = Image.open(f)
        src.load()
        rgb = src.convert("RGB")
    # A new image from raw bytes carries no info dict: no metadata can survive.
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def degrade(img: Image.Image, *, seed_material: str) -> Image.Image:
    """Strong blur, a blocky downscale and noise; same size; deterministic in ``seed_material``."""
    w, h = img.size
    seed = int.from_bytes(hashlib.sha256(seed_material.encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    block = max(4, min(w, h) // 16)
    small = img.filter(ImageFilter.GaussianBlur(radius=max(2, block // 2))).resize(
        (max(1, w // block), max(1, h // block)), Image.Resampling.BILINEAR
    )
    blocky = small.resize((w, h), Image.Resampling.NEAREST)
    arr = np.asarray(blocky, dtype=np.float32)
    arr = arr + rng.normal(0.0, 40.0, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _encode(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def trial_image_png(trial: Trial, side: str) -> bytes:
    """The PNG bytes of one side of ``trial`` (``side`` is "left" or "right")."""
    render = trial.left_render if side == "left" else trial.right_render
    variant = trial.left_variant if side == "left" else trial.right_variant
    token = trial.left_token if side == "left" else trial.right_token
    key = (render.pk, render.image.name, variant, token if variant == Trial.Variant.DEGRADED else "")
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    img = _pixels(render)
    if variant == Trial.Variant.DEGRADED:
        img = degrade(img, seed_material=token)
    data = _encode(img)
    with _lock:
        _cache[key] = data
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return data
