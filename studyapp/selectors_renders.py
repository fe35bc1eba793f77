"""Reads of the render workflow: progress of a round, its failures, and the staff gallery."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count

from studyapp.models import Render, StudyRound
from studyapp.services.renders import renders_held, spec_is_tiny

RS = Render.Status
TINY_LABEL = "tiny random weights — images are noise-like, for trying the workflow only"


@dataclass(frozen=True)
class RenderProgress:
    round_status: str
    total: int
    done: int
    failed: int
    pending: int  # not done and not failed: pending, queued, running, cancelled
    queued: int  # sent to the workers (or this process), not started
    running: int
    cancelled: int
    not_launched: int = 0  # created with the round, never sent: nothing is waiting on them
    stalled: int = 0  # running, but no live worker holds them (a worker died; reclaimed on re-delivery)
    failures: list[dict] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.round_status == StudyRound.Status.RENDERING and (self.queued + self.running) > 0

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    def to_dict(self) -> dict:
        return {
            "round_status": self.round_status, "total": self.total, "done": self.done, "failed": self.failed,
            "pending": self.pending, "queued": self.queued, "running": self.running, "cancelled": self.cancelled,
            "not_launched": self.not_launched,
            "stalled": self.stalled, "active": self.active, "percent": self.percent, "failures": self.failures,
        }


def render_progress(rnd: StudyRound, *, max_failures: int = 50) -> RenderProgress:
    counts = dict(Render.objects.filter(round=rnd).values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    total = sum(counts.values())
    failures = [
        {"id": r.pk, "prompt": r.prompt.text, "seed": r.seed, "objective": r.objective, "attempts": r.attempts,
         "error": r.error}
        for r in Render.objects.filter(round=rnd, status=RS.FAILED).select_related("prompt").order_by("pk")[:max_failures]
    ]
    done, failed = counts.get(RS.DONE, 0), counts.get(RS.FAILED, 0)
    stalled = 0
    if counts.get(RS.RUNNING):
        running = list(Render.objects.filter(round=rnd, status=RS.RUNNING).values_list("pk", flat=True))
        stalled = len(running) - len(renders_held(running))
    return RenderProgress(
        round_status=rnd.status, total=total, done=done, failed=failed, pending=total - done - failed,
        queued=counts.get(RS.QUEUED, 0), not_launched=counts.get(RS.PENDING, 0), running=counts.get(RS.RUNNING, 0),
        cancelled=counts.get(RS.CANCELLED, 0), stalled=stalled, failures=failures,
    )


def round_weights_label(rnd: StudyRound) -> str:
    """The warning shown on rounds rendered with the tiny random-weight presets, else ''."""
    return TINY_LABEL if spec_is_tiny(rnd.config.get("generation") or {}) else ""


@dataclass(frozen=True)
class GalleryRow:
    prompt: str
    category: str
    seed: int
    cells: list  # Render or None, in column order


def gallery_rows(rnd: StudyRound) -> tuple[list[str], list[GalleryRow]]:
    """Objectives (columns, config order) and one row per (prompt, seed) with its renders."""
    objectives = list(rnd.config.get("objectives") or [])
    rows: dict[tuple[int, int], dict] = {}
    meta: dict[tuple[int, int], tuple] = {}
    for r in Render.objects.filter(round=rnd).select_related("prompt").order_by("prompt__position", "seed", "objective"):
        key = (r.prompt.position, r.seed)
        rows.setdefault(key, {})[r.objective] = r
        meta[key] = (r.prompt.text, r.prompt.category, r.seed)
        if r.objective not in objectives:
            objectives.append(r.objective)
    # The focal objective first, the baselines after it, as the comparisons are read.
    objectives.sort(key=lambda o: o != "SHIFT")
    out = [GalleryRow(*meta[k], [rows[k].get(o) for o in objectives]) for k in sorted(rows)]
    return objectives, out



def _missing_files(unet: str | None, blip: str | None) -> list[str]:
    from django.conf import settings

    from generation.weights import PRESET_FILES

    names = dict.fromkeys(PRESET_FILES.get(unet, ()) + PRESET_FILES.get(blip, ()))
    folder = settings.WEIGHTS_DIR
    return [n for n in names if not (folder and (folder / n).is_file())]


def preset_missing_weights(preset: str) -> list[str]:
    """Checkpoint files a preset's spec needs that are not in this machine's WEIGHTS_DIR ([] when
    it needs none, or has them all). Workers on other machines may have them: a warning, not a refusal."""
    from generation.presets import PRESETS, spec_from_config

    if preset not in PRESETS:
        return []
    spec = spec_from_config({"preset": preset})
    return _missing_files(spec.unet, spec.blip)


def round_missing_weights(rnd: StudyRound) -> list[str]:
    """The checkpoint files this round's generation spec needs and this machine lacks."""
    gen = rnd.config.get("generation") or {}
    return _missing_files(gen.get("unet"), gen.get("blip"))


def generation_presets() -> list[dict]:
    """The named presets for the new-round form, in ``preset_choices()`` order, each with the
    checkpoint files this machine lacks for it."""
    from generation.presets import PRESETS

    return [
        {"name": p.name, "label": p.label, "description": p.description, "seconds_per_image": p.seconds_per_image,
         "device": p.device, "missing": preset_missing_weights(p.name)}
        for p in PRESETS.values()
    ]
