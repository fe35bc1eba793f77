"""The oracle: a small CNN trained on rendered scenes that reads objects back from an image.

For each of the 15 *slots* (shape x colour) it predicts how many such objects the image shows
(0-3), where they are (mean centre) and how big (mean radius). From that reading:

- :meth:`Oracle.alignment` -- the probability that an image satisfies a prompt of the toy
  grammar (counts, colours, sizes and relations checked from the predicted distributions,
  slots treated as independent), and :meth:`Oracle.hits` -- whether the single most likely
  reading satisfies it (the same rule as the ground truth :func:`captions.claim_true`).
- :meth:`Oracle.realism` -- the probability of the most likely full reading (close to 1 on clean
  rendered scenes, lower where objects are ambiguous, smeared or half drawn) times the
  probability that the image shows any object of the world at all (low for noise or blanks).
- :func:`frechet_distance` of the oracle's penultimate features between two image sets (the
  toy world's FID; 0 when the generated images are distributed like rendered scenes).

What they do not measure: alignment only knows the grammar's words; it cannot see anything
else in an image (a stray blob that is no shape of the world is ignored), treats the slots as
independent, and was never trained on generated images, so an image optimised against one
network may fool another (guidance is against BLIP, not this CNN, which limits but does not
exclude that). Confidence and the Fréchet distance measure "looks like a rendered scene to this
CNN", not photo-realism; they are blind to defects the CNN does not use (e.g. texture detail).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generation.toyworld import captions as C
from generation.toyworld.scenes import COLOR_NAMES, SHAPES, SIZES, Obj, Scene

SLOTS = tuple((s, c) for s in SHAPES for c in COLOR_NAMES)
SLOT_INDEX = {slot: i for i, slot in enumerate(SLOTS)}
MAX_COUNT = 3
SIZE_THRESHOLD = (SIZES["small"] + SIZES["big"]) / 2
_SOFT_TAU = 0.03  # soft-threshold width for positions and sizes, fraction of the side


@dataclass(frozen=True)
class OracleConfig:
    widths: tuple[int, int, int] = (24, 48, 96)
    hidden: int = 192

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "hidden": self.hidden}

    @classmethod
    def from_dict(cls, d: dict) -> "OracleConfig":
        return cls(widths=tuple(d["widths"]), hidden=int(d["hidden"]))


class OracleNet(nn.Module):
    """Conv net, 32x32 in ``[-1, 1]`` -> per slot: count logits (4), centre (2), radius (1)."""

    def __init__(self, config: OracleConfig = OracleConfig()):
        super().__init__()
        self.config = config
        layers, c_in = [], 3
        for j, w in enumerate(config.widths):  # 32 -> 16 -> 8 -> 4; one conv at full size (CPU cost)
            layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.BatchNorm2d(w), nn.SiLU()]
            if j:
                layers += [nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.SiLU()]
            layers.append(nn.AvgPool2d(2))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 16, config.hidden), nn.SiLU())
        self.head = nn.Linear(config.hidden, len(SLOTS) * (MAX_COUNT + 1 + 3))

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, hidden)`` (the Fréchet distance's space)."""
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        return self.fc(self.features(x.clamp(-1, 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(count_logits (B,15,4), xy (B,15,2) in [0,1], radius (B,15), features (B,hidden))``."""
        h = self.embed(x)
        out = self.head(h).view(x.shape[0], len(SLOTS), MAX_COUNT + 4)
        return out[..., : MAX_COUNT + 1], torch.sigmoid(out[..., MAX_COUNT + 1: MAX_COUNT + 3]), \
            0.3 * torch.sigmoid(out[..., -1]), h


def scene_targets(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts ``(15,)``, mean centres ``(15, 2)`` and mean radii ``(15,)`` of a scene (0 if absent)."""
    counts = np.zeros(len(SLOTS), np.int64)
    xy = np.zeros((len(SLOTS), 2), np.float32)
    rad = np.zeros(len(SLOTS), np.float32)
    for o in scene.objects:
        i = SLOT_INDEX[(o.shape, o.color)]
        counts[i] += 1
        xy[i] += (o.x, o.y)
        rad[i] += o.radius
    present = counts > 0
    xy[present] /= counts[present, None]
    rad[present] /= counts[present]
    return counts, xy, rad


@dataclass
class Reading:
    """The oracle's view of a batch: count probabilities, centres, radii (numpy, float64)."""

    probs: np.ndarray  # (B, 15, 4)
    xy: np.ndarray  # (B, 15, 2)
    radius: np.ndarray  # (B, 15)
    features: np.ndarray  # (B, hidden)

    def __len__(self) -> int:
        return self.probs.shape[0]

    def scene(self, i: int) -> Scene:
        """The most likely reading of image ``i`` as a scene (copies of a slot share its centre)."""
        objs = []
        for k, (shape, color) in enumerate(SLOTS):
            n = int(self.probs[i, k].argmax())
            size = "big" if self.radius[i, k] > SIZE_THRESHOLD else "small"
            objs += [Obj(shape, color, size, float(self.xy[i, k, 0]), float(self.xy[i, k, 1]))] * n
        return Scene(tuple(objs), (255, 255, 255))

    def describe(self, i: int) -> str:
        """Human-readable reading, e.g. ``"red circle x1 @(0.31,0.52) big; blue square x2"``."""
        parts = []
        for k, (shape, color) in enumerate(SLOTS):
            n = int(self.probs[i, k].argmax())
            if n:
                parts.append(f"{color} {shape} x{n} @({self.xy[i, k, 0]:.2f},{self.xy[i, k, 1]:.2f})")
        return "; ".join(parts) or "nothing"


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def _count_dist(probs: np.ndarray) -> np.ndarray:
    """Distribution of the total count over several independent slots ``(k, 4)`` -> ``(4k-k+1,)``."""
    out = np.array([1.0])
    for p in probs:
        out = np.convolve(out, p)
    return out


class Oracle:
    """A trained :class:`OracleNet` with the reading rules. Build with :func:`load_oracle`."""

    def __init__(self, net: OracleNet, device: torch.device | str = "cpu"):
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def read(self, images: Tensor | np.ndarray, batch_size: int = 256) -> Reading:
        """Read images: ``uint8 (B, H, W, 3)`` arrays or float ``(B, 3, H, W)`` tensors in [-1, 1]."""
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8 or images.ndim != 4:
                raise ValueError(f"numpy images must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
            images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        outs = []
        for start in range(0, images.shape[0], batch_size):
            logits, xy, rad, h = self.net(images[start: start + batch_size].to(self.device, torch.float32))
            outs.append((logits.softmax(-1), xy, rad, h))
        cat = [torch.cat([o[j] for o in outs]).double().cpu().numpy() for j in range(4)]
        return Reading(*cat)

    # -- per (image, prompt) ----------------------------------------------------------------

    @staticmethod
    def _phrase_slots(p: C.NounPhrase) -> list[int]:
        return [SLOT_INDEX[(p.shape, c)] for c in COLOR_NAMES if p.color in (None, c)]

    def _phrase_prob(self, r: Reading, i: int, p: C.NounPhrase) -> tuple[float, int]:
        slots = self._phrase_slots(p)
        dist = _count_dist(r.probs[i, slots])
        prob = float(1.0 - dist[0]) if p.count == 1 else float(dist[p.count]) if p.count < len(dist) else 0.0
        best = max(slots, key=lambda k: 1.0 - r.probs[i, k, 0])
        if p.size is not None:
            z = (r.radius[i, best] - SIZE_THRESHOLD) / (_SOFT_TAU / 3)
            prob *= _sigmoid(z if p.size == "big" else -z)
        return prob, best

    def alignment_one(self, r: Reading, i: int, claim: C.Claim) -> float:
        probs, slots = zip(*(self._phrase_prob(r, i, p) for p in claim.phrases))
        score = float(np.prod(probs))
        if claim.relation:
            (ax, ay), (bx, by) = r.xy[i, slots[0]], r.xy[i, slots[1]]
            dx, dy = bx - ax, by - ay
            along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[claim.relation]
            score *= _sigmoid((along - C.RELATION_MARGIN) / _SOFT_TAU) * _sigmoid((abs(along) - abs(across)) / _SOFT_TAU)
        return score

    def alignment(self, images, prompts: list[str] | str, reading: Reading | None = None) -> np.ndarray:
        """Soft alignment ``(B,)`` in [0, 1]: P(image satisfies its prompt) under the oracle."""
        r = reading if reading is not None else self.read(images)
        prompts = [prompts] * len(r) if isinstance(prompts, str) else list(prompts)
        return np.array([self.alignment_one(r, i, C.parse(p)) for i, p in enumerate(prompts)])

    def hits(self, images, prompts: list[str] | str, reading: Reading | None = None) -> np.ndarray:
        """Hard alignment ``(B,)`` bool: the most likely reading satisfies the prompt."""
        r = reading if reading is not None else self.read(images)
        prompts = [prompts] * len(r) if isinstance(prompts, str) else list(prompts)
        return np.array([C.claim_true(C.parse(p), r.scene(i)) for i, p in enumerate(prompts)])

    # -- realism proxies --------------------------------------------------------------------

    def confidence(self, images, reading: Reading | None = None) -> np.ndarray:
        """``(B,)`` probability of the most likely reading (product over slots of the max prob)."""
        r = reading if reading is not None else self.read(images)
        return np.exp(np.log(r.probs.max(-1)).sum(-1))

    def realism(self, images, reading: Reading | None = None) -> np.ndarray:
        """``(B,)`` realism proxy: confidence x P(the image shows at least one object of the world).

        Every scene of the world has an object, so "surely nothing here" (noise, a blank or a
        smear) is as unrealistic as an ambiguous reading; confidence alone would rate it high.
        """
        r = reading if reading is not None else self.read(images)
        p_empty = np.exp(np.log(r.probs[..., 0]).sum(-1))
        return self.confidence(None, reading=r) * (1.0 - p_empty)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` (FID's formula)."""
    from scipy import linalg

    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a, cov_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    covmean = np.asarray(linalg.sqrtm(cov_a @ cov_b)).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def load_oracle(weights_dir: str | os.PathLike | None = None, device: str = "cpu") -> Oracle:
    """The shipped oracle (``weights/oracle.pt``), checksum verified."""
    from generation.toyworld import store

    sd, info = store.load_state_dict("oracle", weights_dir or store.WEIGHTS_DIR)
    net = OracleNet(OracleConfig.from_dict(info["config"]))
    net.load_state_dict(sd, strict=True)
    return Oracle(net, device)
