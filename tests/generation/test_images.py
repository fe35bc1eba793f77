"""The [-1, 1] <-> uint8 conversion and metadata-free PNGs."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from generation.images import from_uint8, png_bytes, to_uint8


def test_round_trip_and_clamping():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    px = to_uint8(x)
    assert px.shape == (1, 1, 6, 3) and px.dtype == np.uint8
    assert px[0, 0, :, 0].tolist() == [0, 0, 128, 191, 255, 255]
    all_px = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 16, 16, 3)
    assert np.array_equal(to_uint8(from_uint8(all_px)), all_px)
    with pytest.raises(ValueError):
        to_uint8(torch.zeros(3, 4, 4))


def test_png_has_no_metadata_chunks():
    px = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    data = png_bytes(px)
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos + 4 : pos + 8].decode())
        pos += 12 + length
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), px)
