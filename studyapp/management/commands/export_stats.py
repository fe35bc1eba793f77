"""``python manage.py export_stats ROUND --out DIR``: a round's votes, analysis settings, summary
(JSON and CSV) and figure (SVG and PNG), written so that
``python -m studyapp.stats DIR/votes.csv --settings DIR/settings.json`` reproduces DIR/summary.json.
"""

import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studyapp import exports
from studyapp.models import StudyRound


class Command(BaseCommand):
    help = "Export a round's votes, analysis settings, summary and figure into a folder."

    def add_arguments(self, parser):
        parser.add_argument("round", help="round id (see the rounds page or `round_status`)")
        parser.add_argument("--out", required=True, help="folder to write into (created if missing)")

    def handle(self, round, out, **options):
        try:
            round_id = int(round)
        except ValueError:
            raise CommandError(f"ROUND must be a round id (a number), got {round!r}") from None
        rnd = StudyRound.objects.filter(pk=round_id).first()
        if rnd is None:
            raise CommandError(f"no round with id {round_id}; `python manage.py export_stats ID --out DIR` takes an id from the rounds page")
        out_dir = Path(out)
        if out_dir.exists() and not out_dir.is_dir():
            raise CommandError(f"--out {out}: exists and is not a folder")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
        try:
            export = exports.round_export(rnd, use_cache=False)
        except exports.ExportError as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a message naming the failure, not a traceback
            logging.getLogger(__name__).exception("export of round #%s failed", rnd.pk)
            raise CommandError(f"round {rnd.pk}: the export failed unexpectedly ({type(exc).__name__}: {exc}); "
                               "details are in the log") from None
        try:
            paths = exports.write_export(export, out_dir)
        except OSError as exc:
            raise CommandError(f"--out {out}: cannot write ({exc.strerror}: {exc.filename})") from None
        self.stdout.write(f"round {rnd.pk}: {export.n_votes} votes exported")
        for p in paths:
            self.stdout.write(f"wrote {p}")
