"""The reaper: no run stays active forever.

Every ``FLOWPLATFORM_REAPER_INTERVAL_S`` it finds:

- *orphaned* runs: nodes are running, but the lease of every one has run out (their worker
  died, and Redis will not redeliver the task before its visibility timeout). The lease is
  what tells a dead owner from a busy one, so they are re-dispatched at once, and the next
  delivery takes the node over (``flows.transitions.take``);
- *idle* runs: no node is running and nothing has happened for ``FLOWPLATFORM_STALE_AFTER_S``
  (their messages were lost, e.g. the broker was flushed).

Either is re-dispatched from the nodes that have not succeeded, at most
``FLOWPLATFORM_MAX_REDISPATCHES`` times, then failed; a re-dispatch that no delivery has taken
up yet (a queue backlog) is given ``FLOWPLATFORM_STALE_AFTER_S`` before the next. Runs past
their flow's ``run_timeout_s`` are failed.

A fan-out under way is not re-dispatched whole: each *lost partition* (running under a lease
that has run out: its worker died) has its own task sent again at once
(``flows.engine.partitions.resend_lost``), and the next delivery takes it over; a partition
lost every time ends failed after ``FLOWPLATFORM_MAX_WORKERS_LOST`` (decision 0042).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from flowplatform import metrics
from flows import transitions
from flows.admission import admit_waiting
from flows.engine.executor import version_of
from flows.engine.partitions import resend_lost
from flows.models import (
    ACTIVE_RUN_STATUSES,
    FlowRun,
    NodeRun,
    NodeStatus,
    PartitionRun,
    RunStatus,
)

logger = logging.getLogger("flowplatform.reaper")


def reap(now: datetime | None = None, stale_after_s: float | None = None) -> dict[str, int]:
    """One pass; returns how many runs were timed out, re-dispatched and failed, how many lost
    partitions were sent again and how many waiting runs admitted."""
    from flows.services import redispatch, revoke_run_tasks

    now = now or timezone.now()
    stale = now - timedelta(seconds=stale_after_s or settings.FLOWPLATFORM_STALE_AFTER_S)
    counts = {"timed_out": 0, "redispatched": 0, "failed": 0}
    for run in timed_out(now):
        timeout = version_of(run.version_id).definition["run_timeout_s"]
        if transitions.finish_run(str(run.id), RunStatus.FAILED, f"run timed out after {timeout}s"):
            revoke_run_tasks(run)
            counts["timed_out"] += 1
    stalled = FlowRun.objects.filter(id__in=orphaned(now, stale) | idle(stale))
    for run in stalled.select_related("version"):
        count = transitions.mark_redispatched(str(run.id), run.redispatched_at)
        if count > settings.FLOWPLATFORM_MAX_REDISPATCHES:
            reason = f"stalled: no progress after {count - 1} re-dispatches"
            if transitions.finish_run(str(run.id), RunStatus.FAILED, reason):
                counts["failed"] += 1
        elif count:
            logger.warning("run %s stalled; re-dispatching (%s)", run.id, count)
            redispatch(run, generation=count)
            counts["redispatched"] += 1
    counts["resent"] = resend_lost(now, stale)
    counts["admitted"] = admit_waiting()
    metrics.reaper_acted(counts)
    return counts


def timed_out(now: datetime) -> list[FlowRun]:
    """Active runs older than their version's ``run_timeout_s``."""
    runs = FlowRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).only(
        "id", "version_id", "created_at", "redispatches"
    )
    return [
        run
        for run in runs
        if (timeout := version_of(run.version_id).definition.get("run_timeout_s"))
        and run.created_at + timedelta(seconds=timeout) < now
    ]


def orphaned(now: datetime, stale: datetime) -> set[Any]:
    """Ids of active runs whose running nodes all hold leases that have run out, unless a
    re-dispatch is still waiting to be taken up (no node taken since, and younger than
    ``stale``), or their partitions are live (``partitions_live``)."""
    live = partitions_live(now, stale)
    running = (
        NodeRun.objects.filter(status=NodeStatus.RUNNING, run__status__in=ACTIVE_RUN_STATUSES)
        .values("run_id")
        .annotate(
            live=Count("pk", filter=Q(lease_expires_at__gte=now)),
            taken=Max("started_at"),
        )
        .filter(live=0)
        .values_list("run_id", "taken", "run__redispatched_at")
    )
    return {
        run_id
        for run_id, taken, redispatched in running
        if run_id not in live
        and (redispatched is None or redispatched < stale or (taken and taken > redispatched))
    }


def partitions_live(now: datetime, stale: datetime) -> set[Any]:
    """Ids of active runs with partitions still to finish that show life: a partition running
    under a lease not run out, or waiting for its retry (its heartbeat is its retry time), or a
    partition of the run taken or finished since ``stale`` (the pending ones are queued behind
    it). The fan-out's node runs are renewed only by running partitions: while a partition
    waits, a re-dispatch would only stand down, so such a run is not orphaned."""
    unfinished = (NodeStatus.PENDING, NodeStatus.RUNNING)
    recent = PartitionRun.objects.filter(run_id=OuterRef("run_id")).filter(
        Q(status=NodeStatus.RUNNING, lease_expires_at__gte=now)
        | Q(heartbeat_at__gte=stale)
        | Q(started_at__gte=stale)
        | Q(finished_at__gte=stale)
    )
    return set(
        PartitionRun.objects.filter(status__in=unfinished, run__status__in=ACTIVE_RUN_STATUSES)
        .filter(Exists(recent))
        .values_list("run_id", flat=True)
        .distinct()
    )


def idle(stale: datetime) -> set[Any]:
    """Ids of dispatched active runs with no running node and nothing done since ``stale``:
    created, started, re-dispatched, a node finished or beat (a node waiting for a retry
    carries its retry time as heartbeat) before it."""
    before = Q(created_at__lt=stale) & (Q(started_at__isnull=True) | Q(started_at__lt=stale))
    before &= Q(redispatched_at__isnull=True) | Q(redispatched_at__lt=stale)
    runs = (
        FlowRun.objects.filter(before, status__in=ACTIVE_RUN_STATUSES, dispatched_at__isnull=False)
        .annotate(
            running=Count("node_runs", filter=Q(node_runs__status=NodeStatus.RUNNING)),
            finished=Max("node_runs__finished_at"),
            beat=Max("node_runs__heartbeat_at"),
        )
        .filter(running=0)
        .filter(Q(finished__isnull=True) | Q(finished__lt=stale))
        .filter(Q(beat__isnull=True) | Q(beat__lt=stale))
    )
    return set(runs.values_list("id", flat=True))
