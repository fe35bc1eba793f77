import json

from django.core.management.base import BaseCommand, CommandError

from studyapp.exceptions import StudyError
from studyapp.services.rounds import round_create


class Command(BaseCommand):
    help = "Create a study round from a JSON config file and print its id."

    def add_arguments(self, parser):
        parser.add_argument("config", help="path of the round config (JSON); see README 'Round config'")

    def handle(self, config, **options):
        try:
            with open(config, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise CommandError(f"cannot read {config}: {exc.strerror}") from None
        except RecursionError:
            raise CommandError(f"{config} is nested too deeply to be a round config") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer literal
            raise CommandError(f"{config} is not valid JSON: {exc}") from None
        try:
            rnd = round_create(config=data)
        except StudyError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(str(rnd.pk))
