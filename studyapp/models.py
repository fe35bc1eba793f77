"""The study's system of record. PostgreSQL enforces the invariants (unique and check
constraints); services add the rules that need more than one row."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q


class Objective(models.TextChoices):
    ITC = "ITC"
    ITM = "ITM"
    CAP = "CAP"
    SHIFT = "SHIFT"
    BLEND = "BLEND"


class Criterion(models.TextChoices):
    REALISM = "realism", "Photo-realism"
    ALIGNMENT = "alignment", "Text alignment"


class Choice(models.TextChoices):
    LEFT = "left"
    RIGHT = "right"
    TIE = "tie", "Can't decide"


def _in(field: str, choices) -> Q:
    return Q(**{f"{field}__in": [c for c, _ in choices.choices]})


def new_token(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


class PromptSet(models.Model):
    name = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200, blank=True)
    source = models.TextField(blank=True, help_text="Where the prompts come from and their licence.")
    builtin = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    position = models.PositiveIntegerField()
    text = models.TextField()
    category = models.CharField(max_length=80, blank=True)
    external_id = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["prompt_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["prompt_set", "position"], name="prompt_unique_position"),
            models.UniqueConstraint(fields=["prompt_set", "text"], name="prompt_unique_text"),
            models.UniqueConstraint(
                fields=["prompt_set", "external_id"], condition=~Q(external_id=""), name="prompt_unique_external_id"
            ),
            models.CheckConstraint(condition=~Q(text=""), name="prompt_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class RoundStatus(models.TextChoices):
    DRAFT = "draft"
    RENDERING = "rendering"
    READY = "ready"
    OPEN = "open"
    CLOSED = "closed"


class StudyRound(models.Model):
    Status = RoundStatus
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="rounds")
    # The validated config as submitted (RoundConfig.to_dict()); never edited after creation.
    config = models.JSONField()
    spec_hash = models.CharField(max_length=64, blank=True)
    # Opaque slug of the annotator link; reveals nothing about the round.
    token = models.CharField(max_length=40, unique=True, default=new_token)
    completion_code = models.CharField(max_length=40, default=new_token)
    screenout_code = models.CharField(max_length=40, default=new_token)
    # Frozen at opening (DESIGN invariant 7): the analysis settings the results are reported with.
    analysis_settings = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=_in("status", RoundStatus), name="round_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="open") | Q(opened_at__isnull=False), name="round_open_has_opened_at"
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | Q(closed_at__isnull=False), name="round_closed_has_closed_at"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk}, {self.status})"


class RenderStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Render(models.Model):
    """One image: a (prompt, seed index) rendered under one objective."""

    Status = RenderStatus
    round = models.ForeignKey(StudyRound, on_delete=models.CASCADE, related_name="renders")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="renders")
    seed = models.PositiveIntegerField(help_text="Seed index within the prompt (0 .. seeds_per_prompt-1).")
    objective = models.CharField(max_length=8, choices=Objective.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    # Opaque random file name; nothing in it names the objective, prompt or seed.
    image = models.FileField(upload_to="renders/", blank=True, max_length=200)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    itc_score = models.FloatField(null=True, blank=True)
    itm_score = models.FloatField(null=True, blank=True)
    cap_score = models.FloatField(null=True, blank=True)
    provenance = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["round", "prompt__position", "seed", "objective"]
        constraints = [
            models.UniqueConstraint(fields=["round", "prompt", "seed", "objective"], name="render_unique"),
            models.CheckConstraint(condition=_in("objective", Objective), name="render_objective_valid"),
            models.CheckConstraint(condition=_in("status", RenderStatus), name="render_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="done") | (~Q(image="") & Q(provenance__isnull=False)),
                name="render_done_has_image_and_provenance",
            ),
        ]
        indexes = [models.Index(fields=["round", "status"])]

    def __str__(self) -> str:
        return f"render #{self.pk} {self.objective} seed {self.seed}"


class ComparisonItem(models.Model):
    """A pair of renders of one (prompt, seed) under two objectives, to be voted on."""

    round = models.ForeignKey(StudyRound, on_delete=models.CASCADE, related_name="items")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="items")
    seed = models.PositiveIntegerField()
    objective_a = models.CharField(max_length=8, choices=Objective.choices)
    objective_b = models.CharField(max_length=8, choices=Objective.choices)
    render_a = models.ForeignKey(Render, on_delete=models.PROTECT, related_name="+")
    render_b = models.ForeignKey(Render, on_delete=models.PROTECT, related_name="+")
    target_votes = models.PositiveIntegerField()
    # Trials of this item that are answered or currently held by an annotator; the allocator
    # keeps it in step with Trial rows under a row lock (DESIGN invariant 4).
    assigned = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    # The item's place in a permutation of the round's items drawn from ``round_seed`` at
    # creation: equally covered items are handed out in this order, so the allocator's pick is an
    # index scan (no sort of every open item per request) and reproducible from the config.
    shuffle = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["round", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["round", "prompt", "seed", "objective_a", "objective_b"], name="item_unique"
            ),
            models.CheckConstraint(condition=~Q(objective_a=models.F("objective_b")), name="item_distinct_objectives"),
            models.CheckConstraint(condition=_in("objective_a", Objective), name="item_objective_a_valid"),
            models.CheckConstraint(condition=_in("objective_b", Objective), name="item_objective_b_valid"),
            models.CheckConstraint(condition=Q(target_votes__gte=1), name="item_target_positive"),
            models.CheckConstraint(condition=Q(completed__lte=models.F("assigned")), name="item_completed_le_assigned"),
            models.CheckConstraint(condition=Q(assigned__lte=models.F("target_votes")), name="item_assigned_le_target"),
        ]
        indexes = [models.Index(fields=["round", "assigned", "shuffle"], name="item_allocation_order")]

    def __str__(self) -> str:
        return f"item #{self.pk} {self.objective_a} vs {self.objective_b}"


class AnnotatorStatus(models.TextChoices):
    NEW = "new"
    CONSENTED = "consented"
    PRACTICE = "practice"
    ACTIVE = "active"
    COMPLETED = "completed"
    SCREENED_OUT = "screened_out"


class AnnotatorQC(models.TextChoices):
    PENDING = "pending"
    PASS = "pass"
    FAIL = "fail"


class Annotator(models.Model):
    Status = AnnotatorStatus
    QC = AnnotatorQC
    round = models.ForeignKey(StudyRound, on_delete=models.CASCADE, related_name="annotators")
    pseudonym = models.CharField(max_length=40, unique=True, default=new_token)
    prolific_pid = models.CharField(max_length=64, blank=True)
    prolific_study_id = models.CharField(max_length=64, blank=True)
    prolific_session_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    consent_at = models.DateTimeField(null=True, blank=True)
    comprehension_attempts = models.PositiveSmallIntegerField(default=0)
    completion_code = models.CharField(max_length=40, blank=True)
    qc_status = models.CharField(max_length=8, choices=QC.choices, default=QC.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["round", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["round", "prolific_pid"], condition=~Q(prolific_pid=""), name="annotator_unique_prolific_pid"
            ),
            models.CheckConstraint(condition=_in("status", AnnotatorStatus), name="annotator_status_valid"),
            models.CheckConstraint(condition=_in("qc_status", AnnotatorQC), name="annotator_qc_valid"),
        ]

    def __str__(self) -> str:
        return f"annotator {self.pseudonym[:8]}"


class TrialKind(models.TextChoices):
    REGULAR = "regular"
    ATTENTION = "attention"
    PRACTICE = "practice"


class TrialVariant(models.TextChoices):
    PLAIN = "plain"
    DEGRADED = "degraded"


class Trial(models.Model):
    """One screen shown to one annotator: a prompt and two images, answered on every criterion."""

    Kind = TrialKind
    Variant = TrialVariant
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="trials")
    item = models.ForeignKey(ComparisonItem, null=True, blank=True, on_delete=models.PROTECT, related_name="trials")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REGULAR)
    position = models.PositiveIntegerField(help_text="Order of the trial in the annotator's sequence.")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+")
    left_render = models.ForeignKey(Render, on_delete=models.PROTECT, related_name="+")
    right_render = models.ForeignKey(Render, on_delete=models.PROTECT, related_name="+")
    left_variant = models.CharField(max_length=10, choices=Variant.choices, default=Variant.PLAIN)
    right_variant = models.CharField(max_length=10, choices=Variant.choices, default=Variant.PLAIN)
    # Opaque per-trial image handles, served only to this trial's annotator.
    left_token = models.CharField(max_length=40, unique=True, default=new_token)
    right_token = models.CharField(max_length=40, unique=True, default=new_token)
    # Attention checks: which criterion has a known answer, and the correct side.
    check_criterion = models.CharField(max_length=10, choices=Criterion.choices, blank=True)
    expected_side = models.CharField(max_length=5, choices=[("left", "left"), ("right", "right")], blank=True)
    served_at = models.DateTimeField(auto_now_add=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["annotator", "position"]
        constraints = [
            models.UniqueConstraint(fields=["annotator", "item"], condition=Q(item__isnull=False), name="trial_unique_item"),
            models.UniqueConstraint(fields=["annotator", "position"], name="trial_unique_position"),
            models.CheckConstraint(condition=_in("kind", TrialKind), name="trial_kind_valid"),
            models.CheckConstraint(
                condition=~Q(kind="regular") | Q(item__isnull=False), name="trial_regular_has_item"
            ),
            models.CheckConstraint(
                condition=~Q(left_render=models.F("right_render")) | ~Q(left_variant=models.F("right_variant")),
                name="trial_sides_differ",
            ),
            models.CheckConstraint(
                condition=~Q(kind="attention") | (~Q(expected_side="") & ~Q(check_criterion="")),
                name="trial_attention_has_answer",
            ),
        ]
        indexes = [models.Index(fields=["lease_expires_at"], condition=Q(answered_at__isnull=True), name="trial_open_lease")]

    def __str__(self) -> str:
        return f"trial #{self.pk} ({self.kind})"


class Vote(models.Model):
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="votes")
    criterion = models.CharField(max_length=10, choices=Criterion.choices)
    choice = models.CharField(max_length=5, choices=Choice.choices)
    # Resolved on the server from the stored sides: an objective name, or "tie".
    winner = models.CharField(max_length=8)
    response_ms = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trial", "criterion"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "criterion"], name="vote_unique_per_criterion"),
            models.CheckConstraint(condition=_in("criterion", Criterion), name="vote_criterion_valid"),
            models.CheckConstraint(condition=_in("choice", Choice), name="vote_choice_valid"),
            models.CheckConstraint(
                condition=Q(choice="tie", winner="tie") | (~Q(choice="tie") & ~Q(winner="tie") & ~Q(winner="")),
                name="vote_winner_matches_choice",
            ),
        ]

    def __str__(self) -> str:
        return f"vote {self.criterion}={self.choice}"


class AnnotatorExclusion(models.Model):
    """A researcher's decision to leave one annotator out of the analysis: who, when and why.

    Append-only like the votes (the admin cannot edit or delete it, nor can SQL delete it): the
    annotator's votes stay in the record and in ``votes.csv``; the analysis settings carry the
    exclusion (``staff_exclusions``), so the "declared" results leave them out with the reason,
    and an export recomputes the same numbers from its own files."""

    annotator = models.OneToOneField(Annotator, on_delete=models.PROTECT, related_name="exclusion")
    reason = models.CharField(max_length=500)
    excluded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # The user name at the time, kept if the account is later removed.
    excluded_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="exclusion_reason_not_empty"),
            models.CheckConstraint(condition=~Q(excluded_by_name=""), name="exclusion_by_not_empty"),
        ]

    def __str__(self) -> str:
        return f"exclusion of {self.annotator} by {self.excluded_by_name}"

# Calibration pilots (their own module; imported here so Django registers them).

from studyapp.models_pilot import Pilot, PilotRound  # noqa: E402,F401
