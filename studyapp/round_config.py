"""The study-round configuration: one frozen, validated value, stored as JSON on the round.

``RoundConfig.from_dict`` collects every problem before refusing, so a researcher fixes a
config file in one pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from studyapp.exceptions import ConfigError
# One definition of the declared exclusions, shared with the analysis that applies them.
from studyapp.stats.config import Exclusions

OBJECTIVES = ("ITC", "ITM", "CAP", "SHIFT", "BLEND")
FOCAL = "SHIFT"
COMPARISON_MODES = ("shift-vs-baselines", "all-pairs")
TIE_RULES = ("exclude", "half")
MAX_CONSENT_CHARS = 20_000
MAX_URL_CHARS = 2000
MAX_NAME_CHARS = 200  # StudyRound.name's column
# Nesting deeper than any real config: refused before anything walks it (a recursion limit hit
# while validating or storing would be a crash, not a message).
MAX_DEPTH = 12


@dataclass(frozen=True)
class RoundConfig:
    name: str
    prompt_set: str
    objectives: tuple[str, ...]
    seeds_per_prompt: int
    comparisons: str
    votes_per_item: int
    trials_per_annotator: int
    attention_check_rate: float
    generation: dict = field(default_factory=dict)
    prompt_limit: int | None = None
    round_seed: int = 0
    practice_trials: int = 2
    min_view_ms: int = 1500
    assignment_timeout_s: int = 900
    tie_rule: str = "exclude"
    exclusions: Exclusions = field(default_factory=Exclusions)
    prolific_completion_url: str = ""
    # The round's own consent text (researcher contact, ethics approval, payment, data use);
    # empty: the platform's default consent page.
    consent_text: str = ""
    # Declared before opening and frozen with the analysis settings (owned by the statistics
    # feature; docs/statistics.md): the group-sequential looks ({"planned_votes": N per
    # comparison and criterion, "looks": K}) and the optional automatic close
    # ({"when_decided": true, "at_votes": N or null}).
    monitoring: dict | None = None
    auto_close: dict | None = None

    REQUIRED = (
        "name",
        "prompt_set",
        "objectives",
        "seeds_per_prompt",
        "comparisons",
        "votes_per_item",
        "trials_per_annotator",
        "attention_check_rate",
    )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["objectives"] = list(self.objectives)
        return d

    def pairs(self) -> list[tuple[str, str]]:
        """The (objective_a, objective_b) pairs to compare, focal objective first."""
        objs = [o for o in OBJECTIVES if o in self.objectives]
        if self.comparisons == "shift-vs-baselines":
            return [(FOCAL, o) for o in objs if o != FOCAL]
        return [(a, b) for i, a in enumerate(objs) for b in objs[i + 1 :]]

    @classmethod
    def from_dict(cls, data: Any) -> "RoundConfig":
        if not isinstance(data, dict):
            raise ConfigError(["the config must be a JSON object"])
        shape = _shape_problems(data)
        if shape:
            # Junk (deep nesting, NUL characters) is listed and nothing else is read.
            raise ConfigError(shape)
        problems: list[str] = []
        known = {f.name for f in dataclasses.fields(cls)}
        for key in sorted(set(data) - known):
            problems.append(f"unknown field {key!r} (known: {', '.join(sorted(known))})")
        for key in cls.REQUIRED:
            if key not in data:
                problems.append(f"{key}: required")

        def integer(key: str, lo: int, hi: int | None = None, default: Any = None, nullable: bool = False) -> Any:
            if key not in data or (nullable and data[key] is None):
                return default
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int):
                problems.append(f"{key}: must be an integer, got {v!r}")
                return default
            if v < lo or (hi is not None and v > hi):
                problems.append(f"{key}: must be between {lo} and {hi if hi is not None else 'any'}, got {v}")
            return v

        name = data.get("name", "")
        if "name" in data and (not isinstance(name, str) or not name.strip()):
            problems.append("name: must be a non-empty string")
            name = ""
        elif len(name.strip()) > MAX_NAME_CHARS:
            problems.append(f"name: at most {MAX_NAME_CHARS} characters, got {len(name.strip())}")
        prompt_set = data.get("prompt_set", "")
        if "prompt_set" in data and (not isinstance(prompt_set, str) or not prompt_set.strip()):
            problems.append("prompt_set: must be the name of a prompt set")

        objectives = data.get("objectives", [])
        if "objectives" in data:
            if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
                problems.append(f"objectives: must be a list of names from {', '.join(OBJECTIVES)}")
                objectives = []
            else:
                objectives = [o.upper() for o in objectives]
                bad = [o for o in objectives if o not in OBJECTIVES]
                if bad:
                    problems.append(f"objectives: unknown {', '.join(bad)} (choose from {', '.join(OBJECTIVES)})")
                if len(set(objectives)) != len(objectives):
                    problems.append("objectives: listed twice")
                if len(set(objectives)) < 2:
                    problems.append("objectives: at least two are needed to compare")

        comparisons = data.get("comparisons", "shift-vs-baselines")
        if comparisons not in COMPARISON_MODES:
            problems.append(f"comparisons: must be one of {', '.join(COMPARISON_MODES)}, got {comparisons!r}")
        elif comparisons == "shift-vs-baselines" and objectives and (
            FOCAL not in objectives or len(set(objectives) - {FOCAL}) == 0
        ):
            problems.append("comparisons: 'shift-vs-baselines' needs SHIFT and at least one other objective")

        seeds = integer("seeds_per_prompt", 1, 1000)
        votes = integer("votes_per_item", 1, 1000)
        trials = integer("trials_per_annotator", 1, 10000)
        # null (or no key): every prompt of the set; a stored config says null, and must load again.
        limit = integer("prompt_limit", 1, 1_000_000, nullable=True)
        round_seed = integer("round_seed", 0, 2**31 - 1, 0)
        practice = integer("practice_trials", 0, 20, 2)
        min_view = integer("min_view_ms", 0, 60_000, 1500)
        timeout = integer("assignment_timeout_s", 30, 7 * 86400, 900)

        rate = data.get("attention_check_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            problems.append(f"attention_check_rate: must be a number in [0, 1), got {rate!r}")
            rate = 0.0

        tie_rule = data.get("tie_rule", "exclude")
        if tie_rule not in TIE_RULES:
            problems.append(f"tie_rule: must be one of {', '.join(TIE_RULES)}, got {tie_rule!r}")

        exclusions = Exclusions()
        raw_ex = data.get("exclusions", {})
        if not isinstance(raw_ex, dict):
            problems.append("exclusions: must be an object")
        else:
            ex_fields = {f.name for f in dataclasses.fields(Exclusions)}
            for key in sorted(set(raw_ex) - ex_fields):
                problems.append(f"exclusions.{key}: unknown (known: {', '.join(sorted(ex_fields))})")
            acc = raw_ex.get("min_attention_accuracy", exclusions.min_attention_accuracy)
            if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
                problems.append(f"exclusions.min_attention_accuracy: must be in [0, 1], got {acc!r}")
            floor = raw_ex.get("min_response_ms", exclusions.min_response_ms)
            if isinstance(floor, bool) or not isinstance(floor, int) or floor < 0:
                problems.append(f"exclusions.min_response_ms: must be a non-negative integer, got {floor!r}")
            side = raw_ex.get("max_side_rate", exclusions.max_side_rate)
            if side is not None and (isinstance(side, bool) or not isinstance(side, (int, float)) or not 0.5 < side <= 1):
                problems.append(f"exclusions.max_side_rate: must be null or in (0.5, 1], got {side!r}")
            side_n = raw_ex.get("side_rate_min_votes", exclusions.side_rate_min_votes)
            if isinstance(side_n, bool) or not isinstance(side_n, int) or side_n < 1:
                problems.append(f"exclusions.side_rate_min_votes: must be a positive integer, got {side_n!r}")
            if not problems:
                exclusions = Exclusions(
                    min_attention_accuracy=float(acc),
                    min_response_ms=int(floor),
                    max_side_rate=None if side is None else float(side),
                    side_rate_min_votes=int(side_n),
                )

        url = data.get("prolific_completion_url", "")
        if not isinstance(url, str) or (url and not url.startswith("https://")):
            problems.append("prolific_completion_url: must be empty or an https:// URL")
            url = ""
        elif len(url) > MAX_URL_CHARS:
            problems.append(f"prolific_completion_url: at most {MAX_URL_CHARS} characters, got {len(url)}")

        consent = data.get("consent_text", "")
        if not isinstance(consent, str):
            problems.append(f"consent_text: must be a string, got {type(consent).__name__}")
            consent = ""
        elif len(consent) > MAX_CONSENT_CHARS:
            problems.append(f"consent_text: at most {MAX_CONSENT_CHARS} characters, got {len(consent)}")
        elif "\x00" in consent:
            problems.append("consent_text: contains a NUL character")

        monitoring, auto_close = _monitoring_fields(data, problems)

        generation = data.get("generation", {})
        if not isinstance(generation, dict):
            problems.append("generation: must be an object with the generation spec's fields")
            generation = {}
        else:
            generation = _normalise_generation(generation, problems)

        if problems:
            raise ConfigError(problems)
        return cls(
            name=name.strip(),
            prompt_set=prompt_set.strip(),
            objectives=tuple(o for o in OBJECTIVES if o in objectives),
            seeds_per_prompt=seeds,
            comparisons=comparisons,
            votes_per_item=votes,
            trials_per_annotator=trials,
            attention_check_rate=float(rate),
            generation=generation,
            prompt_limit=limit,
            round_seed=round_seed,
            practice_trials=practice,
            min_view_ms=min_view,
            assignment_timeout_s=timeout,
            tie_rule=tie_rule,
            exclusions=exclusions,
            prolific_completion_url=url,
            consent_text=consent.strip(),
            monitoring=monitoring,
            auto_close=auto_close,
        )


def _shape_problems(data: dict) -> list[str]:
    """Nesting deeper than MAX_DEPTH and NUL characters anywhere (PostgreSQL's text and jsonb
    refuse NUL): each listed with the path where it was found. Iterative, so junk cannot exhaust
    the stack."""
    problems: list[str] = []
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack and len(problems) < 20:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            problems.append(f"{path or 'config'}: nested deeper than {MAX_DEPTH} levels")
            continue
        if isinstance(value, str):
            if "\x00" in value:
                problems.append(f"{path}: contains a NUL character")
        elif isinstance(value, dict):
            for k, v in value.items():
                key = str(k)
                if "\x00" in key:
                    problems.append(f"{path or 'config'}: a key contains a NUL character")
                    key = key.replace("\x00", "\\0")
                stack.append((f"{path}.{key}" if path else key, v, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value))
    return sorted(problems)


def _monitoring_fields(data: dict, problems: list[str]) -> tuple[dict | None, dict | None]:
    """``monitoring`` (validated by the analysis' own Monitoring) and ``auto_close``."""
    from studyapp.stats.config import Monitoring

    mon = Monitoring.from_dict(data.get("monitoring"), problems)
    monitoring = dataclasses.asdict(mon) if mon is not None else None
    raw = data.get("auto_close")
    if raw is None:
        return monitoring, None
    if not isinstance(raw, dict):
        problems.append("auto_close: must be null or an object with when_decided and at_votes")
        return monitoring, None
    for key in sorted(set(raw) - {"when_decided", "at_votes"}):
        problems.append(f"auto_close.{key}: unknown (known: at_votes, when_decided)")
    when = raw.get("when_decided", False)
    at = raw.get("at_votes")
    if not isinstance(when, bool):
        problems.append(f"auto_close.when_decided: must be true or false, got {when!r}")
    elif when and data.get("monitoring") is None:
        problems.append("auto_close.when_decided: needs a monitoring rule (monitoring.planned_votes, looks)")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 1):
        problems.append(f"auto_close.at_votes: must be null or a positive integer (regular votes), got {at!r}")
    if when is False and at is None:
        problems.append("auto_close: set when_decided or at_votes (or leave auto_close out)")
    return monitoring, {"when_decided": when, "at_votes": at}


def _normalise_generation(generation: dict, problems: list[str]) -> dict:
    """Validate the generation spec with the generation core's own rules; return its canonical dict."""
    try:
        from generation.presets import canonical_config
        from generation.spec import SpecError
    except ImportError:  # the core is optional for a study on imported renders
        return dict(generation)
    try:
        return canonical_config(generation)
    except SpecError as exc:
        details = getattr(exc, "problems", None) or [str(exc)]
        problems.extend(f"generation.{p}" if not str(p).startswith("generation") else str(p) for p in details)
        return dict(generation)


def spec_hash_of(generation: dict) -> str:
    try:
        from generation.presets import spec_from_config
    except ImportError:
        return ""
    return spec_from_config(generation).spec_hash()
