"""The Celery app. Configured from Django settings (``CELERY_*``); JSON only, never pickle."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")

app = Celery("flowplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
