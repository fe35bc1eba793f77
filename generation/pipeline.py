"""From a :class:`GenerationSpec`, prompts and seeds to images with scores and provenance.

Paired sampling: image ``n`` draws its initial and per-step noise from its own CPU
``torch.Generator`` seeded by :func:`noise_seed` (round seed, prompt, seed) — never by the
objective — so images of different objectives differ only by their guidance, and an image does
not depend on which other images share its batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from generation.checkpoints import CheckpointError, sha256_file
from generation.diffusion import Diffusion
from generation.guidance import Guide
from generation.images import from_uint8, to_uint8
from generation.objectives import final_scores
from generation.provenance import environment
from generation.sampling import per_image_noise, sample
from generation.spec import OBJECTIVES, GenerationSpec
from generation.unet import UNCOND_256_FLAGS, UNetModel, load_unet, tiny_unet
from generation.weights import PRESET_FILES, weights_dir as resolve_weights_dir

TINY_SEED = 0


@dataclass
class Models:
    """Frozen networks on one device, and what they were built from (for provenance)."""

    unet: UNetModel
    blip: torch.nn.Module
    device: torch.device
    checkpoints: dict[str, str]  # file name -> sha256, or preset -> "random:seed=N"
    unet_preset: str
    blip_preset: str


@dataclass
class RenderResult:
    """One rendered image: ``image`` ``(H, W, 3)`` uint8; ``scores`` of the final image; ``provenance``."""

    image: np.ndarray
    scores: dict[str, float]
    provenance: dict


def noise_seed(round_seed: int, prompt: str, seed: int) -> int:
    """Stable 63-bit seed of (round seed, prompt, seed) from sha256; the objective is not an input."""
    payload = json.dumps([int(round_seed), prompt, int(seed)], ensure_ascii=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(payload.encode("ascii")).digest()[:8], "big") & (2**63 - 1)


def _view_seed(nseed: int) -> int:
    """Augmentation randomness gets its own stream, so views never shift the diffusion noise."""
    return int.from_bytes(hashlib.sha256(f"views:{nseed}".encode()).digest()[:8], "big") & (2**63 - 1)


def load_models(spec: GenerationSpec, *, weights_dir: str | os.PathLike | None, device: str | torch.device) -> Models:
    """Build the UNet and BLIP that ``spec`` names.

    Tiny presets are random weights from a fixed seed and read no file. Real presets read
    ``weights_dir`` (or ``$WEIGHTS_DIR``), load strictly and record each file's sha256.

    Raises
    ------
    CheckpointError: a missing, corrupt or mismatching file; the message says how to fix it.
    """
    from generation.blip import BlipScorer, load_blip, tiny_blip

    device = torch.device(device)
    checkpoints: dict[str, str] = {}

    def path_of(name: str):
        path = resolve_weights_dir(weights_dir) / name
        if not path.is_file():
            raise CheckpointError(
                f"{path} not found. Run `python -m generation fetch-weights --dir {path.parent}` where a "
                f"network is available, or copy {name} there (spec presets: unet={spec.unet!r}, blip={spec.blip!r}; "
                f"or choose the 'toy' preset, which renders on a CPU without checkpoints)"
            )
        return path

    if spec.unet == "tiny":
        unet = tiny_unet(seed=TINY_SEED)
        checkpoints["unet:tiny"] = f"random:seed={TINY_SEED}"
    elif spec.unet == "toy":
        # The toy world's trained weights ship in the package (checksummed); WEIGHTS_DIR is not read.
        from generation.toyworld import models as toy

        unet = toy.load_toy_unet()
        checkpoints.update({k: v for k, v in toy.checkpoint_ids().items() if k.endswith("/unet.pt")})
    else:
        (name,) = PRESET_FILES[spec.unet]
        path = path_of(name)
        unet = load_unet(path, **UNCOND_256_FLAGS)
        checkpoints[name] = sha256_file(path)

    text_options = dict(itm_first_token=spec.itm_first_token, cap_prompt=spec.cap_prompt)
    if spec.blip == "tiny":
        base = tiny_blip(seed=TINY_SEED, image_size=spec.blip_image_size)
        # Same random weights, the spec's text-side options.
        blip = BlipScorer(dataclasses.replace(base.config, **text_options), base.tokenizer)
        blip.load_state_dict(base.state_dict())
        blip = blip.eval().requires_grad_(False)
        checkpoints["blip:tiny"] = f"random:seed={TINY_SEED}"
    elif spec.blip == "toy":
        from generation.toyworld import models as toy

        base = toy.load_toy_blip()
        blip = BlipScorer(dataclasses.replace(base.config, **text_options), base.tokenizer)
        blip.load_state_dict(base.state_dict())
        blip = blip.eval().requires_grad_(False)
        checkpoints.update({k: v for k, v in toy.checkpoint_ids().items() if k.endswith("/blip.pt")})
    else:
        ckpt_name, vocab_name = PRESET_FILES[spec.blip]
        ckpt, vocab = path_of(ckpt_name), path_of(vocab_name)
        blip = load_blip(ckpt, vocab, image_size=spec.blip_image_size, **text_options)
        checkpoints[ckpt_name] = sha256_file(ckpt)
        checkpoints[vocab_name] = sha256_file(vocab)
    return Models(unet.to(device), blip.to(device), device, checkpoints, spec.unet, spec.blip)


def make_denoiser(unet: UNetModel, precision: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(x, t) -> (B, 6, H, W)`` float32; ``"bf16"`` runs the UNet under bf16 autocast."""
    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = unet(x, t)
        return out.float()

    return denoise


def _check_models(models: Models, spec: GenerationSpec) -> None:
    c = models.blip.config
    wrong = [
        f"{name}: models have {have!r}, spec has {want!r}"
        for name, have, want in (
            ("unet", models.unet_preset, spec.unet), ("blip", models.blip_preset, spec.blip),
            ("blip_image_size", c.image_size, spec.blip_image_size),
            ("itm_first_token", c.itm_first_token, spec.itm_first_token), ("cap_prompt", c.cap_prompt, spec.cap_prompt),
        )
        if have != want
    ]
    if wrong:
        raise ValueError("models were loaded for another spec (" + "; ".join(wrong) + "); call load_models(spec, ...)")


def render_batch(
    models: Models, spec: GenerationSpec, *, objective: str, prompts: list[str], seeds: list[int],
    round_seed: int = 0, callback: Callable[[int, int], None] | None = None,
) -> list[RenderResult]:
    """Render one image per (prompt, seed) with ``objective``'s guidance.

    Images are processed ``spec.batch_size`` at a time; each has its own noise generator, so
    splitting a batch changes no image. Deterministic on CPU.

    Parameters
    ----------
    objective: one of :data:`OBJECTIVES`.
    prompts, seeds: same length; image ``n`` is (prompts[n], seeds[n]).
    callback: ``callback(steps_done, steps_total)`` after every sampling step (progress).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: pass one seed per prompt")
    _check_models(models, spec)
    diffusion = Diffusion(spec.respacing)
    chunks = [range(s, min(s + spec.batch_size, len(prompts))) for s in range(0, len(prompts), spec.batch_size)]
    total = diffusion.num_timesteps * len(chunks)
    results: list[RenderResult] = []
    for c, idx in enumerate(chunks):
        progress = None
        if callback is not None:
            progress = lambda k, n, *_ , c=c: callback(c * n + k + 1, total)  # noqa: E731
        results += _render_chunk(
            models, spec, diffusion, objective, [prompts[i] for i in idx], [seeds[i] for i in idx], round_seed, progress
        )
    return results


def _render_chunk(models, spec, diffusion, objective, prompts, seeds, round_seed, progress) -> list[RenderResult]:
    device, unet, blip = models.device, models.unet, models.blip
    nseeds = [noise_seed(round_seed, p, s) for p, s in zip(prompts, seeds)]
    gens = [torch.Generator().manual_seed(n) for n in nseeds]
    view_gens = [torch.Generator().manual_seed(_view_seed(n)) for n in nseeds]
    size = unet.config.image_size
    shape = (unet.config.in_channels, size, size)
    x_T = per_image_noise(gens, shape, device)
    text = blip.encode_text(prompts)
    denoiser = make_denoiser(unet, spec.precision)
    guide = Guide(
        diffusion, denoiser, blip, text, objective=objective, scale=spec.scale_for(objective),
        itc_loss=spec.itc_loss, label_smoothing=spec.cap_label_smoothing, normalization=spec.normalization,
        blend_weights=(spec.blend_weight_itc, spec.blend_weight_cap), guided_image=spec.guided_image,
        views=spec.views, view_generators=view_gens, range_weight=spec.range_loss_weight,
        autocast_dtype=torch.bfloat16 if spec.precision == "bf16" else None, view_augment=spec.view_augment,
    )
    _sync(device)
    t0 = time.perf_counter()
    x = sample(
        diffusion, denoiser, x_T, noise_fn=lambda: per_image_noise(gens, shape, device), sampler=spec.sampler,
        eta=spec.eta, clip_denoised=spec.clip_denoised, guide=guide, callback=progress, recurrence=spec.recurrence,
    )
    _sync(device)
    t1 = time.perf_counter()
    pixels = to_uint8(x)
    # Scores of the stored pixels, not of the float sample: what an annotator will see.
    scores = final_scores(blip, from_uint8(pixels, device), text)
    _sync(device)
    t2 = time.perf_counter()
    env = environment(device)
    b, steps = len(prompts), diffusion.num_timesteps
    timings = {
        "seconds_total_batch": t2 - t0, "sampling_seconds_batch": t1 - t0, "seconds_per_step": (t1 - t0) / steps,
        "seconds_per_image": (t1 - t0) / b, "scoring_seconds_batch": t2 - t1, "batch_size": b, "steps": steps,
    }
    excess = torch.stack(guide.range_excess_history)  # (guided passes, B): steps x recurrence
    out = []
    for n in range(b):
        s = {k: float(v[n]) for k, v in scores.items()}
        diagnostics = {
            # Mean over the steps of the squared excess of the unclipped x̂0 beyond [-1, 1] (range
            # loss), and over the last 20% of steps: over-guidance pushes x̂0 out of range.
            "x0_range_excess_mean": float(excess[:, n].mean()),
            "x0_range_excess_late": float(excess[-max(1, excess.shape[0] // 5):, n].mean()),
            "high_frequency_energy": high_frequency_energy(pixels[n]),
        }
        prov = {
            "spec_hash": spec.spec_hash(), "spec": spec.to_dict(), "objective": objective, "prompt": prompts[n],
            "seed": int(seeds[n]), "round_seed": int(round_seed), "noise_seed": nseeds[n],
            "checkpoints": dict(models.checkpoints), **env, "timings": dict(timings), "scores": s,
            "diagnostics": diagnostics,
        }
        out.append(RenderResult(pixels[n], s, prov))
    return out


def high_frequency_energy(image: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian of the luminance in [0, 1] of a ``(H, W, 3)`` uint8 image:
    the energy of pixel-scale detail, which adversarial guidance patterns raise."""
    g = image.astype(np.float64).mean(-1) / 255.0
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
