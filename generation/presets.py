"""Named generation presets: the settings a round is rendered with, chosen by name.

A round config's ``generation`` is ``{"preset": NAME, ...overrides}``; :func:`spec_from_config`
turns it into a :class:`GenerationSpec` and :func:`canonical_config` into the dict stored on the
round (the preset's name plus every resolved field, so the stored config alone says how the
images were made). ``docs/generation.md`` gives the evidence for each preset's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from generation.spec import TOY_VALUES, GenerationSpec, SpecError


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str
    values: Mapping[str, Any] = field(default_factory=dict)
    # Measured seconds per image (the new-round form's cost estimate); None: not measured yet.
    seconds_per_image: float | None = None
    device: str = "cuda"  # where the figure above was measured
    needs_weights: bool = False  # True: the public checkpoints must be in WEIGHTS_DIR on the workers
    # Field -> where its value comes from (paper sentence, reference file, checkpoint fact);
    # fields in ``guesses`` have no such source and are what the calibration pilot should settle.
    evidence: Mapping[str, str] = field(default_factory=dict)
    guesses: Mapping[str, str] = field(default_factory=dict)


BLENDED = "omriav/blended-diffusion@86ed6ce optimization/"
BLIP_CODE = "salesforce/BLIP@056a169 "
# The paper's settings and where each comes from. Kong & Kwak (arXiv 2302.10305) publish no code;
# they state that the guidance losses are BLIP's own (Li et al. 2022) and that guidance acts on the
# predicted clean image following Avrahami et al. (Blended Diffusion). Where they are silent the
# value is Blended Diffusion's (for the guidance) or BLIP's pretraining code (for the losses).
PAPER_EVIDENCE = {
    "unet": "paper: the unconditional 256x256 guided-diffusion model (Dhariwal & Nichol), as Blended Diffusion uses",
    "blip": "paper: BLIP base; model_base.pth is the pretrain checkpoint whose ITC, ITM and LM heads are all trained",
    "blip_image_size": "checkpoint: model_base.pth's visual_encoder.pos_embed is 1x197x768 = 14x14 patches + CLS, "
                       "i.e. 224 px; BLIP configs/pretrain.yaml image_size: 224",
    "respacing": BLENDED + "arguments.py: --timestep_respacing default '100'",
    "sampler": BLENDED + "image_editor.py: p_sample_loop_progressive (DDPM) unless --ddim",
    "clip_denoised": BLENDED + "image_editor.py: sample_func(..., clip_denoised=False); cond_fn's "
                     "p_mean_variance(..., clip_denoised=False)",
    "guided_image": BLENDED + "image_editor.py cond_fn: x_in = pred_xstart * fac + x * (1 - fac), "
                    "fac = sqrt_one_minus_alphas_cumprod[t]",
    "views": BLENDED + "arguments.py: --aug_num default 8 (first view un-augmented, augmentations.py)",
    "view_augment": BLENDED + "augmentations.py: kornia RandomAffine(degrees=15, translate=0.1, p=0.7, "
                    "padding_mode='border') + RandomPerspective(0.7, p=0.7)",
    "range_loss_weight": BLENDED + "arguments.py: --range_lambda default 50; image_editor.py applies "
                         "range_loss(out['pred_xstart']) (the pure x̂0)",
    "normalization": BLENDED + "image_editor.py: loss = clip_loss * lambda + range_loss * range_lambda, "
                     "gradient used as it is (no normalisation); paper: BLIP's own losses",
    "itc_loss": BLIP_CODE + "models/blip_pretrain.py: ITC logits are sim / self.temp (with one prompt the "
                "contrastive CE has no negatives, so the loss is the logit itself)",
    "itm_first_token": BLIP_CODE + "models/blip_pretrain.py: encoder_input_ids[:, 0] = enc_token_id ([ENC])",
    "cap_prompt": BLIP_CODE + "models/blip_pretrain.py: the pretraining LM loss has no prompt "
                  "(decoder_input_ids[:, 0] = bos_token_id only)",
    "cap_label_smoothing": BLIP_CODE + "models/med.py: CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)",
}
PAPER_GUESSES = {
    "scale_itc": "unknown (paper silent); 100 matches Blended Diffusion's clip_guidance_lambda 1000 on its "
                 "spherical CLIP loss in push per unit of cosine if BLIP's temp is ~0.07: run the pilot",
    "scale_itm": "unknown (paper silent); same order as ITC: run the pilot",
    "scale_cap": "unknown (paper silent); same order as ITC (LM NLL and sim/temp are both O(1-10)): run the pilot",
    "scale_shift": "unknown (paper silent): run the pilot",
    "scale_blend": "unknown (paper silent): run the pilot",
    "blend_weight_itc": "paper: BLEND is a fixed mix; 0.5/0.5 assumed",
    "precision": "measured, not published: see docs/generation.md 'Precision'",
    "cap_max_length": "BLIP pretraining truncates captions at 30 tokens, the caption finetune at 40; 40 kept "
                      "(only prompts over 30 tokens differ)",
    "view resize": "Blended Diffusion adaptive-average-pools 256 to 224; here bicubic with antialias "
                   "(BLIP's own preprocessing is bicubic)",
}
PAPER_VALUES = {
    "unet": "guided-diffusion-256-uncond", "blip": "model_base", "blip_image_size": 224, "respacing": "100",
    "sampler": "ddpm", "clip_denoised": False, "guided_image": "blend", "views": 8,
    "view_augment": "affine_perspective", "range_loss_weight": 50.0, "normalization": "none",
    "itc_loss": "cos_temp", "itm_first_token": "[ENC]", "cap_prompt": "", "cap_label_smoothing": 0.1,
    "scale_itc": 100.0, "scale_itm": 100.0, "scale_cap": 100.0, "scale_shift": 100.0, "scale_blend": 100.0,
    "blend_weight_itc": 0.5, "blend_weight_cap": 0.5, "precision": "fp32", "batch_size": 4,
}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "paper",
            "The paper's setup (real checkpoints, GPU)",
            "guided-diffusion 256x256 uncond UNet steered by BLIP base at 224 px with BLIP's own losses, "
            "guidance on the x̂0/x_t blend over 8 augmented views with a range loss, as Blended Diffusion does; "
            "scales are guesses until a pilot sets them. Needs the public checkpoints.",
            values=PAPER_VALUES, needs_weights=True, evidence=PAPER_EVIDENCE, guesses=PAPER_GUESSES,
        ),
        Preset(
            "normalised",
            "Paper models, every objective pushing equally hard (GPU)",
            "The paper preset with each loss term's gradient scaled to unit RMS, mixed, and the mix scaled to "
            "unit RMS again, so one scale means the same total push for ITC, ITM, CAP, SHIFT and BLEND.",
            values={**PAPER_VALUES, "normalization": "unit", **{f"scale_{o}": 1.0 for o in ("itc", "itm", "cap", "shift", "blend")}},
            needs_weights=True, evidence=PAPER_EVIDENCE,
            guesses={**PAPER_GUESSES, "normalization": "a design choice (not the paper's): equal total push per objective",
                     **{f"scale_{o}": "unknown; 1.0 (unit-RMS push in image space per step): run the pilot"
                        for o in ("itc", "itm", "cap", "shift", "blend")}},
        ),
        Preset(
            "toy",
            "Toy world (trained 32x32 models, CPU)",
            "The toy world's shipped UNet and BLIP: real guidance on a CPU, images of coloured shapes.",
            values=dict(TOY_VALUES),
            device="cpu",
        ),
        Preset(
            "tiny",
            "Tiny random weights (workflow trials only)",
            "Random tiny models, noise-like images: for trying the workflow, never for a study.",
            values={"unet": "tiny", "blip": "tiny", "respacing": "8", "blip_image_size": 32, "batch_size": 4},
            device="cpu",
        ),
        Preset(
            "custom",
            "Custom (the spec's defaults plus the JSON override)",
            "GenerationSpec's own defaults; every field set in the JSON override.",
            values={},
        ),
    )
}
DEFAULT_PRESET = "paper"


def preset_choices() -> list[tuple[str, str]]:
    return [(p.name, p.label) for p in PRESETS.values()]


def spec_from_config(config: Mapping[str, Any] | None) -> GenerationSpec:
    """``{"preset": NAME, ...overrides}`` -> spec; without ``preset``, the default preset.

    Raises :class:`SpecError` listing every problem (an unknown preset included)."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise SpecError([f"spec must be a JSON object, got {type(config).__name__}"])
    overrides = dict(config)
    name = overrides.pop("preset", None)
    if name is None:
        # Configs written before presets existed list fields only: they keep their meaning.
        name = "custom" if overrides else DEFAULT_PRESET
    if not isinstance(name, str) or name not in PRESETS:
        raise SpecError([f"preset: {name!r} is not one of {', '.join(map(repr, PRESETS))}"])
    return GenerationSpec.from_dict({**PRESETS[name].values, **overrides})


def preset_name(config: Mapping[str, Any] | None) -> str:
    config = dict(config or {})
    return config.get("preset") or ("custom" if config else DEFAULT_PRESET)


def canonical_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a round stores: the preset's name and every resolved field (idempotent)."""
    return {"preset": preset_name(config), **spec_from_config(config).to_dict()}
