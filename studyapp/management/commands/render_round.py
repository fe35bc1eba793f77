from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studyapp import selectors
from studyapp.exceptions import StudyError
from studyapp.models import Render, StudyRound
from studyapp.services import renders as render_services


class Command(BaseCommand):
    help = (
        "Render a round's images: enqueue them for the GPU workers when CELERY_BROKER_URL is set, "
        "else render them here with a progress bar. Safe to run again: done images are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("round", type=int, help="round id (from the rounds page or create_round)")
        parser.add_argument("--retry-failed", action="store_true", help="queue the failed renders again")
        parser.add_argument(
            "--in-process", action="store_true", help="render here even when a broker is configured"
        )

    def handle(self, round, retry_failed, in_process, **options):
        local = in_process or not settings.CELERY_BROKER_URL
        try:
            if retry_failed:
                result = render_services.renders_retry_failed(round_id=round, dispatch=render_services.CALLER)
            else:
                result = render_services.renders_launch(round_id=round, dispatch=render_services.CALLER)
        except StudyError as exc:
            raise CommandError(exc.message) from None
        # The service's transaction is committed: the workers (or this process) see the queued rows.
        if result.units and not local:
            render_services.dispatch_default(list(result.units))
        elif result.units:
            from tqdm import tqdm

            from studyapp.tasks import render_units_in_process

            total = sum(len(u.render_ids) for u in result.units)
            with tqdm(total=total, unit="image", desc=f"round {round}", file=self.stderr._out) as bar:
                render_units_in_process(list(result.units), on_image=bar.update)
        rnd = StudyRound.objects.get(pk=round)
        if not result.enqueued:
            self.stdout.write(f"round {round} ({rnd.status}): {result.message}")
            return
        if not local:
            self.stdout.write(
                f"round {round}: {result.message} on queue {settings.RENDER_QUEUE!r}; workers render them "
                f"(`celery -A studyapp worker -Q {settings.RENDER_QUEUE} -c 1`). Progress: "
                f"`python manage.py round_status {round}` or the round page."
            )
            return
        c = selectors.round_counts(rnd)
        self.stdout.write(f"round {round} ({rnd.status}): {c.renders_done}/{c.renders} renders done, {c.renders_failed} failed")
        failed = Render.objects.filter(round=rnd, status=Render.Status.FAILED).select_related("prompt")
        if failed:
            for r in failed[:10]:
                self.stderr.write(f"- {r.objective} seed {r.seed} {r.prompt.text[:50]!r}: {r.error}")
            raise CommandError(
                f"{c.renders_failed} render(s) failed (messages above). Fix the cause, then run "
                f"`python manage.py render_round {round} --retry-failed`."
            )
