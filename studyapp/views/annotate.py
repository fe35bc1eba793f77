"""Annotator pages (no account). Placeholder entry until the annotator flow lands."""

from django.http import Http404
from django.shortcuts import render

from studyapp.models import StudyRound


def start(request, token: str):
    rnd = StudyRound.objects.filter(token=token).first()
    if rnd is None:
        raise Http404("This study link is not valid.")
    return render(request, "annotate/message.html", {"title": "Study", "message": "This study is not open yet."})
