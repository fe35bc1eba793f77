"""Admin: browsing and small fixes. Writes that carry rules go through services."""

from django.contrib import admin, messages

from studyapp.exceptions import StudyError
from studyapp.models import Annotator, ComparisonItem, Prompt, PromptSet, Render, StudyRound, Trial, Vote
from studyapp.services.rounds import round_transition


class PromptInline(admin.TabularInline):
    model = Prompt
    extra = 0
    fields = ("position", "text", "category", "external_id")
    readonly_fields = fields
    can_delete = False
    show_change_link = False


@admin.register(PromptSet)
class PromptSetAdmin(admin.ModelAdmin):
    list_display = ("name", "title", "builtin", "created_at")
    search_fields = ("name", "title")
    inlines = [PromptInline]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("text", "category", "prompt_set", "position")
    list_filter = ("prompt_set", "category")
    search_fields = ("text", "external_id")


def _transition_action(to: str):
    def action(modeladmin, request, queryset):
        for rnd in queryset:
            try:
                round_transition(round_id=rnd.pk, to=to)
            except StudyError as exc:
                modeladmin.message_user(request, exc.message, messages.ERROR)
            else:
                modeladmin.message_user(request, f"round #{rnd.pk} is now {to}")

    action.__name__ = f"make_{to}"
    action.short_description = f"Move selected rounds to {to}"
    return action


@admin.register(StudyRound)
class StudyRoundAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "prompt_set", "created_at", "opened_at", "closed_at")
    list_filter = ("status",)
    search_fields = ("name",)
    readonly_fields = ("status", "config", "spec_hash", "token", "analysis_settings", "opened_at", "closed_at", "created_at")
    actions = [_transition_action("open"), _transition_action("closed")]


@admin.register(Render)
class RenderAdmin(admin.ModelAdmin):
    list_display = ("id", "round", "prompt", "seed", "objective", "status", "itc_score", "itm_score", "cap_score")
    list_filter = ("round", "objective", "status")
    readonly_fields = [f.name for f in Render._meta.fields]


@admin.register(ComparisonItem)
class ComparisonItemAdmin(admin.ModelAdmin):
    list_display = ("id", "round", "prompt", "seed", "objective_a", "objective_b", "assigned", "completed", "target_votes")
    list_filter = ("round", "objective_b")
    readonly_fields = [f.name for f in ComparisonItem._meta.fields]


@admin.register(Annotator)
class AnnotatorAdmin(admin.ModelAdmin):
    list_display = ("pseudonym", "round", "status", "qc_status", "prolific_pid", "consent_at", "completed_at")
    list_filter = ("round", "status", "qc_status")
    search_fields = ("pseudonym", "prolific_pid")


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ("id", "annotator", "kind", "position", "item", "served_at", "answered_at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in Trial._meta.fields]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ("id", "trial", "criterion", "choice", "winner", "response_ms", "created_at")
    list_filter = ("criterion", "choice")
    readonly_fields = [f.name for f in Vote._meta.fields]

    def has_add_permission(self, request):
        return False  # votes come from annotators only
