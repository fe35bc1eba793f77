"""Named generation presets: the settings a round is rendered with, chosen by name.

A round config's ``generation`` is ``{"preset": NAME, ...overrides}``; :func:`spec_from_config`
turns it into a :class:`GenerationSpec` and :func:`canonical_config` into the dict stored on the
round (the preset's name plus every resolved field, so the stored config alone says how the
images were made). ``docs/generation.md`` gives the evidence for each preset's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from generation.spec import TOY_SCALES, GenerationSpec, SpecError


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


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "paper",
            "The paper's models (real checkpoints, GPU)",
            "guided-diffusion 256x256 unconditional UNet steered by BLIP base; needs the public checkpoints.",
            values={},
            needs_weights=True,
        ),
        Preset(
            "toy",
            "Toy world (trained 32x32 models, CPU)",
            "The toy world's shipped UNet and BLIP: real guidance on a CPU, images of coloured shapes.",
            values={"unet": "toy", "blip": "toy", "respacing": "25", "blip_image_size": 32, "batch_size": 16,
                    **TOY_SCALES},
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
