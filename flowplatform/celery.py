"""The Celery app. Configured from Django settings (``CELERY_*``); JSON only, never pickle."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_process_init,
)

from flowplatform.env import refuse_to_start_on_settings_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")

#: Allocations between collections of the youngest generation in pool processes (default 700).
GC_THRESHOLD = 50_000

app = Celery("flowplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _load_settings(**_kwargs: Any) -> None:
    """Load the Django settings before Celery reads them: a worker or beat started with
    settings it cannot use stops with one line, as ``manage.py`` does."""
    from django.conf import settings

    with refuse_to_start_on_settings_error():
        settings.INSTALLED_APPS  # noqa: B018 - the first access imports the settings module


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task: Any = None, **_kwargs: Any) -> None:
    """Between tasks, treat database connections as Django does between requests: keep them
    (``CONN_MAX_AGE``), but close those past their age or left unusable by an error."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, **_kwargs: Any) -> None:
    """The worker replaces the handlers of ``LOGGING``: give its own the redacting filter, so
    that no log line shows a secret of a node run in progress (``nodes.redaction``)."""
    from nodes.redaction import RedactingFilter

    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


@worker_process_init.connect
def _tune_garbage_collector(**_kwargs: Any) -> None:
    """Set up each pool process for streaming many short-lived rows (decision 0010).

    What was loaded at start-up (Django, the apps, the node types) lives as long as the process:
    frozen, the collector stops walking it again and again. Batches of rows are thousands of
    new tuples at a time: a larger first generation collects them once per batch or so instead
    of several times per batch, and no reference cycles among them are kept any longer.
    """
    from django.conf import settings

    if settings.FLOWPLATFORM_GC_DEFAULTS:
        return
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
