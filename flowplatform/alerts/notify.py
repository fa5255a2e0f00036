"""From a finished run (or a late interval) to pending deliveries, each sent by a task.

1. ``on_run_finished`` (the ``run_finished`` signal) queues ``alerts.notify_run`` once the
   run's final state is committed; a broker that is down is logged, never raised into the run;
2. ``deliveries_for_run`` finds the run's events (``failed``; ``succeeded``, plus
   ``recovered`` when the flow's previous finished run had failed) and records one
   ``AlertDelivery`` per event and target of the flow's alerts. The unique ``(key, target)``
   makes a second notice of the same event a no-op;
3. each new delivery is sent by ``alerts.deliver`` (``flowplatform.alerts.tasks``), retried
   with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse

from flowplatform.alerts.models import AlertDelivery, AlertEvent, FlowAlert
from flows import hooks
from flows.hooks import Concerns
from flows.models import Flow, FlowRun, RunStatus

logger = logging.getLogger("flowplatform.alerts")


def on_run_finished(
    sender: Any, run_id: str, status: str, concerns: Concerns | None = None, **kwargs: Any
) -> None:
    if status == RunStatus.CANCELLED or not hooks.concerned(concerns, "alerts"):
        return
    known = concerns is not None and "alerts" in concerns  # (answered yes: the flow has alerts)
    transaction.on_commit(lambda: _queue_notify(run_id, known=known))


def concerned(_vendor: str) -> tuple[str, dict[str, Any]]:
    """Whether the flow of the run ``%(run)s`` has alerts (a ``flows.hooks`` concern, asked by
    the statement that ends the run: the end of a run of a flow without alerts costs no
    query)."""
    sql = (
        "EXISTS (SELECT 1 FROM {alert} AS a JOIN {run} AS r ON r.flow_id = a.flow_id"
        " WHERE r.id = %(run)s)"
    )
    quote = connection.ops.quote_name
    return sql.format(alert=quote(FlowAlert._meta.db_table), run=quote(FlowRun._meta.db_table)), {}


def _queue_notify(run_id: str, *, known: bool = False) -> None:
    """Queue ``alerts.notify_run`` when the run's flow has alerts (``known``: the statement
    that ended the run answered so already, no query of its own)."""
    from flowplatform.alerts.tasks import notify_run

    if not known and not FlowAlert.objects.filter(flow__runs=run_id).exists():
        return
    try:
        notify_run.delay(str(run_id))
    except Exception as exc:  # noqa: BLE001 - the broker is down: the run is done regardless
        logger.error("run %s: alerts not queued: %s", run_id, exc)


def run_events(run: FlowRun) -> list[str]:
    """The events a finished run raises."""
    if run.status == RunStatus.FAILED:
        return [AlertEvent.FAILED]
    if run.status != RunStatus.SUCCEEDED:
        return []
    previous = (
        FlowRun.objects.filter(
            flow_id=run.flow_id,
            status__in=(RunStatus.SUCCEEDED, RunStatus.FAILED),
            finished_at__lte=run.finished_at,
        )
        .exclude(pk=run.pk)
        .order_by("-finished_at", "-created_at")
        .values_list("status", flat=True)
        .first()
    )
    recovered = [AlertEvent.RECOVERED] if previous == RunStatus.FAILED else []
    return [AlertEvent.SUCCEEDED, *recovered]


def deliveries_for_run(run: FlowRun) -> list[AlertDelivery]:
    """Record the deliveries of a finished run's events; returns the new ones."""
    created: list[AlertDelivery] = []
    for event in run_events(run):
        created += record(run.flow, event, f"run:{run.pk}:{event}", payload(run, event), run)
    return created


def record(
    flow: Flow,
    event: str,
    key: str,
    body: dict[str, Any],
    run: FlowRun | None,
    to: list[str] | None = None,
) -> list[AlertDelivery]:
    """One delivery per target (``to``, default: those of ``flow``'s alerts on ``event``);
    returns the new ones, each sent once this transaction commits."""
    created = []
    for target in targets(flow, event) if to is None else to:
        delivery, new = AlertDelivery.objects.get_or_create(
            key=key,
            target=target,
            defaults={"flow": flow, "run": run, "event": event, "payload": body},
        )
        if new:
            created.append(delivery)
    send_on_commit(d.pk for d in created)
    return created


def targets(flow: Flow, event: str) -> list[str]:
    alerts = FlowAlert.objects.filter(flow=flow)
    found = [t for alert in alerts if event in alert.events for t in alert.targets()]
    return list(dict.fromkeys(found))


def send_on_commit(delivery_ids: Iterable[int]) -> None:
    from flowplatform.alerts.tasks import deliver

    for delivery_id in delivery_ids:
        transaction.on_commit(lambda pk=delivery_id: _queue(deliver, pk))


def _queue(task: Any, delivery_id: int) -> None:
    try:
        task.delay(delivery_id)
    except Exception as exc:  # noqa: BLE001 - left pending; ``alerts.check_late`` re-queues
        logger.error("alert delivery %s not queued: %s", delivery_id, exc)


def run_url(run_id: Any) -> str | None:
    """The run's page in the admin, when ``FLOWPLATFORM_BASE_URL`` says where that is."""
    base = settings.FLOWPLATFORM_BASE_URL
    if not base:
        return None
    return base.rstrip("/") + reverse("admin:flows_flowrun_change", args=[run_id])


def payload(
    run: FlowRun | None,
    event: str,
    *,
    flow: Flow | None = None,
    interval: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """The webhook's JSON body (and the e-mail's text): flow, run, status, error, interval,
    link, and a Slack-compatible ``text``. The run's error is redacted where it is stored."""
    flow = flow or (run.flow if run else None)
    assert flow is not None
    start, end = interval or ((run.interval_start, run.interval_end) if run else (None, None))
    url = run_url(run.pk) if run else None
    body = {
        "event": event,
        "flow": flow.slug,
        "flow_name": flow.name,
        "run_id": str(run.pk) if run else None,
        "status": run.status if run else None,
        "trigger": run.trigger if run else None,
        "error": run.error if run else "",
        "interval_start": _iso(start),
        "interval_end": _iso(end),
        "started_at": _iso(run.started_at) if run else None,
        "finished_at": _iso(run.finished_at) if run else None,
        "url": url,
    }
    body["text"] = text(body)
    return body


def text(body: dict[str, Any]) -> str:
    """One line for people (Slack, e-mail subject and body)."""
    what = {
        "failed": "failed",
        "succeeded": "succeeded",
        "recovered": "recovered (succeeded after failures)",
        "late": f"is late (not succeeded {body.get('late_after', '')} after its interval)",
    }[body["event"]]
    run = f" run {body['run_id'][:8]}" if body["run_id"] else ""
    interval = (
        f" for {body['interval_start']} to {body['interval_end']}" if body["interval_start"] else ""
    )
    line = f"Flow {body['flow']}{run}{interval} {what}"
    if body["error"] and body["event"] in ("failed", "late"):
        line += f": {body['error'][:500]}"
    if body["url"]:
        line += f" <{body['url']}|open the run>"
    return line


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
