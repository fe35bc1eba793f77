"""Study rounds: creation from a validated config, and the status machine.

``draft -> rendering -> ready -> open -> closed``; a round whose images were imported goes
``draft -> ready``; cancelling a render run goes ``rendering -> draft``.
"""

from __future__ import annotations

import random

from django.db import connection, transaction
from django.utils import timezone

from studyapp.exceptions import ConfigError, TransitionError
from studyapp.models import ComparisonItem, Prompt, PromptSet, Render, StudyRound
from studyapp.round_config import FOCAL, RoundConfig, spec_hash_of

Status = StudyRound.Status

ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    Status.DRAFT: {Status.RENDERING, Status.READY},
    Status.RENDERING: {Status.READY, Status.DRAFT},
    Status.READY: {Status.OPEN, Status.RENDERING},
    Status.OPEN: {Status.CLOSED},
    Status.CLOSED: set(),
}


@transaction.atomic
def round_create(*, config: dict, created_by=None) -> StudyRound:
    """Validate ``config``, then create the round, its pending renders and its comparison items."""
    cfg = RoundConfig.from_dict(config)
    try:
        prompt_set = PromptSet.objects.get(name=cfg.prompt_set)
    except PromptSet.DoesNotExist:
        names = ", ".join(PromptSet.objects.values_list("name", flat=True)) or "none yet"
        raise ConfigError([f"prompt_set: no prompt set named {cfg.prompt_set!r} (available: {names})"]) from None
    prompts = list(Prompt.objects.filter(prompt_set=prompt_set).order_by("position")[: cfg.prompt_limit])
    if not prompts:
        raise ConfigError([f"prompt_set: {cfg.prompt_set!r} has no prompts"])

    rnd = StudyRound.objects.create(
        name=cfg.name,
        prompt_set=prompt_set,
        config=cfg.to_dict(),
        spec_hash=spec_hash_of(cfg.generation) if cfg.generation else "",
        created_by=created_by,
    )
    renders = Render.objects.bulk_create(
        Render(round=rnd, prompt=p, seed=s, objective=o)
        for p in prompts
        for s in range(cfg.seeds_per_prompt)
        for o in cfg.objectives
    )
    by_key = {(r.prompt_id, r.seed, r.objective): r for r in renders}
    items = [
        ComparisonItem(
            round=rnd,
            prompt=p,
            seed=s,
            objective_a=a,
            objective_b=b,
            render_a=by_key[(p.id, s, a)],
            render_b=by_key[(p.id, s, b)],
            target_votes=cfg.votes_per_item,
        )
        for p in prompts
        for s in range(cfg.seeds_per_prompt)
        for a, b in cfg.pairs()
    ]
    for item, rank in zip(items, item_order(len(items), cfg.round_seed)):
        item.shuffle = rank
    ComparisonItem.objects.bulk_create(items)
    return rnd


DELETABLE = (Status.DRAFT, Status.RENDERING, Status.READY)


def round_delete_problem(rnd: StudyRound) -> str:
    """Why ``rnd`` cannot be deleted, or '' when it can: a round that was never opened and has no
    render in a worker's hands (a draft, a failed render run, a ready round nobody saw)."""
    if rnd.status not in DELETABLE:
        return (f"round #{rnd.pk} is {rnd.status}: it was opened to annotators, and its votes are the record "
                "of the study, so it cannot be deleted")
    busy = rnd.renders.filter(status__in=[Render.Status.QUEUED, Render.Status.RUNNING]).count()
    if busy:
        return f"round #{rnd.pk} has {busy} render(s) queued or running: cancel the render run first, then delete"
    if rnd.annotators.exists():
        return f"round #{rnd.pk} has annotators; it cannot be deleted"
    scale = getattr(rnd, "pilot_scale", None)
    if scale is not None:
        return (f"round #{rnd.pk} is the scale-{scale.scale:g} images of calibration pilot {scale.pilot.name!r}; "
                "it is kept with the pilot, whose grid compares it with the other scales")
    return ""


def round_delete(*, round_id: int) -> str:
    """Delete a round that was never opened, with its renders, items and image files.

    Returns the deleted round's name; raises :class:`TransitionError` saying why not otherwise."""
    from studyapp.storage import render_file_delete

    with transaction.atomic():
        rnd = StudyRound.objects.select_for_update().filter(pk=round_id).first()
        if rnd is None:
            raise TransitionError(f"no round with id {round_id} (already deleted?)")
        problem = round_delete_problem(rnd)
        if problem:
            raise TransitionError(problem)
        files = [n for n in rnd.renders.exclude(image="").values_list("image", flat=True) if n]
        name = rnd.name
        rnd.items.all().delete()  # items hold PROTECT references to the renders
        rnd.renders.all().delete()
        rnd.delete()
    # The rows are gone for good: now the files (a crash before this line leaves orphans, never a
    # row without its image).
    for f in files:
        render_file_delete(f)
    return name


def item_order(n: int, round_seed: int) -> list[int]:
    """The allocation order of a round's ``n`` items (a permutation of 0..n-1), from its seed."""
    order = list(range(n))
    random.Random(f"items:{round_seed}").shuffle(order)
    return order


def round_config(rnd: StudyRound) -> RoundConfig:
    return RoundConfig.from_dict(rnd.config)


@transaction.atomic
def round_transition(*, round_id: int, to: str) -> StudyRound:
    """Move a round to status ``to``, refusing illegal moves with a message that says why."""
    rnd = StudyRound.objects.select_for_update().get(pk=round_id)
    if to not in Status.values:
        raise TransitionError(f"unknown status {to!r}; statuses are {', '.join(Status.values)}")
    if to == rnd.status:
        return rnd  # idempotent: a double click or a repeated command changes nothing
    if to not in ALLOWED_TRANSITIONS[rnd.status]:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[rnd.status])) or "none (the round is final)"
        raise TransitionError(f"round #{rnd.pk} is {rnd.status}; it cannot become {to} (allowed next: {allowed})")
    if to == Status.READY:
        missing = rnd.renders.exclude(status=Render.Status.DONE).count()
        if missing:
            raise TransitionError(f"round #{rnd.pk} has {missing} render(s) not done; it becomes ready when every image exists")
    fields = ["status"]
    if to == Status.OPEN:
        rnd.opened_at = timezone.now()
        rnd.analysis_settings = analysis_settings_for(rnd)
        fields += ["opened_at", "analysis_settings"]
        # Fresh statistics before the first annotator: without them the planner guesses a new
        # round has a handful of items and sorts all of them on every allocation instead of
        # walking the allocation-order index to the first free one.
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {ComparisonItem._meta.db_table}")
    if to == Status.CLOSED:
        rnd.closed_at = timezone.now()
        fields.append("closed_at")
    rnd.status = to
    rnd.save(update_fields=fields)
    return rnd


def analysis_settings_for(rnd: StudyRound) -> dict:
    """The analysis declared when the round opens, in the stats module's format: focal objective
    and baselines, tie rule, exclusions, bootstrap seed (DESIGN invariant 7)."""
    from studyapp.stats.config import AnalysisSettings

    cfg = round_config(rnd)
    focal = FOCAL if FOCAL in cfg.objectives else cfg.objectives[0]
    baselines = [b if a == focal else a for a, b in cfg.pairs() if focal in (a, b)]
    from studyapp.stats.config import Monitoring

    return AnalysisSettings(
        focal=focal,
        baselines=tuple(baselines),
        tie_rule=cfg.tie_rule,
        exclusions=cfg.exclusions,
        bootstrap_seed=cfg.round_seed,
        monitoring=Monitoring(**cfg.monitoring) if cfg.monitoring else None,
    ).to_dict()
