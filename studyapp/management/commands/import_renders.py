from django.core.management.base import BaseCommand, CommandError

from studyapp.exceptions import StudyError
from studyapp.services.render_import import COLUMNS, MANIFEST, renders_import


class Command(BaseCommand):
    help = (
        f"Import a draft round's images made elsewhere: DIR/{MANIFEST} has the columns "
        f"{', '.join(COLUMNS)} (prompt by its text or id; file relative to DIR), one row per render. "
        "Nothing is imported unless every row is valid; the round then becomes ready."
    )

    def add_arguments(self, parser):
        parser.add_argument("round", type=int, help="round id")
        parser.add_argument("dir", help=f"folder holding {MANIFEST} and the images")

    def handle(self, round, dir, **options):
        try:
            result = renders_import(round_id=round, directory=dir)
        except StudyError as exc:
            raise CommandError(exc.message) from None
        w, h = result.size
        self.stdout.write(f"imported {result.imported} images ({w}x{h}) into round {round}; it is ready to open")
