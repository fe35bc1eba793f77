"""Render image files: PNG without metadata, under opaque random names, through Django's storage API.

Workers and the web process share one storage (``default_storage``): the same ``MEDIA_ROOT`` on
a shared disk, or an S3-compatible backend set through ``STORAGE_BACKEND``. A file name says
nothing about the image (DESIGN invariant 2); the Render row links the name to its objective.
"""

from __future__ import annotations

import io
import logging
import secrets

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

log = logging.getLogger(__name__)

RENDER_DIR = "renders"


def new_render_name() -> str:
    """A fresh opaque storage name, e.g. ``renders/Xy3...q.png`` (144 random bits)."""
    return f"{RENDER_DIR}/{secrets.token_urlsafe(18)}.png"


def png_from_pixels(pixels: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 pixels -> PNG bytes with no text, time, ICC or EXIF chunks."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {arr.dtype} {arr.shape}")
    return _png(Image.fromarray(np.ascontiguousarray(arr), mode="RGB"))


def png_reencoded(img: Image.Image) -> bytes:
    """Any decoded image -> RGB PNG of its pixels only (alpha dropped, metadata gone)."""
    rgb = img.convert("RGB")
    # A new image from raw bytes carries no info dict, so no metadata can survive.
    return _png(Image.frombytes("RGB", rgb.size, rgb.tobytes()))


def _png(img: Image.Image) -> bytes:
    img.info = {}
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def render_file_write(data: bytes, *, name: str | None = None) -> str:
    """Store PNG bytes under ``name`` (a fresh opaque one when None); returns the stored name.

    Storage backends may change a name that is taken; callers keep the returned name.
    """
    return default_storage.save(name or new_render_name(), ContentFile(data))


def render_file_delete(name: str) -> None:
    """Delete a stored file if it exists; never raises (used in clean-up paths)."""
    if not name:
        return
    try:
        default_storage.delete(name)
    except Exception:  # noqa: BLE001 - clean-up must not mask the error being handled
        log.warning("could not delete stored file %s", name, exc_info=True)


def render_files_listed() -> set[str]:
    """Names of every file under the render folder (tests and the orphan check)."""
    try:
        _dirs, files = default_storage.listdir(RENDER_DIR)
    except FileNotFoundError:
        return set()
    return {f"{RENDER_DIR}/{f}" for f in files}
