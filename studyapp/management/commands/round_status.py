from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from studyapp import selectors, selectors_renders
from studyapp.models import StudyRound


class Command(BaseCommand):
    help = (
        "Print a round's status, counts and links. Links use SITE_URL; when the server listens elsewhere "
        "(`demo --addrport` or `runserver ADDRPORT`), pass the same --addrport."
    )

    def add_arguments(self, parser):
        parser.add_argument("round", type=int, help="round id")
        parser.add_argument("--addrport", default=None,
                            help="where the server listens (as given to demo/runserver), e.g. 127.0.0.1:8001")

    def handle(self, round, addrport=None, **options):
        rnd = StudyRound.objects.filter(pk=round).first()
        if rnd is None:
            raise CommandError(f"no round with id {round}; `python manage.py round_status ID` takes an id from the rounds page")
        c = selectors.round_counts(rnd)
        p = selectors_renders.render_progress(rnd, max_failures=0)
        base = selectors.base_url_for(addrport)
        lines = [
            f"round {rnd.pk}: {rnd.name}",
            f"status: {rnd.status}",
            f"renders: {p.done}/{p.total} done, {p.failed} failed, {p.not_launched} not launched, {p.queued} queued, "
            f"{p.running} running, {p.cancelled} cancelled",
            f"items: {c.items}",
            f"annotators: {c.annotators} ({c.annotators_completed} completed)",
            f"votes: {c.votes} (trials answered {c.trials_answered}, target {c.target_votes} item votes)",
            f"researcher page: {base}{reverse('research:round_detail', args=[rnd.pk])}",
            f"annotator url: {selectors.annotator_url(rnd, base)}",
        ]
        self.stdout.write("\n".join(lines))
