from django.core.management.base import BaseCommand, CommandError

from studyapp.exceptions import StudyError
from studyapp.services.prompts import prompt_set_import, read_capped


class Command(BaseCommand):
    help = "Import a prompt set from a UTF-8 TSV/CSV file with a header (prompt, optional category and id)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="name of the new prompt set (lowercase, digits, dashes)")
        parser.add_argument("file", help="path of the TSV or CSV file")
        parser.add_argument("--title", default="")
        parser.add_argument("--source", default="", help="attribution and licence")

    def handle(self, name, file, title, source, **options):
        try:
            with open(file, "rb") as f:
                data = read_capped(f, what=file)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except StudyError as exc:
            raise CommandError(exc.message) from None
        try:
            ps = prompt_set_import(name=name, data=data, filename=file, title=title, source=source)
        except StudyError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"imported {ps.prompts.count()} prompts into prompt set {ps.name!r}")
