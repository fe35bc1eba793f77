"""``GenerationSpec``: every knob of a render, frozen, JSON round-trip, stable hash.

The spec is the contract between the web half (stored as JSON on a job) and the GPU worker.
Defaults are assumptions where the paper is silent; ``docs/generation.md`` justifies each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from generation.respace import space_timesteps

OBJECTIVES = ("ITC", "ITM", "CAP", "SHIFT", "BLEND")
UNET_PRESETS = ("guided-diffusion-256-uncond", "tiny", "toy")
BLIP_PRESETS = ("model_base", "model_base_capfilt_large", "tiny", "toy")

# Guidance scales of the toy presets (GenerationSpec.toy): what the calibration pilot of
# docs/toyworld/REPORT.md chose (docs/toyworld/results.json, "spec").
TOY_SCALES = {"scale_itc": 0.316, "scale_itm": 1.0, "scale_cap": 0.316, "scale_shift": 0.316, "scale_blend": 0.316}
# The toy preset: the shipped 32x32 models, 25 steps, each guided step taken 3 times (self-recurrence;
# docs/toyworld/README.md measures why).
TOY_VALUES = {"unet": "toy", "blip": "toy", "respacing": "25", "blip_image_size": 32, "batch_size": 16, "recurrence": 3,
              **TOY_SCALES}

# Field name -> allowed values, for the string-choice fields.
_CHOICES: dict[str, tuple[str, ...]] = {
    "unet": UNET_PRESETS,
    "blip": BLIP_PRESETS,
    "sampler": ("ddpm", "ddim"),
    "itc_loss": ("cos", "cos_temp"),
    "itm_first_token": ("[ENC]", "[CLS]"),
    "normalization": ("grad", "none", "unit"),
    "view_augment": ("crop_flip", "affine_perspective"),
    "guided_image": ("x0", "blend"),
    "precision": ("fp32", "bf16"),
}


# Fields added after specs were first stored, with the default that leaves them out of the hash.
LATE_FIELDS: dict[str, Any] = {"view_augment": "crop_flip", "recurrence": 1}

# Upper bounds: values past them are typos (10**12 images per batch) that would fail late and
# expensively on a GPU worker rather than at the form.
MAX_BATCH_SIZE = 256
MAX_VIEWS = 64
MAX_BLIP_IMAGE_SIZE = 1024
MAX_SCALE = 1e6
MAX_RECURRENCE = 10  # guided passes per step; each one is a full guided UNet + BLIP pass
# A single sampling step is x̂0 of pure noise, never an image; fewer than this is refused.
MIN_STEPS = 2


class SpecError(ValueError):
    """A spec that cannot be used; ``problems`` lists every ``field: what is wrong``."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid generation spec: " + "; ".join(self.problems))


@dataclass(frozen=True)
class GenerationSpec:
    """Everything that decides the pixels of a render (besides prompt, seed and objective).

    Guidance scales multiply the objective's gradient; which scale applies depends on the
    objective being rendered (``scale_for``). Loss terms are per-sample and summed over the batch.
    """

    unet: str = "guided-diffusion-256-uncond"
    blip: str = "model_base"
    respacing: str = "100"
    sampler: str = "ddpm"
    eta: float = 0.0
    clip_denoised: bool = True
    scale_itc: float = 1.0
    scale_itm: float = 1.0
    scale_cap: float = 1.0
    scale_shift: float = 1.0
    scale_blend: float = 1.0
    itc_loss: str = "cos"
    itm_first_token: str = "[ENC]"
    cap_prompt: str = "a picture of "
    cap_label_smoothing: float = 0.0
    normalization: str = "grad"
    blend_weight_itc: float = 0.5
    blend_weight_cap: float = 0.5
    guided_image: str = "x0"
    views: int = 1
    range_loss_weight: float = 0.0
    blip_image_size: int = 224  # the pretrain checkpoints' training point (pos_embed 1x197x768)
    precision: str = "fp32"
    batch_size: int = 4
    view_augment: str = "crop_flip"
    recurrence: int = 1  # guided passes per sampling step (self-recurrence); 1 = the paper's sampler

    def __post_init__(self):
        # GenerationSpec(eta=0) and from_dict({"eta": 0.0}) must hash alike.
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif f.type == "int" and isinstance(value, float) and value.is_integer():
                object.__setattr__(self, f.name, int(value))
            # The constructor checks types as strictly as from_dict: clip_denoised="yes" is
            # truthy and would render, with a hash no JSON config can reproduce.
            _, problem = _coerce(f.name, f.type, getattr(self, f.name))
            if problem:
                problems.append(problem)
        if isinstance(self.respacing, str):
            object.__setattr__(self, "respacing", normalise_respacing(self.respacing))
        typed = {p.split(":")[0] for p in problems}
        problems += [p for p in _problems(dataclasses.asdict(self)) if p.split(":")[0] not in typed]
        if problems:
            raise SpecError(problems)

    @classmethod
    def tiny(cls, **overrides) -> "GenerationSpec":
        """Random tiny UNet and BLIP, few steps: CPU tests and the ``--tiny`` CLI."""
        return cls(**{"unet": "tiny", "blip": "tiny", "respacing": "8", "blip_image_size": 32, **overrides})

    @classmethod
    def toy(cls, **overrides) -> "GenerationSpec":
        """The toy world's trained 32x32 UNet and BLIP (``generation/toyworld``, shipped weights): real
        guidance on a CPU. Scales chosen in ``docs/toyworld/REPORT.md``."""
        return cls(**{**TOY_VALUES, **overrides})

    def scale_for(self, objective: str) -> float:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        return getattr(self, f"scale_{objective.lower()}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GenerationSpec":
        """Validate and build; raises :class:`SpecError` listing every problem, unknown fields included."""
        if not isinstance(d, dict):
            raise SpecError([f"spec must be a JSON object, got {type(d).__name__}"])
        fields = {f.name: f for f in dataclasses.fields(cls)}
        problems = [f"{k}: unknown field (valid: {', '.join(fields)})" for k in d if k not in fields]
        values = {}
        for name, f in fields.items():
            if name not in d:
                continue
            value, problem = _coerce(name, f.type, d[name])
            if problem:
                problems.append(problem)
            else:
                values[name] = value
        defaults = {name: f.default for name, f in fields.items()}
        problems += _problems({**defaults, **values})
        if problems:
            raise SpecError(problems)
        return cls(**values)

    def canonical_json(self) -> str:
        """Sorted keys, no spaces; a field added after rounds were stored enters only when set away
        from its default, so every spec written before it keeps its hash."""
        d = {k: v for k, v in self.to_dict().items() if not (k in LATE_FIELDS and v == LATE_FIELDS[k])}
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def spec_hash(self) -> str:
        """sha256 hex of the canonical JSON (sorted keys, no spaces, floats as floats)."""
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()


def normalise_respacing(value: str) -> str:
    """One spelling per schedule, so one hash: ``" 100"``, ``"0100"`` -> ``"100"``; ``"DDIM 50"`` ->
    ``"ddim50"``; ``"10, 20"`` -> ``"10,20"``. Anything unparseable is returned unchanged (the
    validation then names it)."""
    text = "".join(value.split()).lower()
    try:
        if text.startswith("ddim"):
            return f"ddim{int(text[4:])}"
        return ",".join(str(int(part)) for part in text.split(","))
    except ValueError:
        return value


def _coerce(name: str, typ: str, value: Any) -> tuple[Any, str | None]:
    """JSON value -> field value; ints are accepted for floats so 0 and 0.0 hash alike."""
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{name}: expected a number, got {value!r}"
        return float(value), None
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value), None
            return None, f"{name}: expected an integer, got {value!r}"
        return value, None
    if typ == "bool":
        if not isinstance(value, bool):
            return None, f"{name}: expected true or false, got {value!r}"
        return value, None
    if not isinstance(value, str):
        return None, f"{name}: expected a string, got {value!r}"
    return value, None


def _problems(v: dict[str, Any]) -> list[str]:
    out = []
    for name, allowed in _CHOICES.items():
        if v[name] not in allowed:
            out.append(f"{name}: {v[name]!r} is not one of {', '.join(map(repr, allowed))}")
    for name in ("eta", "scale_itc", "scale_itm", "scale_cap", "scale_shift", "scale_blend",
                 "cap_label_smoothing", "blend_weight_itc", "blend_weight_cap", "range_loss_weight"):
        x = v[name]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            out.append(f"{name}: must be a finite number >= 0, got {x!r}")
    if isinstance(v["eta"], (int, float)) and v["eta"] > 1:
        out.append(f"eta: must be in [0, 1], got {v['eta']!r}")
    if isinstance(v["cap_label_smoothing"], (int, float)) and v["cap_label_smoothing"] >= 1:
        out.append(f"cap_label_smoothing: must be in [0, 1), got {v['cap_label_smoothing']!r}")
    for name in ("scale_itc", "scale_itm", "scale_cap", "scale_shift", "scale_blend"):
        x = v[name]
        if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > MAX_SCALE:
            out.append(f"{name}: at most {MAX_SCALE:g}, got {x!r}")
    if all(isinstance(v[n], (int, float)) and not isinstance(v[n], bool) for n in ("blend_weight_itc", "blend_weight_cap")):
        if v["blend_weight_itc"] == 0 and v["blend_weight_cap"] == 0:
            out.append("blend_weight_itc, blend_weight_cap: both 0 would render BLEND unguided; give at least one a positive weight")
    for name, lo, hi in (("views", 1, MAX_VIEWS), ("recurrence", 1, MAX_RECURRENCE), ("batch_size", 1, MAX_BATCH_SIZE), ("blip_image_size", 16, MAX_BLIP_IMAGE_SIZE)):
        x = v[name]
        if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
            out.append(f"{name}: must be an integer from {lo} to {hi}, got {x!r}")
    size = v["blip_image_size"]
    if isinstance(size, int) and not isinstance(size, bool) and size % 16 and v["blip"] != "tiny":
        out.append(f"blip_image_size: must be a multiple of 16 (BLIP's patch size), got {size}")
    if isinstance(size, int) and v["blip"] == "toy" and size != 32:
        out.append(f"blip_image_size: the toy BLIP works at 32 pixels, got {size}")
    if isinstance(size, int) and v["blip"] == "tiny" and size % 8:
        out.append(f"blip_image_size: the tiny BLIP needs a multiple of 8, got {size}")
    if not isinstance(v["cap_prompt"], str):
        out.append("cap_prompt: must be a string")
    elif "\x00" in v["cap_prompt"] or len(v["cap_prompt"]) > 200:
        out.append("cap_prompt: at most 200 characters, no NUL")
    if isinstance(v["respacing"], str):
        try:
            steps = len(space_timesteps(1000, normalise_respacing(v["respacing"])))
        except ValueError as exc:
            out.append(f"respacing: {exc}")
        else:
            if steps < MIN_STEPS:
                out.append(f"respacing: {v['respacing']!r} gives {steps} sampling step(s); at least {MIN_STEPS} "
                           f"are needed (one step returns x̂0 of pure noise); the paper's setting is '100'")
    else:
        out.append(f"respacing: must be a string like '100' or 'ddim50', got {v['respacing']!r}")
    return out
