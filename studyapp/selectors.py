"""Selectors: reads that views, commands and tasks share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q
from django.urls import reverse

from studyapp.models import Annotator, ComparisonItem, Prompt, PromptSet, Render, StudyRound, Trial, Vote


@dataclass(frozen=True)
class RoundCounts:
    renders: int
    renders_done: int
    renders_failed: int
    renders_pending: int
    items: int
    annotators: int
    annotators_completed: int
    trials_answered: int
    votes: int
    target_votes: int


def round_counts(rnd: StudyRound) -> RoundCounts:
    r = Render.objects.filter(round=rnd).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=Render.Status.DONE)),
        failed=Count("id", filter=Q(status=Render.Status.FAILED)),
    )
    items = ComparisonItem.objects.filter(round=rnd)
    a = Annotator.objects.filter(round=rnd).aggregate(
        total=Count("id"), completed=Count("id", filter=Q(status=Annotator.Status.COMPLETED))
    )
    return RoundCounts(
        renders=r["total"],
        renders_done=r["done"],
        renders_failed=r["failed"],
        renders_pending=r["total"] - r["done"] - r["failed"],
        items=items.count(),
        annotators=a["total"],
        annotators_completed=a["completed"],
        trials_answered=Trial.objects.filter(annotator__round=rnd, answered_at__isnull=False, kind=Trial.Kind.REGULAR).count(),
        votes=Vote.objects.filter(trial__annotator__round=rnd, trial__kind=Trial.Kind.REGULAR).count(),
        target_votes=sum(items.values_list("target_votes", flat=True)),
    )


def annotator_url(rnd: StudyRound, base_url: str | None = None) -> str:
    return (base_url or settings.SITE_URL) + reverse("annotate:start", args=[rnd.token])


def prolific_url(rnd: StudyRound, base_url: str | None = None) -> str:
    return annotator_url(rnd, base_url) + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


def round_list():
    return StudyRound.objects.select_related("prompt_set").order_by("-created_at")


def round_config_json(rnd: StudyRound) -> str:
    """The round's config as JSON a researcher can copy into a ``create_round`` file."""
    import json

    from studyapp.exceptions import ConfigError
    from studyapp.round_config import RoundConfig

    try:  # the config's own field order (PostgreSQL's jsonb keeps keys in its storage order)
        config = RoundConfig.from_dict(rnd.config).to_dict()
    except ConfigError:
        config = rnd.config
    if config != rnd.config:  # show exactly what is stored
        config = rnd.config
    return json.dumps(config, indent=2, ensure_ascii=False)


DEFAULT_ADDRPORT = "127.0.0.1:8000"  # runserver's and the demo's default


def base_url_for(addrport: str | None = None) -> str:
    """Where printed links point: SITE_URL, unless the server listens elsewhere (``--addrport``
    of ``runserver``/``demo``). One rule for every command that prints a link."""
    if not addrport or addrport == DEFAULT_ADDRPORT:
        return settings.SITE_URL
    host, _, port = addrport.rpartition(":")
    if not port.isdigit():  # a bare port ("8001") or a bare host
        host, port = (host, addrport) if addrport.isdigit() else (addrport, "8000")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    return f"http://{host}:{port}"


# -- prompt sets --------------------------------------------------------------------------------


def prompt_set_list():
    return PromptSet.objects.annotate(n_prompts=Count("prompts")).order_by("name")


def prompt_set_categories(ps: PromptSet) -> list[tuple[str, int]]:
    """(category, prompts) of a set, most prompts first; '' for uncategorised prompts."""
    rows = Prompt.objects.filter(prompt_set=ps).values_list("category").annotate(n=Count("id"))
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def prompt_set_prompts(ps: PromptSet, *, q: str = "", category: str | None = None):
    """The prompts of a set in position order, filtered by a case-insensitive text search and a
    category (``None``: any; ``""``: uncategorised)."""
    qs = Prompt.objects.filter(prompt_set=ps).order_by("position")
    if q:
        qs = qs.filter(Q(text__icontains=q) | Q(external_id__icontains=q))
    if category is not None:
        qs = qs.filter(category=category)
    return qs


# -- the new-round estimate -------------------------------------------------------------------


@dataclass(frozen=True)
class RoundEstimate:
    prompts: int
    renders: int
    items: int
    votes: int
    votes_per_cell: int
    cells: int
    regular_trials_per_annotator: int
    annotators: int
    preset: str
    seconds_per_image: float | None
    device: str
    compute_seconds: float | None
    plan: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def round_estimate(
    *,
    prompt_set: PromptSet,
    prompt_limit: int | None,
    objectives: list[str],
    seeds_per_prompt: int,
    comparisons: str,
    votes_per_item: int,
    trials_per_annotator: int,
    attention_check_rate: float,
    preset: str,
    expected_preference: float,
    tie_rate: float,
    design_effect: float,
    looks: int = 1,
) -> RoundEstimate:
    """What a round would cost and whether its votes can show the expected preference.

    Counts follow ``round_create`` (renders: prompts x seeds x objectives; items: prompts x seeds
    x pairs) and the allocator (attention checks take their share of each annotator's trials; an
    item's votes come from distinct annotators)."""
    from generation.presets import PRESETS

    from studyapp.models import Criterion
    from studyapp.round_config import FOCAL, RoundConfig
    from studyapp.services.allocation import attention_slots

    n_prompts = Prompt.objects.filter(prompt_set=prompt_set).count()
    if prompt_limit:
        n_prompts = min(n_prompts, prompt_limit)
    cfg = RoundConfig(
        name="estimate", prompt_set=prompt_set.name, objectives=tuple(objectives), seeds_per_prompt=seeds_per_prompt,
        comparisons=comparisons, votes_per_item=votes_per_item, trials_per_annotator=trials_per_annotator,
        attention_check_rate=attention_check_rate,
    )
    pairs = [p for p in cfg.pairs() if set(p) <= set(objectives)]  # none when SHIFT is missing for shift-vs-baselines
    focal = FOCAL if FOCAL in objectives else (objectives[0] if objectives else FOCAL)
    focal_pairs = [p for p in pairs if focal in p]
    renders = n_prompts * seeds_per_prompt * len(objectives)
    items = n_prompts * seeds_per_prompt * len(pairs)
    votes = items * votes_per_item
    checks = len(attention_slots(pseudonym="estimate", quota=trials_per_annotator, rate=attention_check_rate))
    regular = max(trials_per_annotator - checks, 0)
    annotators = max(-(-votes // regular), votes_per_item) if regular and votes else 0
    p = PRESETS.get(preset)
    spi = p.seconds_per_image if p else None
    votes_per_cell = n_prompts * seeds_per_prompt * votes_per_item
    cells = len(focal_pairs) * len(Criterion.choices)
    plan = plan_verdict(votes_per_cell=votes_per_cell, expected_preference=expected_preference,
                        n_tests=cells, tie_rate=tie_rate, design_effect=design_effect,
                        comparisons=len(focal_pairs), trials_per_annotator=regular, seeds_per_prompt=seeds_per_prompt,
                        votes_per_item=votes_per_item, looks=looks) if cells else \
        {"ok": False, "needed": None, "enough": False,
         "message": f"nothing to plan: no comparison of {focal} with another chosen objective"}
    if plan.get("needed") and not plan["enough"] and n_prompts and seeds_per_prompt:
        # Two ways to get there: more votes per item, or (better, STUDY.md 4.8) more prompts.
        per_item = -(-plan["needed"] // (n_prompts * seeds_per_prompt))
        prompts_needed = -(-plan["needed"] // (seeds_per_prompt * votes_per_item))
        plan = {**plan, "votes_per_item_needed": per_item, "prompts_needed": prompts_needed,
                "message": plan["message"] + f"; {per_item} votes per item, or {prompts_needed} prompts at "
                f"{votes_per_item} votes per item, would be enough"}
    return RoundEstimate(
        prompts=n_prompts, renders=renders, items=items, votes=votes, votes_per_cell=votes_per_cell, cells=cells,
        regular_trials_per_annotator=regular, annotators=annotators, preset=preset,
        seconds_per_image=spi, device=p.device if p else "", compute_seconds=None if spi is None else spi * renders,
        plan=plan,
    )


def plan_verdict(*, votes_per_cell: int, expected_preference: float, n_tests: int, tie_rate: float,
                 design_effect: float, comparisons: int = 1, trials_per_annotator: int = 60,
                 seeds_per_prompt: int = 1, votes_per_item: int = 3, looks: int = 1) -> dict:
    """Can ``votes_per_cell`` votes per comparison and criterion detect the expected preference?

    The one place the new-round form asks the planner: ``studyapp.stats.plan_study`` (exact
    binomial test at 80% power, alpha 0.05 split over the family by Holm's first step, votes
    scaled by 1 / (1 - tie rate) and the design effect, inflated for the declared looks), in the
    units a researcher budgets: votes per cell, prompts, annotators, and with interim looks the
    expected votes to a decision."""
    from studyapp.stats.planner import plan_study

    try:
        plan = plan_study(expected_preference, power=0.8, alpha=0.05, n_tests=n_tests, tie_rate=tie_rate,
                          design_effect=design_effect, comparisons=comparisons,
                          trials_per_annotator=max(trials_per_annotator, 1), seeds_per_prompt=seeds_per_prompt,
                          votes_per_item=votes_per_item, looks=looks)
    except ValueError as exc:
        return {"ok": False, "needed": None, "enough": False, "message": f"no plan: {exc}"}
    needed = plan.planned_votes_per_cell
    enough = votes_per_cell >= needed
    looks_note = f" over {looks} looks" if looks > 1 else ""
    if enough:
        message = (f"enough: {votes_per_cell} votes per comparison and criterion; {needed} detect a "
                   f"{expected_preference:.0%} preference with 80% power{looks_note}")
    else:
        message = (f"not enough: {votes_per_cell} votes per comparison and criterion, {needed} needed to detect a "
                   f"{expected_preference:.0%} preference with 80% power{looks_note} ({needed - votes_per_cell} more)")
    message += (f"; that study: {plan.prompts} prompts at {seeds_per_prompt} seed(s) and {votes_per_item} votes per "
                f"item, {plan.annotators} annotators at {trials_per_annotator} trials")
    if plan.expected_votes_h1 is not None:
        message += (f"; expected votes per cell to a decision: {plan.expected_votes_h1:.0f} if the preference is "
                    f"real, {plan.expected_votes_h0:.0f} if there is none")
    for warning in plan.warnings:
        message += f"; {warning}"
    return {"ok": True, "needed": needed, "enough": enough, "message": message,
            "power": 0.8, "alpha": 0.05, "n_tests": n_tests, "tie_rate": tie_rate, "design_effect": design_effect,
            "expected_preference": expected_preference, "looks": looks, "plan": plan.to_dict()}
