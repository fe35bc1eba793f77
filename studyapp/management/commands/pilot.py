"""``manage.py pilot``: create a calibration pilot, render it, show its suggestion, write the config.

    python manage.py pilot create NAME --prompt-set SET --objectives ITC,CAP,SHIFT \\
        [--scales 0,0.03,0.1,0.3,1 | --log-scales LOW HIGH COUNT] [--preset paper] [--set FIELD=JSON ...] \\
        [--seeds 2] [--prompts 4] [--round-seed 0]
    python manage.py pilot launch ID [--in-process]
    python manage.py pilot suggest ID [--out round.json] [--name NAME]
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.pilot import log_spaced_scales
from generation.presets import spec_from_config
from generation.spec import SpecError
from studyapp.exceptions import StudyError
from studyapp.models_pilot import Pilot
from studyapp.selectors_pilot import pilot_view
from studyapp.services import pilot as pilot_services
from studyapp.services import renders as render_services


class Command(BaseCommand):
    help = "Calibration pilots: a guidance-scale sweep per objective, its grid page, and the suggested scales."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        c = sub.add_parser("create", help="create the pilot's rounds (one per scale)")
        c.add_argument("name")
        c.add_argument("--prompt-set", required=True)
        c.add_argument("--objectives", required=True, help="comma-separated, at least two (e.g. ITC,CAP,SHIFT)")
        scales = c.add_mutually_exclusive_group()
        scales.add_argument("--scales", help="comma-separated, must include 0 (the unguided anchor)")
        scales.add_argument("--log-scales", nargs=3, metavar=("LOW", "HIGH", "COUNT"),
                            help="0 plus COUNT log-spaced scales from LOW to HIGH (default: 7 scales from 1/100 "
                                 "to 10 times the preset's own ITC scale)")
        c.add_argument("--preset", default="paper", help="generation preset (default: paper)")
        c.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="override a generation field")
        c.add_argument("--seeds", type=int, default=2)
        c.add_argument("--prompts", type=int, default=4)
        c.add_argument("--round-seed", type=int, default=0)
        la = sub.add_parser("launch", help="render the pilot (the render workers, or here with --in-process)")
        la.add_argument("pilot", type=int)
        la.add_argument("--in-process", action="store_true")
        s = sub.add_parser("suggest", help="print the suggested scales; --out writes a new round's config")
        s.add_argument("pilot", type=int)
        s.add_argument("--out")
        s.add_argument("--name")

    def handle(self, action, **o):
        try:
            return {"create": self._create, "launch": self._launch, "suggest": self._suggest}[action](o)
        except StudyError as exc:
            raise CommandError(exc.message) from None

    def _create(self, o):
        generation = {"preset": o["preset"]}
        for item in o["set"]:
            field, _, raw = item.partition("=")
            try:
                generation[field] = json.loads(raw)
            except json.JSONDecodeError:
                generation[field] = raw
        try:
            if o["scales"]:
                scales = [float(x) for x in o["scales"].split(",")]
            elif o["log_scales"]:
                low, high, count = o["log_scales"]
                scales = log_spaced_scales(float(low), float(high), int(count))
            else:  # around the preset's own guess: paper 100 -> 1..1000, toy 0.1 -> 0.001..1
                try:
                    base = spec_from_config(generation).scale_itc or 1.0
                except SpecError:
                    base = 1.0  # the service reports the spec's problems
                scales = log_spaced_scales(base / 100, base * 10, 7)
        except ValueError as exc:
            raise CommandError(f"scales: {exc}") from None
        pilot = pilot_services.pilot_create(
            name=o["name"], prompt_set=o["prompt_set"], generation=generation,
            objectives=[x.strip() for x in o["objectives"].split(",") if x.strip()], scales=scales,
            seeds_per_prompt=o["seeds"], prompt_limit=o["prompts"], round_seed=o["round_seed"],
        )
        n = sum(r.round.renders.count() for r in pilot.scale_rounds.select_related("round"))
        self.stdout.write(f"pilot {pilot.pk} {pilot.name!r}: {len(scales)} scales ({', '.join(f'{s:g}' for s in scales)}), "
                          f"{n} images. Render it: python manage.py pilot launch {pilot.pk}")

    def _pilot(self, pk) -> Pilot:
        pilot = Pilot.objects.select_related("prompt_set").filter(pk=pk).first()
        if pilot is None:
            raise CommandError(f"no pilot with id {pk}; `python manage.py pilot create ...` prints the id")
        return pilot

    def _launch(self, o):
        pilot = self._pilot(o["pilot"])
        local = o["in_process"] or not settings.CELERY_BROKER_URL
        results = pilot_services.pilot_launch(pilot_id=pilot.pk, dispatch=render_services.CALLER)
        units = [u for r in results for u in r.units]
        if local:
            from studyapp.tasks import render_units_in_process

            totals = render_units_in_process(units)
            self.stdout.write(f"pilot {pilot.pk}: rendered here: {totals}")
        else:
            render_services.dispatch_default(units)
            self.stdout.write(f"pilot {pilot.pk}: {sum(r.enqueued for r in results)} render(s) queued on {settings.RENDER_QUEUE!r}")

    def _suggest(self, o):
        view = pilot_view(self._pilot(o["pilot"]))
        if view.suggestion is None:
            raise CommandError(f"pilot {view.pilot.pk} has {view.done} of {view.total} images rendered "
                               f"({view.failed} failed); suggest once all are done")
        for g in view.grids:
            s = g.summary
            self.stdout.write(f"{g.objective}: scale {s.suggested:g} ({s.reason})")
        config = pilot_services.pilot_round_config(pilot=view.pilot, generation=view.suggestion, name=o["name"])
        if o["out"]:
            Path(o["out"]).write_text(json.dumps(config, indent=2) + "\n")
            self.stdout.write(f"wrote {o['out']}: create the round with `python manage.py create_round {o['out']}`")
        else:
            self.stdout.write(json.dumps(config, indent=2))
