from django.urls import path

from studyapp.views import pilot as pilot_views
from studyapp.views import rendering, research
from studyapp.views import results as results_views

app_name = "research"

urlpatterns = [
    path("", research.round_list, name="round_list"),
    path("rounds/new/", research.round_new, name="round_new"),
    path("rounds/estimate.json", research.round_estimate_json, name="round_estimate"),
    path("rounds/<int:round_id>/", research.round_detail, name="round_detail"),
    path("rounds/<int:round_id>/transition/", research.round_transition_view, name="round_transition"),
    path("rounds/<int:round_id>/close/", research.round_close, name="round_close"),
    path("rounds/<int:round_id>/delete/", research.round_delete, name="round_delete"),
    path("rounds/<int:round_id>/export/round-export.zip", results_views.export_zip, name="round_export_zip"),
    path("rounds/<int:round_id>/export/<str:name>", results_views.export_file, name="round_export_file"),
    path("rounds/<int:round_id>/rendering.json", rendering.progress_json, name="render_progress"),
    path("rounds/<int:round_id>/renders/launch/", rendering.launch_view, name="render_launch"),
    path("rounds/<int:round_id>/renders/retry-failed/", rendering.retry_failed_view, name="render_retry_failed"),
    path("rounds/<int:round_id>/renders/cancel/", rendering.cancel_view, name="render_cancel"),
    path("rounds/<int:round_id>/gallery/", rendering.gallery, name="round_gallery"),
    path("renders/<int:render_id>/image.png", rendering.render_image, name="render_image"),
    path("prompt-sets/", research.prompt_set_list, name="prompt_set_list"),
    path("prompt-sets/import/", research.prompt_set_import_view, name="prompt_set_import"),
    path("prompt-sets/<slug:name>/", research.prompt_set_detail, name="prompt_set_detail"),
    # Calibration pilots.
    path("pilots/", pilot_views.pilot_list, name="pilot_list"),
    path("pilots/<int:pilot_id>/", pilot_views.pilot_detail, name="pilot_detail"),
    path("pilots/<int:pilot_id>/launch/", pilot_views.pilot_launch_view, name="pilot_launch"),
    path("pilots/<int:pilot_id>/round-config.json", pilot_views.pilot_round_config_view, name="pilot_round_config"),
]
