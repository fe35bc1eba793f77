"""Annotator URLs. Everything hangs off the round's opaque token; nothing names a render."""

from django.urls import path

from studyapp.views import annotate

app_name = "annotate"

urlpatterns = [
    path("<str:token>/", annotate.start, name="start"),
    path("<str:token>/consent/", annotate.consent, name="consent"),
    path("<str:token>/instructions/", annotate.instructions, name="instructions"),
    path("<str:token>/check/", annotate.check, name="check"),
    path("<str:token>/trial/", annotate.trial, name="trial"),
    path("<str:token>/done/", annotate.done, name="done"),
    path("<str:token>/api/next", annotate.api_next, name="api_next"),
    path("<str:token>/api/answer", annotate.api_answer, name="api_answer"),
    path("<str:token>/api/undo", annotate.api_undo, name="api_undo"),
    path("<str:token>/img/<str:image_token>", annotate.image, name="image"),
]
