"""Calibration pilots (reads): the grid of prompts x scales per objective, with the final BLIP
scores, the over-guidance signal and the suggested scales (``generation.pilot.analyse``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from generation.pilot import HF_RATIO_LIMIT, Cell, ObjectiveSummary, analyse, suggested_generation
from studyapp.models import Render
from studyapp.models_pilot import Pilot


@dataclass
class GridCell:
    render: Render | None
    cell: Cell | None


@dataclass
class GridRow:
    prompt: str
    seed: int
    cells: list[GridCell]


@dataclass
class ObjectiveGrid:
    objective: str
    summary: ObjectiveSummary | None
    rows: list[GridRow] = field(default_factory=list)


@dataclass
class PilotView:
    pilot: Pilot
    scales: list[float]
    grids: list[ObjectiveGrid]
    done: int
    total: int
    failed: int
    suggestion: dict | None  # the generation config with the suggested scales, once all renders are done
    hf_limit: float = HF_RATIO_LIMIT

    @property
    def scale_labels(self) -> list[tuple[float, str]]:
        return [(s, f"{s:g}") for s in self.scales]


def pilot_view(pilot: Pilot) -> PilotView:
    scale_of = {pr.round_id: pr.scale for pr in pilot.scale_rounds.all()}
    scales = sorted(scale_of.values())
    renders = list(Render.objects.filter(round_id__in=scale_of).select_related("prompt")
                   .order_by("prompt__position", "seed", "objective"))
    done = [r for r in renders if r.status == Render.Status.DONE]
    cells: dict[int, Cell] = {}
    for r in done:
        diag = (r.provenance or {}).get("diagnostics") or {}
        if "high_frequency_energy" not in diag:
            continue  # rendered before diagnostics existed: shown, not analysed
        cells[r.pk] = Cell(r.objective, scale_of[r.round_id], r.prompt.text, r.seed,
                           {"itc": r.itc_score, "itm": r.itm_score, "cap": r.cap_score},
                           diag["high_frequency_energy"], diag.get("x0_range_excess_late"))
    summaries = analyse(list(cells.values())) if cells else {}
    objectives = list(pilot.config["objectives"])
    by_key = {(r.objective, scale_of[r.round_id], r.prompt.position, r.seed): r for r in renders}
    keys = sorted({(r.prompt.position, r.prompt.text, r.seed) for r in renders})
    grids = []
    for objective in objectives:
        grid = ObjectiveGrid(objective, summaries.get(objective))
        for position, text, seed in keys:
            row = []
            for scale in scales:
                # The anchor round renders every objective unguided; show this objective's copy.
                r = by_key.get((objective, scale, position, seed))
                row.append(GridCell(r, cells.get(r.pk) if r else None))
            grid.rows.append(GridRow(text, seed, row))
        grids.append(grid)
    failed = sum(r.status == Render.Status.FAILED for r in renders)
    complete = bool(renders) and len(done) == len(renders)
    suggestion = suggested_generation(pilot.config["generation"], summaries) if complete and summaries else None
    return PilotView(pilot, scales, grids, len(done), len(renders), failed, suggestion)
