import json

from django.core.management.base import BaseCommand, CommandError

from studyapp.exceptions import StudyError
from studyapp.services.files import TooLarge, read_at_most
from studyapp.services.rounds import round_create

# A round config is a few hundred bytes; anything this large is not one.
MAX_CONFIG_BYTES = 1024 * 1024


class Command(BaseCommand):
    help = "Create a study round from a JSON config file and print its id."

    def add_arguments(self, parser):
        parser.add_argument("config", help="path of the round config (JSON); see README 'Round config'")

    def handle(self, config, **options):
        try:
            with open(config, "rb") as f:
                raw = read_at_most(f, MAX_CONFIG_BYTES)
        except OSError as exc:
            raise CommandError(f"cannot read {config}: {exc.strerror}") from None
        except TooLarge:
            raise CommandError(f"{config} is larger than {MAX_CONFIG_BYTES:,} bytes; a round config is a small JSON object") from None
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer literal
            raise CommandError(f"{config} is not valid JSON: {exc}") from None
        except RecursionError:
            raise CommandError(f"{config} is nested too deeply to be a round config; see README 'Round config'") from None
        try:
            rnd = round_create(config=data)
        except StudyError as exc:
            raise CommandError(exc.message) from None
        except RecursionError:  # parsed, but too deep for the validation to walk
            raise CommandError(f"{config} is nested too deeply to be a round config; see README 'Round config'") from None
        self.stdout.write(str(rnd.pk))
