"""The Celery tasks beat sends: fire a schedule, and start intervals waiting for a slot."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.utils import timezone

from flowplatform import metrics
from scheduling.firing import drain_waiting, fire_schedule

logger = logging.getLogger("flowplatform.scheduling")


@shared_task(name="scheduling.fire", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def fire(schedule_id: int, due: str | None = None) -> int:
    """Create the run of the interval due now (``due``: the fire time beat meant, ISO 8601).

    Idempotent: a redelivered or duplicated message finds its interval recorded and does nothing.
    Returns the number of runs started.
    """
    due_at = None
    if due:
        try:
            due_at = datetime.fromisoformat(due)
        except ValueError:
            logger.warning("schedule %s: ignoring unreadable due time %r", schedule_id, due)
    if due_at is not None and due_at.tzinfo is None:
        due_at = None  # beat always sends aware times; a naive one is not ours to guess
    if due_at is not None:
        metrics.schedule_fired((timezone.now() - due_at).total_seconds())
    return len(fire_schedule(int(schedule_id), due_at).started)


@shared_task(name="scheduling.drain", acks_late=True, ignore_result=True)
def drain() -> int:
    """Start intervals that wait behind earlier runs (overlap 'queue', backfills) when slots free."""
    return len(drain_waiting().started)


@shared_task(name="scheduling.poll_files", ignore_result=True)
def poll_files() -> int:
    """Poll the file-arrival triggers that are due (beat, every FLOWPLATFORM_FILE_POLL_S)."""
    from scheduling.triggers.files import poll_due

    return poll_due()
