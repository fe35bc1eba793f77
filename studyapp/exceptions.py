"""Domain errors. Each has a stable code, and a message that tells the user what to fix."""

from __future__ import annotations


class StudyError(Exception):
    code = "study_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ConfigError(StudyError):
    """A round configuration is invalid; ``problems`` lists every problem found."""

    code = "bad_config"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid round configuration:\n" + "\n".join(f"- {p}" for p in self.problems))


class ImportFileError(StudyError):
    """A prompt or render file is malformed; ``problems`` are ``line N: reason`` strings."""

    code = "bad_file"

    def __init__(self, problems: list[str], *, what: str = "file"):
        self.problems = list(problems)
        head = f"{what} rejected, nothing was imported ({len(self.problems)} problem(s)):"
        super().__init__(head + "\n" + "\n".join(f"- {p}" for p in self.problems[:50]))


class TransitionError(StudyError):
    code = "bad_transition"
    status = 409
