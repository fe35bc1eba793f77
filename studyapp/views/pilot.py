"""Staff pages of calibration pilots: the grid (prompts x scales per objective), launch, and the
new round's config with the suggested scales (one click: a JSON download for the new-round form
or ``manage.py create_round``)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from studyapp.exceptions import StudyError
from studyapp.models_pilot import Pilot
from studyapp.selectors_pilot import pilot_view
from studyapp.services import pilot as pilot_services
from studyapp.views.access import staff_required


@staff_required
def pilot_list(request):
    return render(request, "research/pilot_list.html", {"pilots": Pilot.objects.select_related("prompt_set")})


@staff_required
def pilot_detail(request, pilot_id: int):
    view = pilot_view(get_object_or_404(Pilot.objects.select_related("prompt_set"), pk=pilot_id))
    config = None
    if view.suggestion is not None:
        config = json.dumps(pilot_services.pilot_round_config(pilot=view.pilot, generation=view.suggestion), indent=2)
    return render(request, "research/pilot_detail.html", {"v": view, "config_json": config})


@staff_required
@require_POST
def pilot_launch_view(request, pilot_id: int):
    get_object_or_404(Pilot, pk=pilot_id)
    try:
        results = pilot_services.pilot_launch(pilot_id=pilot_id)
    except StudyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{sum(r.enqueued for r in results)} render(s) queued in {len(results)} round(s)")
    return redirect("research:pilot_detail", pilot_id=pilot_id)


@staff_required
def pilot_round_config_view(request, pilot_id: int):
    view = pilot_view(get_object_or_404(Pilot.objects.select_related("prompt_set"), pk=pilot_id))
    if view.suggestion is None:
        messages.error(request, f"the pilot has {view.done} of {view.total} images; the config exists once all are rendered")
        return redirect("research:pilot_detail", pilot_id=pilot_id)
    config = pilot_services.pilot_round_config(pilot=view.pilot, generation=view.suggestion)
    resp = HttpResponse(json.dumps(config, indent=2) + "\n", content_type="application/json")
    resp["Content-Disposition"] = f'attachment; filename="round-config-pilot-{pilot_id}.json"'
    return resp
