"""The Celery app. Render tasks live in ``generation.tasks`` and go to the ``render`` queue.

Start GPU workers with one process per GPU::

    CUDA_VISIBLE_DEVICES=0 celery -A studyapp worker -Q render --concurrency 1 --prefetch-multiplier 1
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")

app = Celery("studyapp", include=["generation.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
