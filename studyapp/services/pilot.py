"""Calibration pilots (writes): create the sweep's rounds, launch them, and turn the suggestion into
a new round's config. The analysis itself is framework-free (``generation.pilot``); the reads are
in ``studyapp.selectors_pilot``.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from generation.pilot import check_scales
from generation.presets import canonical_config, spec_from_config
from generation.spec import OBJECTIVES, SpecError
from studyapp.exceptions import ConfigError
from studyapp.models import PromptSet
from studyapp.models_pilot import Pilot, PilotRound
from studyapp.services import renders as render_services
from studyapp.services.rounds import round_create

MAX_PILOT_PROMPTS = 50
MAX_PILOT_SEEDS = 10


def _integer(problems, name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{name}: must be an integer from {low} to {high}, got {value!r}")
        return None
    return value


@transaction.atomic
def pilot_create(*, name: str, prompt_set: str, generation: dict | None, objectives: list[str], scales: list,
                 seeds_per_prompt: int = 2, prompt_limit: int = 4, round_seed: int = 0, created_by=None) -> Pilot:
    """Validate everything first, then create the pilot and one draft round per scale.

    Each round renders ``prompt_limit`` prompts x ``seeds_per_prompt`` seeds x ``objectives`` with
    every objective's scale set to the round's scale; all rounds share ``round_seed`` (paired noise).

    Raises :class:`ConfigError` listing every problem.
    """
    problems: list[str] = []
    if not isinstance(name, str) or not name.strip() or len(name) > 150 or "\x00" in name:
        problems.append("name: 1 to 150 characters, no NUL")
    elif Pilot.objects.filter(name=name).exists():
        problems.append(f"name: a pilot named {name!r} exists; choose another name")
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        problems.append(f"objectives: a list of names from {', '.join(OBJECTIVES)}")
        objectives = []
    objectives = [o.upper() for o in objectives]
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad:
        problems.append(f"objectives: unknown {', '.join(bad)} (choose from {', '.join(OBJECTIVES)})")
    elif len(set(objectives)) < 2 or len(set(objectives)) != len(objectives):
        problems.append("objectives: at least two, each once (a pilot round is an ordinary round)")
    try:
        scales = check_scales(scales if isinstance(scales, list) else [])
    except ValueError as exc:
        problems.append(f"scales: {exc}")
    seeds = _integer(problems, "seeds_per_prompt", seeds_per_prompt, 1, MAX_PILOT_SEEDS)
    limit = _integer(problems, "prompt_limit", prompt_limit, 1, MAX_PILOT_PROMPTS)
    _integer(problems, "round_seed", round_seed, 0, 2**31 - 1)
    try:
        base = canonical_config(generation or {})
    except SpecError as exc:
        problems += [f"generation: {p}" for p in exc.problems]
        base = None
    if problems:
        raise ConfigError(problems)
    if not PromptSet.objects.filter(name=prompt_set).exists():
        raise ConfigError([f"prompt_set: no prompt set named {prompt_set!r}"])

    config = {"generation": base, "objectives": objectives, "seeds_per_prompt": seeds, "prompt_limit": limit,
              "round_seed": round_seed, "scales": scales}
    try:
        with transaction.atomic():
            pilot = Pilot.objects.create(name=name, prompt_set=PromptSet.objects.get(name=prompt_set), config=config,
                                         created_by=created_by)
    except IntegrityError:
        raise ConfigError([f"name: a pilot named {name!r} exists; choose another name"]) from None
    for scale in scales:
        generation_at = {**base, **{f"scale_{o.lower()}": scale for o in OBJECTIVES}}
        rnd = round_create(config={
            "name": f"pilot {name} · scale {scale:g}", "prompt_set": prompt_set, "objectives": objectives,
            "seeds_per_prompt": seeds, "prompt_limit": limit, "round_seed": round_seed,
            "comparisons": "all-pairs", "votes_per_item": 1, "trials_per_annotator": 1, "attention_check_rate": 0.0,
            "generation": generation_at,
        }, created_by=created_by)
        PilotRound.objects.create(pilot=pilot, round=rnd, scale=scale)
    return pilot


def pilot_launch(*, pilot_id: int, dispatch=None) -> list:
    """Queue every render of the pilot's rounds (idempotent, like launching each round)."""
    results = []
    for pr in PilotRound.objects.filter(pilot_id=pilot_id).order_by("scale"):
        results.append(render_services.renders_launch(round_id=pr.round_id, dispatch=dispatch))
    return results


def pilot_round_config(*, pilot: Pilot, generation: dict, name: str | None = None) -> dict:
    """A new study round's config: the pilot's prompt set, objectives and suggested generation;
    study settings are defaults to edit before creating the round."""
    spec_from_config(generation)  # refuse a broken suggestion here, not at render time
    return {
        "name": name or f"{pilot.name} (calibrated)",
        "prompt_set": pilot.prompt_set.name,
        "objectives": list(pilot.config["objectives"]),
        "seeds_per_prompt": 2,
        "comparisons": "shift-vs-baselines" if "SHIFT" in pilot.config["objectives"] else "all-pairs",
        "votes_per_item": 5,
        "trials_per_annotator": 40,
        "attention_check_rate": 0.1,
        "generation": generation,
    }
