"""BLIP guidance through the predicted clean image x̂0 (Blended Diffusion's trick, §5 of the reference).

One grad-enabled UNet forward per step gives both the model output (reused by the sampler for
the mean and variance) and the graph for the gradient: the reference codes call the UNet twice
per step, once without grad in the sampler and once with grad in ``cond_fn``.

The gradient is assembled in two stages so that loss normalisation costs no extra UNet pass:

1. per loss term, ``∂L_j/∂x_in`` with respect to the guided image (backward through BLIP only),
   weighted and summed; ``normalization``: ``"none"`` (the losses as they are: Blended Diffusion,
   BLIP's own losses), ``"unit"`` (each term to unit RMS per sample, mixed by weight, then the mix
   to unit RMS: every objective pushes equally hard at one scale), ``"grad"`` (each term to unit
   RMS, mixed by weight; kept for old rounds: a 50/50 mix of two unit directions pushes only
   0.5·sqrt(2+2cos) as hard as one objective);
2. one vector-Jacobian product of that image-space gradient, plus the range loss on the pure x̂0
   (as Blended Diffusion applies it, whatever image BLIP sees), through x̂0(x_t): one UNet
   backward.

The result is ``g = -scale * ∂L/∂x_t``, the already-scaled ascent direction that
``condition_mean`` (μ + Σ·g) and ``condition_score`` expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from generation.diffusion import Diffusion
from generation.objectives import blip_losses, term_weights

Denoiser = Callable[[Tensor, Tensor], Tensor]
NORMALIZATIONS = ("none", "unit", "grad")


def range_loss(images: Tensor) -> Tensor:
    """``(B,)`` mean over pixels of the squared excess beyond [-1, 1] (reference codes' range loss)."""
    return (images - images.clamp(-1, 1)).pow(2).flatten(1).mean(1)


VIEW_AUGMENTS = ("crop_flip", "affine_perspective")


def _homography(src: Tensor, dst: Tensor) -> Tensor:
    """3x3 matrix H (float64) with H·src_k ∝ dst_k for four point pairs ``(4, 2)``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src.tolist(), dst.tolist()):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    h = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64))
    return torch.cat([h, torch.ones(1, dtype=torch.float64)]).view(3, 3)


def affine_perspective_view(img: Tensor, u: list[float]) -> Tensor:
    """One view in the manner of Blended Diffusion's kornia augmentations: with probability 0.7 a
    random affine map (rotation within ±15°, translation within ±10% of the side, border padding),
    then with probability 0.7 a random perspective (each corner moved inward by up to 0.7 of half the
    side). ``u``: 9 uniform numbers in [0, 1). Differentiable in ``img`` (one ``grid_sample``)."""
    # Output pixel (normalised coords) -> input pixel: compose the inverse maps.
    m = torch.eye(3, dtype=torch.float64)
    if u[0] < 0.7:
        angle = math.radians(-15 + 30 * u[1])
        tx, ty = (-0.1 + 0.2 * u[2]) * 2, (-0.1 + 0.2 * u[3]) * 2  # normalised coordinates span 2
        c, s_ = math.cos(angle), math.sin(angle)
        forward = torch.tensor([[c, -s_, tx], [s_, c, ty], [0, 0, 1]], dtype=torch.float64)
        m = torch.linalg.inv(forward) @ m
    if u[4] < 0.7:
        corners = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64)
        inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64)
        moved = corners + inward * 0.7 * torch.tensor(u[5:9], dtype=torch.float64).view(4, 1)
        m = _homography(moved, corners) @ m  # output corners are the moved ones: inverse maps them back
    _, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ m.T
    grid = (pts[..., :2] / pts[..., 2:]).to(img.dtype).to(img.device).expand(img.shape[0], -1, -1, -1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


def augmented_views(images: Tensor, num_views: int, size: int, generators: list[torch.Generator],
                    augment: str = "crop_flip") -> Tensor:
    """``(B * K, 3, size, size)`` views, image-major: the un-augmented image, then random crops/flips.

    ``"crop_flip"``: a crop covers 70-100% of the side at a uniform offset, half of them mirrored;
    ``"affine_perspective"``: :func:`affine_perspective_view`. Each image draws from its own CPU
    generator, so views do not depend on the batch or the objective.
    """
    if augment not in VIEW_AUGMENTS:
        raise ValueError(f"augment must be one of {VIEW_AUGMENTS}, not {augment!r}")
    b, _, h, w = images.shape
    resize = lambda x: F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)  # noqa: E731
    views = []
    for n in range(b):
        img = images[n : n + 1]
        views.append(resize(img))
        for _ in range(num_views - 1):
            if augment == "affine_perspective":
                views.append(resize(affine_perspective_view(img, torch.rand(9, generator=generators[n]).tolist())))
                continue
            u = torch.rand(4, generator=generators[n]).tolist()
            side = max(1, round(min(h, w) * (0.7 + 0.3 * u[0])))
            top, left = int(u[1] * (h - side + 1)), int(u[2] * (w - side + 1))
            crop = img[:, :, top : top + side, left : left + side]
            if u[3] < 0.5:
                crop = crop.flip(-1)
            views.append(resize(crop))
    return torch.cat(views)


def _unit_rms(g: Tensor) -> Tensor:
    """``g`` divided by its RMS per sample (a zero gradient stays zero)."""
    rms = g.pow(2).flatten(1).mean(1).sqrt().view(-1, *([1] * (g.ndim - 1)))
    return g / (rms + 1e-12)


@dataclass
class GuideStats:
    """Per-step diagnostics (detached floats), for callbacks and logs."""

    losses: dict[str, list[float]] = field(default_factory=dict)
    grad_rms: float = 0.0


class Guide:
    """Callable ``(x, i, k) -> (model_output, grad)`` for :func:`generation.sampling.sample`.

    Parameters
    ----------
    diffusion, denoiser: the (respaced) process and ``denoiser(x, t) -> (B, 6, H, W)`` float32.
    scorer: a ``BlipScorer``; ``text`` its ``TextBatch`` for the B prompts.
    objective, scale: which loss and its guidance scale (``scale=0`` leaves sampling unchanged).
    guided_image: ``"x0"`` (pure x̂0) or ``"blend"`` (x̂0·fac + x_t·(1−fac), fac = √(1−ᾱ_t)).
    normalization: ``"none"``, ``"unit"`` or ``"grad"`` (see the module docstring).
    views, view_generators: augmented views per image (1 = none) and one CPU generator per image;
        ``view_augment`` one of :data:`VIEW_AUGMENTS`.
    range_weight: weight of :func:`range_loss` on the pure x̂0, not multiplied by ``scale`` (as
        Blended Diffusion's ``range_lambda`` is independent of ``clip_guidance_lambda``); at
        ``scale=0`` there is no guidance at all, range loss included (the pilot's unguided anchor).
    autocast_dtype: ``torch.bfloat16`` to run BLIP under autocast, or ``None``.
    """

    def __init__(
        self, diffusion: Diffusion, denoiser: Denoiser, scorer, text, *, objective: str, scale: float,
        itc_loss: str = "cos", label_smoothing: float = 0.0, normalization: str = "grad",
        blend_weights: tuple[float, float] = (0.5, 0.5), guided_image: str = "x0", views: int = 1,
        view_generators: list[torch.Generator] | None = None, range_weight: float = 0.0,
        autocast_dtype: torch.dtype | None = None, view_augment: str = "crop_flip",
    ):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, not {normalization!r}")
        if view_augment not in VIEW_AUGMENTS:
            raise ValueError(f"view_augment must be one of {VIEW_AUGMENTS}, not {view_augment!r}")
        self.view_augment = view_augment
        if guided_image not in ("x0", "blend"):
            raise ValueError(f"guided_image must be 'x0' or 'blend', not {guided_image!r}")
        self.diffusion, self.denoiser, self.scorer, self.text = diffusion, denoiser, scorer, text
        self.objective, self.scale = objective, float(scale)
        self.itc_loss, self.label_smoothing, self.normalization = itc_loss, label_smoothing, normalization
        self.blend_weights, self.guided_image = blend_weights, guided_image
        self.views, self.view_generators, self.range_weight = views, view_generators, range_weight
        self.autocast_dtype = autocast_dtype
        self.last = GuideStats()
        # Per step, per image: range excess of the unclipped x̂0, the pilot's over-guidance signal.
        self.range_excess_history: list[Tensor] = []
        if views > 1 and (view_generators is None):
            raise ValueError("views > 1 needs one view generator per image")

    def image_gradient(self, images: Tensor, k: int) -> Tensor:
        """``∂L/∂images`` ``(B, 3, H, W)`` of the objective's weighted (and normalised) loss at step ``k``."""
        n = self.diffusion.num_timesteps
        weights = term_weights(self.objective, step=k, num_steps=n, blend_itc=self.blend_weights[0], blend_cap=self.blend_weights[1])
        b = images.shape[0]
        leaf = images.detach().requires_grad_(True)
        grad = torch.zeros_like(leaf)
        with torch.enable_grad():
            if weights:
                size = self.scorer.config.image_size
                x = augmented_views(leaf, self.views, size, self.view_generators, self.view_augment) if self.views > 1 else leaf
                with torch.autocast(leaf.device.type, dtype=self.autocast_dtype or torch.bfloat16, enabled=self.autocast_dtype is not None):
                    emb = self.scorer.image_embeds(x)
                    losses = blip_losses(self.scorer, emb, self.text_for(b), set(weights), itc_loss=self.itc_loss, label_smoothing=self.label_smoothing)
                # Mean over views per image; summed over the batch so each image gets its own gradient.
                losses = {j: v.float().view(b, -1).mean(1) for j, v in losses.items()}
                self.last.losses = {j: v.detach().cpu().tolist() for j, v in losses.items()}
                if self.normalization == "none":
                    total = sum(w * losses[j].sum() for j, w in weights.items())
                    grad = grad + torch.autograd.grad(total, leaf)[0]
                else:
                    terms = list(weights)
                    for idx, j in enumerate(terms):
                        g = torch.autograd.grad(losses[j].sum(), leaf, retain_graph=idx < len(terms) - 1)[0]
                        grad = grad + weights[j] * _unit_rms(g)
                    if self.normalization == "unit":
                        grad = _unit_rms(grad)
        return grad

    def text_for(self, batch: int):
        """The prompts repeated per view (image-major), matching :func:`augmented_views`."""
        if self.views == 1 or len(self.text) == 1:
            return self.text
        idx = torch.arange(len(self.text), device=self.text.ids.device).repeat_interleave(self.views)
        t = self.text
        return type(t)(
            [t.texts[i] for i in idx.tolist()], t.ids[idx], t.mask[idx], t.itm_ids[idx], t.cap_ids[idx],
            t.cap_mask[idx], t.cap_labels[idx], None if t.itc_feat is None else t.itc_feat[idx],
        )

    def __call__(self, x: Tensor, i: int, k: int) -> tuple[Tensor, Tensor]:
        """One guided step's UNet output ``(B, 6, H, W)`` (detached) and gradient ``g`` ``(B, 3, H, W)``.

        ``i`` indexes the respaced schedule; the UNet receives the original timestep
        ``timestep_map[i]``; ``k`` counts sampling steps from the noisiest (SHIFT's progress).
        """
        d = self.diffusion
        x_in = x.detach().requires_grad_(True)
        with torch.enable_grad():
            model_output = self.denoiser(x_in, d.model_timestep(i, x.shape[0], x.device))
            c = x.shape[1]
            # Unclipped x̂0 (clip_denoised=False in both reference codes' guidance branch).
            x0 = d.predict_xstart(x_in, i, model_output[:, :c])
            self.range_excess_history.append(range_loss(x0.detach()).float().cpu())
            guided = x0
            if self.guided_image == "blend":
                fac = math.sqrt(1.0 - float(d.alphas_cumprod[i]))
                guided = x0 * fac + x_in * (1 - fac)
            g_img = self.image_gradient(guided, k)
            # <guided, g_img> has the gradient g_img w.r.t. the guided image: one backward carries
            # the BLIP gradient and the range loss on x̂0 through the UNet together.
            surrogate = self.scale * (guided * g_img).sum()
            if self.range_weight and self.scale:
                surrogate = surrogate + self.range_weight * range_loss(x0).sum()
            grad = -torch.autograd.grad(surrogate, x_in)[0]
        self.last.grad_rms = float(grad.pow(2).mean().sqrt())
        return model_output.detach(), grad
