"""The reaper: no run stays active forever.

Runs are found stalled when a running node's heartbeat is stale or missing and no live process
holds its lease (its worker died, and Redis will not redeliver the task before the visibility
timeout), or when nothing has happened in a run for ``FLOWPLATFORM_STALE_AFTER_S`` (its
messages were lost, e.g. the broker was flushed). A stalled run is re-dispatched from the nodes
that have not succeeded, at most ``FLOWPLATFORM_MAX_REDISPATCHES`` times, then failed. Runs past
their flow's ``run_timeout_s`` are failed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone

from flowplatform import metrics
from flows import transitions
from flows.admission import admit_waiting
from flows.engine.lease import is_executing
from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun, NodeStatus, RunStatus

logger = logging.getLogger("flowplatform.reaper")


def reap(now: datetime | None = None, stale_after_s: float | None = None) -> dict[str, int]:
    """One pass; returns how many runs were timed out, re-dispatched and failed."""
    from flows.services import redispatch, revoke_run_tasks

    now = now or timezone.now()
    stale = now - timedelta(seconds=stale_after_s or settings.FLOWPLATFORM_STALE_AFTER_S)
    counts = {"timed_out": 0, "redispatched": 0, "failed": 0}
    for run in FlowRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).select_related("version"):
        timeout = run.version.definition.get("run_timeout_s")
        if timeout and run.created_at + timedelta(seconds=timeout) < now:
            if transitions.finish_run(
                str(run.id), RunStatus.FAILED, f"run timed out after {timeout}s"
            ):
                revoke_run_tasks(run)
                counts["timed_out"] += 1
            continue
        if run.dispatched_at is None or not is_stalled(run, stale):
            continue  # (a run waiting for a slot has nothing to stall)
        count = transitions.mark_redispatched(str(run.id))
        if count > settings.FLOWPLATFORM_MAX_REDISPATCHES:
            reason = f"stalled: no progress after {count - 1} re-dispatches"
            if transitions.finish_run(str(run.id), RunStatus.FAILED, reason):
                counts["failed"] += 1
        elif count:
            logger.warning("run %s stalled; re-dispatching (%s)", run.id, count)
            redispatch(run, generation=count)
            counts["redispatched"] += 1
    counts["admitted"] = admit_waiting()
    metrics.reaper_acted(counts)
    return counts


def is_stalled(run: FlowRun, stale: datetime) -> bool:
    if run.redispatched_at is not None and run.redispatched_at >= stale:
        return False  # each re-dispatch gets a full staleness window to show progress
    nodes = NodeRun.objects.filter(run=run)
    running = list(nodes.filter(status=NodeStatus.RUNNING))
    if running:
        dead = [
            n
            for n in running
            if (n.heartbeat_at is None or n.heartbeat_at < stale) and not is_executing(n.pk)
        ]
        return len(dead) == len(running)
    # A node waiting for a retry carries its retry time as heartbeat.
    marks = nodes.aggregate(
        finished=Max("finished_at", filter=Q(finished_at__isnull=False)),
        beat=Max("heartbeat_at", filter=Q(heartbeat_at__isnull=False)),
    )
    times = (run.created_at, run.started_at, marks["finished"], marks["beat"])
    activity = max(t for t in times if t is not None)
    return activity < stale
