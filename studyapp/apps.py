from django.apps import AppConfig


class StudyConfig(AppConfig):
    name = "studyapp"
    verbose_name = "Guidance study"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from studyapp import checks  # noqa: F401  registers system checks
