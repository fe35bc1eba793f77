"""Staff pages of the render workflow: launch/cancel/retry, live progress (JSON), gallery, images.

Images reach staff only through :func:`render_image` (a staff check per request); MEDIA_URL is
not served, so nothing here can be fetched by an annotator.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from studyapp import selectors_renders
from studyapp.exceptions import StudyError
from studyapp.models import Render, StudyRound
from studyapp.services import renders as render_services
from studyapp.views.access import staff_required

GALLERY_ROWS_PER_PAGE = 20


def rendering_context(rnd: StudyRound) -> dict:
    """Context of ``research/_rendering.html`` (included in the round page)."""
    from django.conf import settings

    progress = selectors_renders.render_progress(rnd)
    missing = selectors_renders.round_missing_weights(rnd) if progress.total > progress.done else []
    return {
        "progress": progress,
        # Checkpoints this round needs and this machine lacks: with no broker every render here
        # fails; the way out is a duplicate of the round on the toy preset.
        "missing_weights": missing,
        "weights_dir": settings.WEIGHTS_DIR,
        "weights_label": selectors_renders.round_weights_label(rnd),
        "broker": bool(settings.CELERY_BROKER_URL),
        "queue": settings.RENDER_QUEUE,
        "can_launch": rnd.status in (StudyRound.Status.DRAFT, StudyRound.Status.RENDERING),
    }


@never_cache
def progress_json(request, round_id: int):
    """Live progress for the round page's poller: counts and each failure's message. Staff only."""
    if not (request.user.is_active and request.user.is_staff):
        return JsonResponse({"error": "staff login required; reload the page and log in"}, status=403)
    rnd = StudyRound.objects.filter(pk=round_id).first()
    if rnd is None:
        return JsonResponse({"error": f"no round with id {round_id}"}, status=404)
    return JsonResponse(selectors_renders.render_progress(rnd).to_dict())


def _action(request, round_id: int, run) -> object:
    get_object_or_404(StudyRound, pk=round_id)
    try:
        message = run()
    except StudyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, message)
    return redirect("research:round_detail", round_id=round_id)


@staff_required
@require_POST
def launch_view(request, round_id: int):
    return _action(request, round_id, lambda: render_services.renders_launch(round_id=round_id).message)


@staff_required
@require_POST
def retry_failed_view(request, round_id: int):
    return _action(request, round_id, lambda: render_services.renders_retry_failed(round_id=round_id).message)


@staff_required
@require_POST
def cancel_view(request, round_id: int):
    def run():
        n = render_services.renders_cancel(round_id=round_id)
        return f"{n} queued render(s) cancelled; renders already running finish. The round is a draft again."

    return _action(request, round_id, run)


@staff_required
def gallery(request, round_id: int):
    rnd = get_object_or_404(StudyRound.objects.select_related("prompt_set"), pk=round_id)
    objectives, rows = selectors_renders.gallery_rows(rnd)
    page = Paginator(rows, GALLERY_ROWS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "research/gallery.html",
        {
            "round": rnd,
            "objectives": objectives,
            "page": page,
            "progress": selectors_renders.render_progress(rnd, max_failures=0),
            "weights_label": selectors_renders.round_weights_label(rnd),
        },
    )


@staff_required
def render_image(request, render_id: int):
    r = get_object_or_404(Render, pk=render_id)
    if r.status != Render.Status.DONE or not r.image.name:
        raise Http404("this render has no image yet")
    try:
        f = default_storage.open(r.image.name, "rb")
    except (FileNotFoundError, OSError):
        raise Http404("the image file is missing from the storage") from None
    resp = FileResponse(f, content_type="image/png")
    resp["Cache-Control"] = "private, max-age=3600"
    return resp
