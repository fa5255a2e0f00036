"""The alert tasks: find a run's alerts, send a delivery (with backoff), look for late runs."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from flowplatform.alerts import late, notify
from flowplatform.alerts.models import AlertDelivery, DeliveryStatus
from flowplatform.alerts.send import SendError, send
from flows.models import FlowRun
from flows.transitions import clip_error

logger = logging.getLogger("flowplatform.alerts")


@shared_task(name="alerts.notify_run", acks_late=True)
def notify_run(run_id: str) -> int:
    """Record (and queue) the deliveries of a finished run's events; how many are new."""
    run = FlowRun.objects.select_related("flow").filter(pk=run_id).first()
    if run is None or not run.is_finished:
        return 0
    with transaction.atomic():
        return len(notify.deliveries_for_run(run))


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: the backoff doubles, capped at an hour."""
    return float(min(settings.FLOWPLATFORM_ALERT_RETRY_BACKOFF_S * 2 ** (attempt - 1), 3600))


@shared_task(bind=True, name="alerts.deliver", acks_late=True, max_retries=None)
def deliver(self: Any, delivery_id: int) -> str:
    """Send one delivery; retried with backoff until sent or out of attempts."""
    with transaction.atomic():
        delivery = AlertDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return delivery.status if delivery else "gone"
        AlertDelivery.objects.filter(pk=delivery_id).update(attempts=F("attempts") + 1)
        attempt = delivery.attempts + 1
        try:
            send(delivery.target, delivery.payload, f"alert-{delivery.pk}")
        except SendError as exc:
            out_of_attempts = attempt >= settings.FLOWPLATFORM_ALERT_MAX_ATTEMPTS
            final = exc.permanent or out_of_attempts
            AlertDelivery.objects.filter(pk=delivery_id).update(
                error=clip_error(str(exc)),
                status=DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
            )
            logger.warning(
                "alert %s (%s -> %s) attempt %s failed: %s",
                delivery.pk, delivery.event, delivery.target, attempt, exc,
            )  # fmt: skip
            if final:
                return DeliveryStatus.FAILED
        else:
            AlertDelivery.objects.filter(pk=delivery_id).update(
                status=DeliveryStatus.SENT, sent_at=timezone.now(), error=""
            )
            return DeliveryStatus.SENT
    raise self.retry(countdown=retry_delay(attempt), throw=False)


@shared_task(name="alerts.check_late")
def check_late(now: datetime | None = None) -> int:
    """Periodic (beat): record ``late`` alerts of scheduled intervals past their flow's
    ``late_after``, and re-queue deliveries left pending (a broker that was down)."""
    now = now or timezone.now()
    created = late.record_late(now)
    stuck = AlertDelivery.objects.filter(
        status=DeliveryStatus.PENDING, attempts=0, created_at__lt=now - timedelta(minutes=5)
    ).values_list("pk", flat=True)
    notify.send_on_commit(list(stuck))
    return created
