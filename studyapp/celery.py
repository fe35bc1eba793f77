"""The Celery app. Render tasks live in ``studyapp.tasks`` (Celery's Django convention: each app's
``tasks.py``, found by ``autodiscover_tasks``) and go to the ``render`` queue.

The render task keeps its registered name ``generation.tasks.render_chunk`` (from before the
adapter moved out of the framework-free core), so messages already queued under that name, and
``CELERY_TASK_ROUTES``'s ``generation.tasks.*`` pattern, keep working.

Start GPU workers with one process per GPU::

    CUDA_VISIBLE_DEVICES=0 celery -A studyapp worker -Q render --concurrency 1 --prefetch-multiplier 1
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")

app = Celery("studyapp", include=["studyapp.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
