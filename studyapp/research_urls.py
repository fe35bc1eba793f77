from django.urls import path

from studyapp.views import research
from studyapp.views import results as results_views

app_name = "research"

urlpatterns = [
    path("", research.round_list, name="round_list"),
    path("rounds/new/", research.round_new, name="round_new"),
    path("rounds/<int:round_id>/", research.round_detail, name="round_detail"),
    path("rounds/<int:round_id>/transition/", research.round_transition_view, name="round_transition"),
    path("rounds/<int:round_id>/export/round-export.zip", results_views.export_zip, name="round_export_zip"),
    path("rounds/<int:round_id>/export/<str:name>", results_views.export_file, name="round_export_file"),
    path("prompt-sets/", research.prompt_set_list, name="prompt_set_list"),
    path("prompt-sets/import/", research.prompt_set_import_view, name="prompt_set_import"),
]
