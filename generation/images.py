"""The one conversion between model images (``[-1, 1]`` floats) and uint8 pixels / PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, H, W, 3)`` uint8, rounding to nearest (values clamped)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
    x = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(pixels: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """``(B, H, W, 3)`` or ``(H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 in ``[-1, 1]``."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., H, W, 3) pixels, got {arr.dtype} {arr.shape}")
    if arr.ndim == 3:
        arr = arr[None]
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1).to(device)


def to_pil(pixels: np.ndarray) -> Image.Image:
    """``(H, W, 3)`` uint8 -> RGB PIL image."""
    return Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="RGB")


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG of ``(H, W, 3)`` uint8 pixels with no metadata chunks (nothing that could unblind)."""
    buf = io.BytesIO()
    img = to_pil(pixels)
    img.info = {}
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
