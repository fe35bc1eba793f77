from django.urls import path

from studyapp.views import annotate

app_name = "annotate"

urlpatterns = [
    path("<str:token>/", annotate.start, name="start"),
]
