"""``late``: a scheduled interval whose run has not succeeded ``late_after`` after it ended.

Checked by beat (``alerts.check_late``, every ``FLOWPLATFORM_ALERT_LATE_CHECK_S``). An interval
counts when its schedule recorded it (``ScheduledRun``) and it was not skipped by the overlap
policy; it is late while no run of the flow for that interval has succeeded (a rerun that
succeeds in time counts). Intervals whose deadline passed more than
``FLOWPLATFORM_ALERT_LATE_LOOKBACK_S`` ago are not looked at, so turning alerts on does not
report the whole history. The key is the interval's, so each is reported once per target.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from flowplatform.alerts import notify
from flowplatform.alerts.models import AlertEvent, FlowAlert
from flows.models import FlowRun, RunStatus
from scheduling.durations import format_every
from scheduling.models import ScheduledRun, ScheduledRunState


def record_late(now: datetime) -> int:
    """Record the ``late`` deliveries due at ``now``; how many are new."""
    lookback = timedelta(seconds=settings.FLOWPLATFORM_ALERT_LATE_LOOKBACK_S)
    created = 0
    alerts = FlowAlert.objects.filter(late_after_s__isnull=False).select_related("flow")
    for alert in alerts:
        deadline = now - timedelta(seconds=alert.late_after_s or 0)
        succeeded = FlowRun.objects.filter(
            flow_id=alert.flow_id,
            interval_start=OuterRef("interval_start"),
            status=RunStatus.SUCCEEDED,
        )
        intervals = (
            ScheduledRun.objects.filter(
                schedule__flow_id=alert.flow_id,
                interval_end__lte=deadline,
                interval_end__gt=deadline - lookback,
            )
            .exclude(state=ScheduledRunState.SKIPPED)
            .filter(~Exists(succeeded))
            .select_related("run", "run__flow")
        )
        for interval in intervals:
            with transaction.atomic():
                created += len(_record(alert, interval))
    return created


def _record(alert: FlowAlert, interval: ScheduledRun) -> list[object]:
    key = f"late:{interval.schedule_id}:{interval.interval_start.isoformat()}"
    body = notify.payload(
        interval.run,
        AlertEvent.LATE,
        flow=alert.flow,
        interval=(interval.interval_start, interval.interval_end),
    )
    body["late_after"] = format_every(alert.late_after_s or 0)
    body["text"] = notify.text(body)
    return list(
        notify.record(alert.flow, AlertEvent.LATE, key, body, interval.run, alert.targets())
    )
