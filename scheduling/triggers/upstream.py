"""Flow-to-flow triggers: when a run of an upstream flow ends, start the flows waiting on it.

A run's final transition calls ``run_finished`` (through ``scheduling.triggers.hooks``,
registered with ``flows.hooks`` so that ``flows`` never imports this app). For each ``after`` trigger naming the run's flow:

- without ``wait_for_all``: the downstream runs once per upstream run (event key ``run:<id>``),
  for the upstream run's data interval;
- with ``wait_for_all``: once every upstream has a run in the wanted status for the same data
  interval, the downstream runs once for that interval (event key ``interval:<start>/<end>``;
  runs without an interval are matched by their latest runs: ``runs:<id>,<id>``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import connection

from flows.access import AccessDenied
from flows.models import Flow, FlowRun, RunStatus, Trigger
from flows.services import DispatchError
from flows.validation import FlowValidationError
from scheduling.triggers.firing import Fired, fire
from scheduling.triggers.models import FlowTrigger, TriggerKind

logger = logging.getLogger("flowplatform.triggers")

_STATUSES = {
    "succeeded": (RunStatus.SUCCEEDED,),
    "failed": (RunStatus.FAILED,),
    "finished": (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED),
}


def dependency_edges() -> dict[str, list[str]]:
    """Downstream flow slug -> the upstream slugs its ``after`` triggers name."""
    edges: dict[str, list[str]] = {}
    rows = FlowTrigger.objects.filter(kind=TriggerKind.AFTER).values_list("flow__slug", "config")
    for slug, config in rows:
        edges.setdefault(slug, []).extend(config.get("upstreams", []))
    return edges


def waiting_on(flow_id: int) -> list[FlowTrigger]:
    """The enabled ``after`` triggers naming the flow ``flow_id`` (one query on PostgreSQL)."""
    if connection.vendor != "postgresql":  # SQLite (the embedded demo): no jsonb_exists
        slug = Flow.objects.filter(pk=flow_id).values_list("slug", flat=True).first()
        after = FlowTrigger.objects.filter(kind=TriggerKind.AFTER, enabled=True)
        return [
            t
            for t in after.select_related("flow", "owner")
            if slug in t.config.get("upstreams", [])
        ]
    return list(
        FlowTrigger.objects.filter(kind=TriggerKind.AFTER, enabled=True)
        .extra(
            where=[
                "jsonb_exists(config -> 'upstreams', (SELECT slug FROM flows_flow WHERE id = %s))"
            ],
            params=[flow_id],
        )
        .select_related("flow", "owner")
    )


def run_finished(run: FlowRun | str, triggers: list[FlowTrigger] | None = None) -> list[Fired]:
    """Start what waits on the finished ``run`` (safe to call any number of times):
    ``triggers``, or the ``after`` triggers naming its flow."""
    if isinstance(run, str):
        found = FlowRun.objects.filter(pk=run).only("id", "flow_id").first()
        if found is None:
            return []
        run = found
    if triggers is None:
        triggers = waiting_on(run.flow_id)
    if not triggers:
        return []
    run = FlowRun.objects.select_related("flow").get(pk=run.pk)
    fired = []
    for trigger in triggers:
        if run.status not in _STATUSES[trigger.option("status", "succeeded")]:
            continue
        try:
            result = _fire_after(trigger, run)
        except (AccessDenied, FlowValidationError, DispatchError) as exc:
            logger.warning("trigger %s: flow %s not started: %s", trigger.pk, trigger.flow, exc)
            continue
        if result is not None:
            fired.append(result)
    return fired


def _fire_after(trigger: FlowTrigger, run: FlowRun) -> Fired | None:
    interval = (run.interval_start, run.interval_end)
    details: dict[str, Any] = {"upstream_run": str(run.id), "upstream": run.flow.slug}
    if not trigger.option("wait_for_all") or len(trigger.option("upstreams", [])) < 2:
        return fire(
            trigger,
            f"run:{run.id}",
            trigger_type=Trigger.UPSTREAM,
            interval=interval,
            details=details,
        )
    runs = _matching_runs(trigger, interval)
    if runs is None:
        return None  # an upstream has not got there yet
    if interval[0] is None and interval[1] is None:
        key = "runs:" + ",".join(str(r) for r in runs)
    else:
        key = f"interval:{_iso(interval[0])}/{_iso(interval[1])}"
    details["upstream_runs"] = [str(r) for r in runs]
    return fire(trigger, key, trigger_type=Trigger.UPSTREAM, interval=interval, details=details)


def _matching_runs(
    trigger: FlowTrigger, interval: tuple[datetime | None, datetime | None]
) -> list[Any] | None:
    """The latest run of each upstream in the wanted status for ``interval``; None if one
    upstream has none."""
    statuses = _STATUSES[trigger.option("status", "succeeded")]
    found = []
    for slug in trigger.option("upstreams", []):
        run_id = (
            FlowRun.objects.filter(
                flow__slug=slug,
                status__in=statuses,
                interval_start=interval[0],
                interval_end=interval[1],
            )
            .order_by("-finished_at")
            .values_list("pk", flat=True)
            .first()
        )
        if run_id is None:
            return None
        found.append(run_id)
    return found


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "-"
