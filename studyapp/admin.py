"""Admin: browsing and small fixes. Writes that carry rules go through services.

The record of a study (annotators, trials, votes, items, exclusions) is read-only here: it can be
viewed, never added, edited or deleted (PostgreSQL refuses deletes too, see
studyapp/sql/append_only_0006.sql). Leaving an annotator out of the analysis is the explicit,
logged "Exclude from the analysis" action, which asks for a reason.
"""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from studyapp.exceptions import StudyError
from studyapp.models import (
    Annotator,
    AnnotatorExclusion,
    ComparisonItem,
    Prompt,
    PromptSet,
    Render,
    StudyRound,
    Trial,
    Vote,
)
from studyapp.services.exclusions import annotators_exclude
from studyapp.services.rounds import round_transition


class ReadOnlyAdmin(admin.ModelAdmin):
    """View only: no add, change or delete (and so no "delete selected" action)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
class PromptAdmin(ReadOnlyAdmin):
    # Prompts come from files (import_prompts, the import page); the text an annotator saw is
    # part of the record, so it is not edited by hand either.
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
class ComparisonItemAdmin(ReadOnlyAdmin):
    list_display = ("id", "round", "prompt", "seed", "objective_a", "objective_b", "assigned", "completed", "target_votes")
    list_filter = ("round", "objective_b")


@admin.action(description="Exclude from the analysis (asks for a reason)")
def exclude_from_analysis(modeladmin, request, queryset):
    reason = request.POST.get("reason", "")
    if "apply" in request.POST:
        try:
            created = annotators_exclude(annotator_ids=[a.pk for a in queryset], reason=reason, by=request.user)
        except StudyError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
        else:
            skipped = queryset.count() - len(created)
            note = f" ({skipped} already excluded, left as they were)" if skipped else ""
            modeladmin.message_user(request, f"{len(created)} annotator(s) excluded from the analysis{note}.")
            return None
    return TemplateResponse(
        request,
        "admin/studyapp/annotator/exclude.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Exclude annotators from the analysis",
            "opts": modeladmin.model._meta,
            "annotators": queryset.select_related("round"),
            "reason": reason,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )


@admin.register(Annotator)
class AnnotatorAdmin(ReadOnlyAdmin):
    list_display = ("pseudonym", "round", "status", "qc_status", "excluded", "prolific_pid", "consent_at", "completed_at")
    list_filter = ("round", "status", "qc_status")
    search_fields = ("pseudonym", "prolific_pid")
    actions = [exclude_from_analysis]

    @admin.display(boolean=True, description="excluded")
    def excluded(self, obj):
        return hasattr(obj, "exclusion")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("round", "exclusion")

    def has_change_permission(self, request, obj=None):
        # Django runs actions only for users with some permission on the model; the exclusion
        # action is guarded by the "change" permission, but no field can be edited.
        return obj is None and request.user.has_perm("studyapp.change_annotator")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.has_perm("studyapp.change_annotator"):
            actions.pop("exclude_from_analysis", None)
        return actions


@admin.register(AnnotatorExclusion)
class AnnotatorExclusionAdmin(ReadOnlyAdmin):
    list_display = ("annotator", "reason", "excluded_by_name", "created_at")
    list_filter = ("annotator__round",)
    search_fields = ("annotator__pseudonym", "reason", "excluded_by_name")


@admin.register(Trial)
class TrialAdmin(ReadOnlyAdmin):
    list_display = ("id", "annotator", "kind", "position", "item", "served_at", "answered_at")
    list_filter = ("kind",)


@admin.register(Vote)
class VoteAdmin(ReadOnlyAdmin):
    list_display = ("id", "trial", "criterion", "choice", "winner", "response_ms", "created_at")
    list_filter = ("criterion", "choice")
