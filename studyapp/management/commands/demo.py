"""``python manage.py demo``: the quickstart, from an empty database to an open round in a browser."""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from studyapp import selectors
from studyapp.exceptions import StudyError
from studyapp.models import Render, StudyRound
from studyapp.services import renders as render_services
from studyapp.services.rounds import round_create, round_transition

DEMO_USER = "researcher"
DEMO_ROUND = "Demo: DrawBench, SHIFT vs ITC, CAP, BLEND"
DEMO_TOY_ROUND = "Demo: toy world, SHIFT vs ITC, ITM, CAP, BLEND"
DEFAULT_ADDRPORT = selectors.DEFAULT_ADDRPORT


def real_weights_present() -> bool:
    """True when WEIGHTS_DIR holds every file of the paper preset."""
    from studyapp.selectors_renders import preset_missing_weights

    return not preset_missing_weights("paper")


class Command(BaseCommand):
    help = (
        "Quickstart: migrate, make a staff login, create and render a small demo round, open it, print the "
        "researcher and annotator URLs, and run the server (default 127.0.0.1:8000). Without the paper's "
        "checkpoints in WEIGHTS_DIR (the usual case) the round is the toy world: 32x32 scenes of coloured shapes "
        "from small trained models shipped with the project, rendered on the CPU in about a minute. With the "
        "checkpoints: a DrawBench round with the paper's models. --tiny: tiny random weights (noise-like images, "
        "workflow only)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addrport", default=DEFAULT_ADDRPORT,
                            help="where the server listens, as runserver takes it (printed links follow it; "
                                 "`round_status ID --addrport` prints the same links)")
        parser.add_argument("--no-server", action="store_true", help="prepare everything, do not run the server")
        parser.add_argument("--prompts", type=int, default=4, help="prompts in the demo round (default 4)")
        parser.add_argument("--new-password", action="store_true", help=f"give {DEMO_USER!r} a new password and print it")
        parser.add_argument("--tiny", action="store_true",
                            help="without real checkpoints: tiny random weights instead of the toy world (workflow only)")

    def handle(self, addrport, no_server, prompts, new_password, tiny=False, **options):
        self.stdout.write("Preparing the database (migrate)...")
        call_command("migrate", interactive=False, verbosity=0)
        self._login(new_password)
        rnd = self._demo_round(prompts, tiny)
        self._render(rnd)
        rnd.refresh_from_db()
        if rnd.status == StudyRound.Status.READY:
            rnd = round_transition(round_id=rnd.pk, to=StudyRound.Status.OPEN)
        base = selectors.base_url_for(addrport)
        self.stdout.write(self.style.SUCCESS(f"Demo round #{rnd.pk} is {rnd.status}."))
        self.stdout.write(f"  Researcher page: {base}{reverse('research:round_detail', args=[rnd.pk])}")
        self.stdout.write(f"  Gallery:         {base}{reverse('research:round_gallery', args=[rnd.pk])}")
        self.stdout.write(f"  Annotator link:  {selectors.annotator_url(rnd, base)}")
        if render_services.spec_is_tiny(rnd.config.get("generation") or {}):
            self.stdout.write(self.style.WARNING(
                "  Tiny random weights: images are noise-like, for trying the workflow only. Put the checkpoints "
                f"in WEIGHTS_DIR ({settings.WEIGHTS_DIR}; `python -m generation fetch-weights`) and create a new round "
                "for real images."
            ))
        if no_server:
            return
        self.stdout.write(f"Starting the server at http://{addrport}/ (Ctrl-C stops it, and the embedded database).")
        call_command("runserver", addrport, use_reloader=False)

    def _login(self, new_password: bool) -> None:
        User = get_user_model()
        user = User.objects.filter(username=DEMO_USER).first()
        if user is None or new_password:
            password = secrets.token_urlsafe(9)
            if user is None:
                user = User.objects.create_user(DEMO_USER, password=password, is_staff=True, is_superuser=True)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            self.stdout.write(self.style.SUCCESS(f"Staff login: user {DEMO_USER!r}, password {password!r} (shown once; stored only hashed)"))
        else:
            self.stdout.write(
                f"Staff login: user {DEMO_USER!r} with the password printed on the first run "
                f"(`python manage.py demo --new-password` prints a new one)."
            )

    def _demo_round(self, prompts: int, tiny: bool = False) -> StudyRound:
        if real_weights_present():
            self.stdout.write(f"Checkpoints found in {settings.WEIGHTS_DIR}: rendering with the real models "
                              "(minutes per image without a GPU).")
            return self._round(DEMO_ROUND, "drawbench", prompts, ["SHIFT", "ITC", "CAP", "BLEND"], 1,
                               {"preset": "paper"})
        if tiny:
            self.stdout.write(f"No checkpoints in {settings.WEIGHTS_DIR}: rendering with the tiny random-weight presets.")
            return self._round(DEMO_ROUND, "drawbench", prompts, ["SHIFT", "ITC", "CAP", "BLEND"], 1,
                               {"preset": "tiny"})
        self.stdout.write(f"No checkpoints in {settings.WEIGHTS_DIR}: rendering with the toy world's trained 32x32 "
                          "models (docs/toyworld/README.md).")
        return self._round(DEMO_TOY_ROUND, "toyworld", prompts, ["SHIFT", "ITC", "ITM", "CAP", "BLEND"], 2,
                           {"preset": "toy"})

    def _round(self, name: str, prompt_set: str, prompts: int, objectives: list[str], seeds: int,
               generation: dict) -> StudyRound:
        """The newest round of that name, or a new one (the demo may be run again)."""
        rnd = StudyRound.objects.filter(name=name).order_by("-created_at").first()
        if rnd is not None:
            self.stdout.write(f"Using the existing demo round #{rnd.pk} ({rnd.status}).")
            return rnd
        config = {
            "name": name, "prompt_set": prompt_set, "prompt_limit": prompts, "objectives": objectives,
            "seeds_per_prompt": seeds, "comparisons": "shift-vs-baselines", "votes_per_item": 3,
            "trials_per_annotator": 8, "attention_check_rate": 0.15, "generation": generation,
        }
        try:
            rnd = round_create(config=config)
        except StudyError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Created demo round #{rnd.pk}: {prompts} {prompt_set} prompts x {len(objectives)} "
                          f"objectives x {seeds} seed(s).")
        return rnd

    def _render(self, rnd: StudyRound) -> None:
        if rnd.status in (StudyRound.Status.OPEN, StudyRound.Status.CLOSED):
            return
        from tqdm import tqdm

        from studyapp.tasks import render_units_in_process

        Render.objects.filter(round=rnd, status=Render.Status.FAILED).update(status=Render.Status.PENDING)
        try:
            result = render_services.renders_launch(round_id=rnd.pk, dispatch=render_services.CALLER)
        except StudyError as exc:
            raise CommandError(exc.message) from None
        if result.units:
            started = time.monotonic()
            total = sum(len(u.render_ids) for u in result.units)
            with tqdm(total=total, unit="image", desc="rendering", file=self.stderr._out) as bar:
                render_units_in_process(list(result.units), on_image=bar.update)
            self.stdout.write(f"Rendered in {time.monotonic() - started:.0f} s (in this process; no broker needed).")
        failed = Render.objects.filter(round=rnd, status=Render.Status.FAILED)
        if failed.exists():
            raise CommandError(
                f"{failed.count()} demo render(s) failed: {failed.first().error}\nFix the cause and run the demo again."
            )

