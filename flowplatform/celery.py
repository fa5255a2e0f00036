"""The Celery app. Configured from Django settings (``CELERY_*``); JSON only, never pickle."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")

app = Celery("flowplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task: Any = None, **_kwargs: Any) -> None:
    """Between tasks, treat database connections as Django does between requests: keep them
    (``CONN_MAX_AGE``), but close those past their age or left unusable by an error."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
