"""A run's alert deliveries, as the run page and the API's run detail show them."""

from __future__ import annotations

from typing import Any

from flowplatform.alerts.models import AlertDelivery


def run_alerts(run: Any) -> list[dict[str, Any]]:
    deliveries = AlertDelivery.objects.filter(run_id=run.pk).order_by("created_at", "id")
    return [
        {
            "event": d.event,
            "target": d.target,
            "status": d.status,
            "attempts": d.attempts,
            "error": d.error,
            "created_at": d.created_at,
            "sent_at": d.sent_at,
        }
        for d in deliveries
    ]
