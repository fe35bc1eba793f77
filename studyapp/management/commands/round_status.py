from django.core.management.base import BaseCommand, CommandError

from studyapp import selectors
from studyapp.models import StudyRound


class Command(BaseCommand):
    help = "Print a round's status, counts and annotator URL."

    def add_arguments(self, parser):
        parser.add_argument("round", type=int, help="round id")

    def handle(self, round, **options):
        rnd = StudyRound.objects.filter(pk=round).first()
        if rnd is None:
            raise CommandError(f"no round with id {round}; `python manage.py round_status ID` takes an id from the rounds page")
        c = selectors.round_counts(rnd)
        lines = [
            f"round {rnd.pk}: {rnd.name}",
            f"status: {rnd.status}",
            f"renders: {c.renders_done}/{c.renders} done, {c.renders_failed} failed, {c.renders_pending} pending",
            f"items: {c.items}",
            f"annotators: {c.annotators} ({c.annotators_completed} completed)",
            f"votes: {c.votes} (trials answered {c.trials_answered}, target {c.target_votes} item votes)",
            f"annotator url: {selectors.annotator_url(rnd)}",
        ]
        self.stdout.write("\n".join(lines))
