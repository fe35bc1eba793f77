"""Calibration pilots: a guidance-scale sweep rendered as one draft round per scale.

Each scale's round renders the pilot's prompts x seeds x objectives with every objective's scale
set to that value, through the ordinary render path (Celery workers, the same task); the rounds
share one round seed, so the noise of an image depends only on its prompt and seed and every scale
is compared with its own unguided anchor (scale 0). Pilot rounds are never opened to annotators.
"""

from django.conf import settings
from django.db import models


class Pilot(models.Model):
    name = models.CharField(max_length=200, unique=True)
    prompt_set = models.ForeignKey("studyapp.PromptSet", on_delete=models.PROTECT, related_name="pilots")
    # {"generation": {...}, "objectives": [...], "seeds_per_prompt": n, "prompt_limit": n, "round_seed": n}
    config = models.JSONField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "studyapp"
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"pilot {self.name}"


class PilotRound(models.Model):
    pilot = models.ForeignKey(Pilot, on_delete=models.CASCADE, related_name="scale_rounds")
    round = models.OneToOneField("studyapp.StudyRound", on_delete=models.CASCADE, related_name="pilot_scale")
    scale = models.FloatField()

    class Meta:
        app_label = "studyapp"
        ordering = ["scale"]
        constraints = [
            models.UniqueConstraint(fields=["pilot", "scale"], name="pilot_scale_unique"),
            models.CheckConstraint(condition=models.Q(scale__gte=0) & models.Q(scale__lte=1e6), name="pilot_scale_range"),
        ]
