"""Researcher pages (staff only). Thin: validate input, call one service or selector, render."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from studyapp import selectors, selectors_renders
from studyapp.exceptions import StudyError
from studyapp.forms import (
    DEFAULT_DESIGN_EFFECT,
    DEFAULT_EXPECTED_PREFERENCE,
    DEFAULT_TIE_RATE,
    PromptSearchForm,
    PromptSetImportForm,
    RoundForm,
)
from studyapp.models import PromptSet, StudyRound
from studyapp.services import prompts as prompt_services
from studyapp.services import rounds as round_services
from studyapp.views import rendering as rendering_views
from studyapp.views import results as results_views
from studyapp.views.access import staff_required


# Buttons shown per status: (target status, label). Closing goes through a confirmation page.
ACTIONS = {
    StudyRound.Status.DRAFT: [("ready", "Mark ready (images imported)")],
    StudyRound.Status.RENDERING: [("draft", "Back to draft")],
    StudyRound.Status.READY: [("open", "Open for annotators")],
    StudyRound.Status.OPEN: [],
    StudyRound.Status.CLOSED: [],
}
PROMPTS_PER_PAGE = 50


@staff_required
def round_list(request):
    rounds = selectors.round_list()
    return render(request, "research/round_list.html", {"rounds": rounds})


def _default_preset() -> str:
    """The paper's models where their checkpoints are here; else the toy world, which renders."""
    return "toy" if selectors_renders.preset_missing_weights("paper") else "paper"


@staff_required
def round_new(request):
    initial = {"preset": _default_preset()}
    source = None
    copy_of = request.GET.get("from", "")
    if request.method != "POST" and copy_of.isascii() and copy_of.isdigit() and len(copy_of) < 10:
        source = StudyRound.objects.filter(pk=int(copy_of)).first()
        if source is not None:
            initial = RoundForm.initial_from_config(source.config, name=f"Copy of {source.name}"[:200])
    if request.method != "POST" and source is None and "prompt_set" in request.GET:
        initial["prompt_set"] = request.GET["prompt_set"][:80]  # "New round with this set"; the form validates it
    form = RoundForm(request.POST or None, initial=initial)
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            rnd = round_services.round_create(config=form.to_config(), created_by=request.user)
        except StudyError as exc:
            problems = getattr(exc, "problems", [exc.message])
        else:
            messages.success(request, f"Round #{rnd.pk} created.")
            return redirect("research:round_detail", round_id=rnd.pk)
    return render(request, "research/round_new.html", {
        "form": form, "problems": problems, "source": source, "preset_rows": list(zip(form["preset"], selectors_renders.generation_presets())),
        "weights_dir": settings.WEIGHTS_DIR,
    })


def _estimate_args(data) -> tuple[dict, list[str]]:
    """The estimate's inputs from the form's fields as typed; the names of those still missing."""
    form = RoundForm(data, check_config=False)
    form.is_valid()  # parse what parses; the estimate needs only some of the fields
    d = form.cleaned_data
    needed = {"prompt_set": "prompt set", "objectives": "objectives", "seeds_per_prompt": "seeds per prompt",
              "comparisons": "comparisons", "votes_per_item": "votes per item",
              "trials_per_annotator": "trials per annotator", "attention_check_rate": "attention-check rate"}
    missing = [label for field, label in needed.items() if d.get(field) in (None, "", [])]
    planning = {"expected_preference": "expected preference", "expected_tie_rate": "expected tie rate",
                "design_effect": "design effect"}
    missing += [f"a valid {label} ({form.errors[field][0]})" for field, label in planning.items() if field in form.errors]
    if missing:
        return {}, missing
    return {
        "prompt_set": d["prompt_set"], "prompt_limit": d.get("prompt_limit"), "objectives": list(d["objectives"]),
        "seeds_per_prompt": d["seeds_per_prompt"], "comparisons": d["comparisons"],
        "votes_per_item": d["votes_per_item"], "trials_per_annotator": d["trials_per_annotator"],
        "attention_check_rate": d["attention_check_rate"], "preset": d.get("preset") or "paper",
        "expected_preference": d.get("expected_preference") or DEFAULT_EXPECTED_PREFERENCE,
        "tie_rate": DEFAULT_TIE_RATE if d.get("expected_tie_rate") is None else d["expected_tie_rate"],
        "design_effect": d.get("design_effect") or DEFAULT_DESIGN_EFFECT,
        "looks": d.get("monitoring_looks") or 1,
    }, []


@never_cache
def round_estimate_json(request):
    """The new-round form's live estimate (static/js/round_form.js). Staff only."""
    if not (request.user.is_active and request.user.is_staff):
        return JsonResponse({"error": "staff login required; reload the page and log in"}, status=403)
    args, missing = _estimate_args(request.GET)
    if missing:
        return JsonResponse({"ok": False, "missing": missing})
    est = selectors.round_estimate(**args)
    return JsonResponse({"ok": True, **est.to_dict(), "missing_weights": selectors_renders.preset_missing_weights(args["preset"])})


@staff_required
def round_detail(request, round_id: int):
    rnd = get_object_or_404(StudyRound.objects.select_related("prompt_set"), pk=round_id)
    base = request.build_absolute_uri("/").rstrip("/")
    return render(
        request,
        "research/round_detail.html",
        {
            "round": rnd,
            "counts": selectors.round_counts(rnd),
            "annotator_url": selectors.annotator_url(rnd, base),
            "prolific_url": selectors.prolific_url(rnd, base),
            "actions": ACTIONS[rnd.status],
            "config_json": selectors.round_config_json(rnd),
            "can_delete": not round_services.round_delete_problem(rnd),
            "results": results_views.results_context(rnd),
            "rendering": rendering_views.rendering_context(rnd),
        },
    )


@staff_required
@require_POST
def round_transition_view(request, round_id: int):
    get_object_or_404(StudyRound, pk=round_id)
    to = request.POST.get("to", "")
    if to == StudyRound.Status.CLOSED and request.POST.get("confirm") != "yes":
        return redirect("research:round_close", round_id=round_id)  # closing is final: ask first
    try:
        rnd = round_services.round_transition(round_id=round_id, to=to)
    except StudyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Round is now {rnd.status}.")
    return redirect("research:round_detail", round_id=round_id)


@staff_required
def round_close(request, round_id: int):
    """The confirmation page of Close round (the close itself is a POST to the transition view)."""
    rnd = get_object_or_404(StudyRound, pk=round_id)
    return render(request, "research/round_close.html", {"round": rnd, "counts": selectors.round_counts(rnd)})


@staff_required
def round_delete(request, round_id: int):
    rnd = get_object_or_404(StudyRound.objects.select_related("prompt_set"), pk=round_id)
    if request.method == "POST":
        try:
            name = round_services.round_delete(round_id=round_id)
        except StudyError as exc:
            messages.error(request, exc.message)
            return redirect("research:round_detail", round_id=round_id)
        messages.success(request, f"Round #{round_id} ({name}) was deleted, with its renders and images.")
        return redirect("research:round_list")
    return render(request, "research/round_delete.html", {
        "round": rnd, "counts": selectors.round_counts(rnd), "problem": round_services.round_delete_problem(rnd),
    })


@staff_required
def prompt_set_list(request):
    return render(request, "research/prompt_sets.html", {"prompt_sets": selectors.prompt_set_list()})


@staff_required
def prompt_set_detail(request, name: str):
    ps = get_object_or_404(PromptSet, name=name)
    form = PromptSearchForm(request.GET or None)
    q, category = "", None
    if form.is_valid():
        q = form.cleaned_data["q"].strip()
        category = form.cleaned_data["category"] if "category" in request.GET else None
    prompts = selectors.prompt_set_prompts(ps, q=q, category=category)
    page = Paginator(prompts, PROMPTS_PER_PAGE).get_page(request.GET.get("page"))
    keep = request.GET.copy()
    keep.pop("page", None)
    return render(request, "research/prompt_set_detail.html", {
        "prompt_set": ps, "form": form, "page": page, "q": q, "category": category,
        "categories": selectors.prompt_set_categories(ps), "total": ps.prompts.count(),
        "query": keep.urlencode(), "new_round_url": reverse("research:round_new"),
    })


@staff_required
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
