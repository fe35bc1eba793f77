"""Researcher pages (staff only). Thin: validate input, call one service or selector, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from studyapp import selectors
from studyapp.exceptions import StudyError
from studyapp.forms import PromptSetImportForm, RoundForm
from studyapp.models import PromptSet, StudyRound
from studyapp.services import prompts as prompt_services
from studyapp.services import rounds as round_services
from studyapp.views import results as results_views
from studyapp.views import rendering as rendering_views

# Buttons shown per status: (target status, label).
ACTIONS = {
    StudyRound.Status.DRAFT: [("ready", "Mark ready (images imported)")],
    StudyRound.Status.RENDERING: [("draft", "Back to draft")],
    StudyRound.Status.READY: [("open", "Open for annotators")],
    StudyRound.Status.OPEN: [("closed", "Close round")],
    StudyRound.Status.CLOSED: [],
}


@staff_member_required
def round_list(request):
    rounds = selectors.round_list()
    return render(request, "research/round_list.html", {"rounds": rounds})


@staff_member_required
def round_new(request):
    form = RoundForm(request.POST or None)
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            rnd = round_services.round_create(config=form.to_config(), created_by=request.user)
        except StudyError as exc:
            problems = getattr(exc, "problems", [exc.message])
        else:
            messages.success(request, f"Round #{rnd.pk} created.")
            return redirect("research:round_detail", round_id=rnd.pk)
    return render(request, "research/round_new.html", {"form": form, "problems": problems})


@staff_member_required
def round_detail(request, round_id: int):
    rnd = get_object_or_404(StudyRound.objects.select_related("prompt_set"), pk=round_id)
    return render(
        request,
        "research/round_detail.html",
        {
            "round": rnd,
            "counts": selectors.round_counts(rnd),
            "annotator_url": selectors.annotator_url(rnd, request.build_absolute_uri("/").rstrip("/")),
            "prolific_url": selectors.prolific_url(rnd, request.build_absolute_uri("/").rstrip("/")),
            "actions": ACTIONS[rnd.status],
            "config": rnd.config,
            "results": results_views.results_context(rnd),
            "rendering": rendering_views.rendering_context(rnd),
        },
    )


@staff_member_required
@require_POST
def round_transition_view(request, round_id: int):
    get_object_or_404(StudyRound, pk=round_id)
    try:
        rnd = round_services.round_transition(round_id=round_id, to=request.POST.get("to", ""))
    except StudyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Round is now {rnd.status}.")
    return redirect("research:round_detail", round_id=round_id)


@staff_member_required
def prompt_set_list(request):
    sets = PromptSet.objects.all()
    return render(request, "research/prompt_sets.html", {"prompt_sets": sets})


@staff_member_required
def prompt_set_import_view(request):
    form = PromptSetImportForm(request.POST or None, request.FILES or None)
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            ps = prompt_services.prompt_set_import(
                name=form.cleaned_data["name"],
                data=prompt_services.read_capped(upload, what=upload.name),
                filename=upload.name,
                title=form.cleaned_data["title"],
                source=form.cleaned_data["source"],
            )
        except StudyError as exc:
            problems = getattr(exc, "problems", [exc.message])
        else:
            messages.success(request, f"Imported {ps.prompts.count()} prompts into {ps.name}.")
            return redirect("research:prompt_set_list")
    status = 400 if request.method == "POST" else 200  # a POST that gets here was refused
    return render(request, "research/prompt_set_import.html", {"form": form, "problems": problems}, status=status)
