"""Procedural scenes: one to three coloured shapes on a plain or textured pastel background.

A :class:`Scene` is a list of :class:`Obj` (shape, colour, size, centre) and a background; it is
sampled from an explicit ``numpy.random.Generator`` and rendered with PIL at 4x the target size
then box-filtered down, so edges are anti-aliased and the result is byte-identical for a seed.

Coordinates are fractions of the image side, ``x`` to the right and ``y`` downwards, so "left of"
means a smaller ``x`` and "above" a smaller ``y``. Objects never overlap (their bounding circles
keep a gap), which keeps counting and relations well defined for the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLORS = {
    "red": (214, 39, 40),
    "green": (34, 160, 60),
    "blue": (31, 84, 220),
    "yellow": (240, 196, 25),
    "purple": (140, 60, 180),
}
COLOR_NAMES = tuple(COLORS)
SIZES = {"small": 0.13, "big": 0.21}  # radius of the bounding circle, fraction of the side
SIZE_NAMES = tuple(SIZES)
TEXTURES = ("plain", "stripes", "noise")

IMAGE_SIZE = 32
_SUPERSAMPLE = 4
_GAP = 0.04  # minimum gap between bounding circles, fraction of the side


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str
    x: float  # centre, fraction of the side, left -> right
    y: float  # centre, fraction of the side, top -> bottom

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: tuple[int, int, int]
    texture: str = "plain"
    texture_seed: int = 0
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def count(self, shape: str, color: str | None = None) -> int:
        return sum(o.shape == shape and (color is None or o.color == color) for o in self.objects)


# ------------------------------------------------------------------------------------------------
# Sampling


def _pastel(rng: np.random.Generator) -> tuple[int, int, int]:
    """A light, low-saturation colour: a random hue mixed 75-85% with white."""
    base = rng.uniform(0, 255, size=3)
    w = rng.uniform(0.75, 0.85)
    return tuple(int(round(c)) for c in base * (1 - w) + 255 * w)


def place_objects(
    rng: np.random.Generator, specs: list[tuple[str, str, str]], *, max_tries: int = 200
) -> tuple[Obj, ...] | None:
    """Put objects ``(shape, colour, size)`` at random non-overlapping positions (None if stuck)."""
    placed: list[Obj] = []
    for shape, color, size in specs:
        r = SIZES[size]
        for _ in range(max_tries):
            x, y = rng.uniform(r + 0.02, 1 - r - 0.02, size=2)
            if all((x - o.x) ** 2 + (y - o.y) ** 2 > (r + o.radius + _GAP) ** 2 for o in placed):
                placed.append(Obj(shape, color, size, float(x), float(y)))
                break
        else:
            return None
    return tuple(placed)


def random_background(rng: np.random.Generator) -> tuple[tuple[int, int, int], str, int]:
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))] if rng.random() < 0.5 else "plain"
    return _pastel(rng), texture, int(rng.integers(2**31))


def sample_scene(rng: np.random.Generator, *, n_objects: int | None = None) -> Scene:
    """A random scene: 1-3 objects of random kinds, or (one time in four) 2-3 copies of one kind.

    Copies of one kind make counting scenes ("two red circles") common enough to learn from.
    """
    while True:
        n = int(rng.integers(1, 4)) if n_objects is None else n_objects
        if n >= 2 and n_objects is None and rng.random() < 0.25:
            kind = (SHAPES[rng.integers(len(SHAPES))], COLOR_NAMES[rng.integers(len(COLOR_NAMES))])
            specs = [(*kind, SIZE_NAMES[rng.integers(2)]) for _ in range(n)]
        else:
            specs = [
                (SHAPES[rng.integers(len(SHAPES))], COLOR_NAMES[rng.integers(len(COLOR_NAMES))],
                 SIZE_NAMES[rng.integers(2)])
                for _ in range(n)
            ]
        objs = place_objects(rng, specs)
        if objs is not None:
            bg, texture, tseed = random_background(rng)
            return Scene(objs, bg, texture, tseed)


def scene_for_seed(seed: int, **kwargs) -> Scene:
    """The scene of an integer seed (a fresh ``PCG64`` generator, nothing global)."""
    return sample_scene(np.random.default_rng(seed), **kwargs)


# ------------------------------------------------------------------------------------------------
# Rendering


def _background_array(scene: Scene, size: int) -> np.ndarray:
    bg = np.broadcast_to(np.asarray(scene.background, dtype=np.float64), (size, size, 3)).copy()
    if scene.texture == "plain":
        return bg
    rng = np.random.default_rng(scene.texture_seed)
    if scene.texture == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.15, 0.3) * size
        yy, xx = np.mgrid[0:size, 0:size]
        wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        return np.clip(bg - 18.0 * (wave[..., None] > 0), 0, 255)
    # "noise": smooth blotches, a coarse random grid upsampled bilinearly
    coarse = rng.normal(0, 1, size=(5, 5)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float64)
    return np.clip(bg + 10.0 * smooth[..., None], 0, 255)


def _draw(draw: ImageDraw.ImageDraw, o: Obj, side: int) -> None:
    cx, cy, r = o.x * side, o.y * side, o.radius * side
    fill = COLORS[o.color]
    if o.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif o.shape == "square":
        h = 0.82 * r  # about the circle's area
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif o.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)], fill=fill)
    else:
        raise ValueError(f"unknown shape {o.shape!r}; shapes are {SHAPES}")


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene as ``uint8`` ``(size, size, 3)`` RGB."""
    big = size * _SUPERSAMPLE
    canvas = Image.fromarray(_background_array(scene, big).round().astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(canvas)
    for o in scene.objects:
        _draw(draw, o, big)
    return np.asarray(canvas.resize((size, size), Image.BOX), dtype=np.uint8)


def to_tensor_range(images: np.ndarray) -> np.ndarray:
    """``uint8 (N, H, W, 3)`` -> ``float32 (N, 3, H, W)`` in ``[-1, 1]`` (the diffusion convention)."""
    return (images.astype(np.float32).transpose(0, 3, 1, 2) / 127.5) - 1.0


def render_many(scenes: list[Scene], size: int = IMAGE_SIZE) -> np.ndarray:
    return np.stack([render(s, size) for s in scenes])
