# Celery's Django recipe: the app is created here so @shared_task binds to it. Importing it
# reads no settings, so non-Django entry points (python -m studyapp.stats) stay light.
from studyapp.celery import app as celery_app

__all__ = ("celery_app",)
