"""Analysis settings: one frozen, validated value, embedded in every summary it produced.

``AnalysisSettings.from_dict`` lists every problem before refusing. It also accepts a whole
exported ``summary.json`` (it then reads its ``"settings"``), so re-running an analysis with the
settings of an earlier one is ``--settings summary.json``. The ``exclusions`` keys are those of
the round configuration's declared exclusions (``studyapp.round_config.Exclusions``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

TIE_RULES = ("exclude", "half")
FIGURE_INTERVALS = ("primary", "wilson", "bootstrap_prompt", "bootstrap_annotator")
SPENDING = ("obrien_fleming",)
MAX_LOOKS = 100
KNOWN_CRITERIA = ("realism", "alignment")


class SettingsError(ValueError):
    """Invalid analysis settings; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid analysis settings:\n" + "\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True)
class Exclusions:
    """Declared exclusion rules (DESIGN invariant 7).

    - ``min_attention_accuracy``: annotators whose attention-check accuracy is below it are
      excluded; annotators without attention checks are kept. ``None`` disables the rule.
    - ``min_response_ms``: votes answered faster are excluded (0 disables).
    - ``max_side_rate`` / ``side_rate_min_votes``: annotators who chose the same side in at least
      this share of their regular votes, having at least that many, are excluded (``None``
      disables).
    """

    min_attention_accuracy: float | None = 0.8
    min_response_ms: int = 800
    max_side_rate: float | None = 0.9
    side_rate_min_votes: int = 20


@dataclass(frozen=True)
class Monitoring:
    """A group-sequential design declared before the first vote (docs/statistics.md).

    Each cell is looked at when it has ``planned_votes * k / looks`` votes (k = 1..looks, ties
    included); the primary statistic is compared with Lan-DeMets O'Brien-Fleming-type boundaries,
    with the family's alpha split Holm-wise and recycled after a decision (Maurer & Bretz 2013).
    """

    planned_votes: int
    looks: int = 20
    spending: str = "obrien_fleming"

    def fractions(self) -> tuple[float, ...]:
        return tuple((k + 1) / self.looks for k in range(self.looks))

    def look_votes(self) -> list[int]:
        """Votes a cell has at each look."""
        return [-(-self.planned_votes * (k + 1) // self.looks) for k in range(self.looks)]

    @classmethod
    def from_dict(cls, raw: Any, problems: list[str], where: str = "monitoring") -> "Monitoring | None":
        if raw is None:
            return None
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be null or an object with planned_votes, looks, spending")
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        for key in sorted(set(raw) - known):
            problems.append(f"{where}.{key}: unknown (known: {', '.join(sorted(known))})")
        if "planned_votes" not in raw:
            problems.append(f"{where}.planned_votes: required (votes per comparison and criterion)")
            return None
        before = len(problems)
        m = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            object.__setattr__(m, f.name, raw.get(f.name, f.default))
        problems.extend(f"{where}.{p}" for p in _check_monitoring(m))
        return m if len(problems) == before else None


def _check_monitoring(m: Monitoring) -> list[str]:
    p = []
    if not _is_int(m.planned_votes) or not 1 <= m.planned_votes <= 10_000_000:
        p.append(f"planned_votes: must be an integer between 1 and 10000000, got {m.planned_votes!r}")
    if not _is_int(m.looks) or not 1 <= m.looks <= MAX_LOOKS:
        p.append(f"looks: must be an integer between 1 and {MAX_LOOKS}, got {m.looks!r}")
    elif _is_int(m.planned_votes) and m.planned_votes >= 1 and m.looks > m.planned_votes:
        p.append(f"looks: at most one look per vote ({m.planned_votes} planned), got {m.looks}")
    if m.spending not in SPENDING:
        p.append(f"spending: must be one of {', '.join(SPENDING)}, got {m.spending!r}")
    return p


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that decides the numbers of an analysis, and nothing else.

    ``tie_rule`` picks the headline preference rate and the Bradley-Terry treatment of ties
    ("exclude": ties dropped; "half": a tie is half a win for each side); both rates are always
    reported and the binomial test is always on the non-tie votes. ``bootstrap_replicates`` or
    ``bt_replicates`` of 0 skip those bootstraps (their intervals are then null).

    The primary test (``studyapp.stats.clustered``) refuses a verdict for a cell with fewer than
    ``min_clusters`` annotators or prompts. ``monitoring`` (None: one analysis at the planned
    size) declares the group-sequential looks that make watching the live results safe.
    """

    focal: str = "SHIFT"
    baselines: tuple[str, ...] = ("ITC", "CAP", "BLEND")
    criteria: tuple[str, ...] = ("realism", "alignment")
    tie_rule: str = "exclude"
    exclusions: Exclusions = field(default_factory=Exclusions)
    confidence: float = 0.95
    alpha: float = 0.05
    bootstrap_replicates: int = 1000
    bootstrap_seed: int = 0
    bt_replicates: int = 1000
    figure_interval: str = "primary"
    min_clusters: int = 10
    monitoring: Monitoring | None = None
    # Annotators a researcher excluded by hand (the platform's logged exclusion action), as
    # sorted (pseudonym, reason) pairs; in JSON an object {pseudonym: reason}. Applied like an
    # annotator rule in the "declared" results, the reason shown as "staff: REASON".
    staff_exclusions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        problems = _check(self)
        if problems:
            raise SettingsError(problems)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["baselines"] = list(self.baselines)
        d["criteria"] = list(self.criteria)
        d["staff_exclusions"] = dict(self.staff_exclusions)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> "AnalysisSettings":
        """Validate ``data`` (a settings dict, or an exported summary holding one)."""
        if isinstance(data, dict) and "settings" in data and "results" in data:
            data = data["settings"]
        if not isinstance(data, dict):
            raise SettingsError(["settings must be a JSON object"])
        problems: list[str] = []
        known = {f.name for f in dataclasses.fields(cls)}
        for key in sorted(set(data) - known):
            problems.append(f"unknown field {key!r} (known: {', '.join(sorted(known))})")
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        for key in ("baselines", "criteria"):
            if key in kwargs:
                v = kwargs[key]
                if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
                    problems.append(f"{key}: must be a list of names, got {v!r}")
                    kwargs.pop(key)
                else:
                    kwargs[key] = tuple(v)
        if "staff_exclusions" in kwargs:
            raw = kwargs["staff_exclusions"]
            if not isinstance(raw, dict):
                problems.append(f"staff_exclusions: must be an object {{pseudonym: reason}}, got {raw!r}")
                kwargs.pop("staff_exclusions")
            else:
                kwargs["staff_exclusions"] = tuple(sorted(raw.items()))
        if "exclusions" in kwargs:
            raw = kwargs["exclusions"]
            if not isinstance(raw, dict):
                problems.append(f"exclusions: must be an object, got {raw!r}")
                kwargs.pop("exclusions")
            else:
                ex_known = {f.name for f in dataclasses.fields(Exclusions)}
                for key in sorted(set(raw) - ex_known):
                    problems.append(f"exclusions.{key}: unknown (known: {', '.join(sorted(ex_known))})")
                kwargs["exclusions"] = Exclusions(**{k: v for k, v in raw.items() if k in ex_known})
        if "monitoring" in kwargs:
            n_before = len(problems)
            kwargs["monitoring"] = Monitoring.from_dict(kwargs["monitoring"], problems)
            if len(problems) > n_before:
                kwargs.pop("monitoring")
        try:
            settings = cls(**kwargs)
        except SettingsError as exc:
            problems.extend(exc.problems)
            settings = None
        if problems:
            raise SettingsError(problems)
        return settings


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(s: AnalysisSettings) -> list[str]:
    p: list[str] = []
    if not isinstance(s.focal, str) or not s.focal:
        p.append(f"focal: must be an objective name, got {s.focal!r}")
    if not isinstance(s.baselines, tuple) or not s.baselines or not all(isinstance(b, str) and b for b in s.baselines):
        p.append(f"baselines: must be a non-empty list of objective names, got {s.baselines!r}")
    else:
        if len(set(s.baselines)) != len(s.baselines):
            p.append(f"baselines: listed twice in {list(s.baselines)}")
        if s.focal in s.baselines:
            p.append(f"baselines: may not contain the focal objective {s.focal!r}")
        if any(b.lower() == "tie" for b in s.baselines) or (isinstance(s.focal, str) and s.focal.lower() == "tie"):
            p.append("an objective may not be called 'tie'")
    if not isinstance(s.criteria, tuple) or not s.criteria:
        p.append(f"criteria: must be a non-empty list, got {s.criteria!r}")
    else:
        bad = [c for c in s.criteria if c not in KNOWN_CRITERIA]
        if bad:
            p.append(f"criteria: unknown {bad} (choose from {', '.join(KNOWN_CRITERIA)})")
        if len(set(s.criteria)) != len(s.criteria):
            p.append(f"criteria: listed twice in {list(s.criteria)}")
    if s.tie_rule not in TIE_RULES:
        p.append(f"tie_rule: must be one of {', '.join(TIE_RULES)}, got {s.tie_rule!r}")
    if s.figure_interval not in FIGURE_INTERVALS:
        p.append(f"figure_interval: must be one of {', '.join(FIGURE_INTERVALS)}, got {s.figure_interval!r}")
    for name in ("confidence", "alpha"):
        v = getattr(s, name)
        if not _is_number(v) or not 0 < v < 1:
            p.append(f"{name}: must be a number in (0, 1), got {v!r}")
    for name, hi in (("bootstrap_replicates", 1_000_000), ("bt_replicates", 1_000_000), ("bootstrap_seed", 2**63 - 1)):
        v = getattr(s, name)
        if not _is_int(v) or not 0 <= v <= hi:
            p.append(f"{name}: must be an integer between 0 and {hi}, got {v!r}")
    for pair in s.staff_exclusions if isinstance(s.staff_exclusions, tuple) else [None]:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)):
            p.append(f"staff_exclusions: each entry must map a pseudonym to a non-empty reason, got {pair!r}")
    if not _is_int(s.min_clusters) or not 2 <= s.min_clusters <= 10_000:
        p.append(f"min_clusters: must be an integer between 2 and 10000, got {s.min_clusters!r}")
    if s.monitoring is not None:
        if not isinstance(s.monitoring, Monitoring):
            p.append(f"monitoring: must be a Monitoring value or null, got {s.monitoring!r}")
        else:
            p.extend(f"monitoring.{x}" for x in _check_monitoring(s.monitoring))
    ex = s.exclusions
    if not isinstance(ex, Exclusions):
        p.append(f"exclusions: must be an Exclusions value, got {ex!r}")
        return p
    acc = ex.min_attention_accuracy
    if acc is not None and (not _is_number(acc) or not 0 <= acc <= 1):
        p.append(f"exclusions.min_attention_accuracy: must be null or in [0, 1], got {acc!r}")
    if not _is_int(ex.min_response_ms) or ex.min_response_ms < 0:
        p.append(f"exclusions.min_response_ms: must be a non-negative integer, got {ex.min_response_ms!r}")
    side = ex.max_side_rate
    if side is not None and (not _is_number(side) or not 0.5 < side <= 1):
        p.append(f"exclusions.max_side_rate: must be null or in (0.5, 1], got {side!r}")
    if not _is_int(ex.side_rate_min_votes) or ex.side_rate_min_votes < 1:
        p.append(f"exclusions.side_rate_min_votes: must be a positive integer, got {ex.side_rate_min_votes!r}")
    return p
