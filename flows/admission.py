"""Run slots: how many runs execute at once, per flow, per queue and in all.

A run starts ``queued``. When no limit applies to it, ``start_run`` dispatches it at once
(``dispatched_at`` set as it is recorded: the common path pays nothing). Otherwise it is
recorded without ``dispatched_at`` and ``admit_waiting`` hands waiting runs to the workers,
highest ``priority`` first, then oldest first, while slots are free:

- ``Flow.max_active_runs``: runs of the flow dispatched and not finished, whatever started them;
- ``FLOWPLATFORM_MAX_ACTIVE_RUNS``: all such runs (0: no limit);
- ``FLOWPLATFORM_QUEUE_LIMITS`` (``heavy=2,default=10``): such runs by their flow's queue.

``admit_waiting`` runs after a waiting run is recorded, whenever a run ends (``flows.hooks``)
and on every reaper pass (a missed wake-up costs at most one reaper interval). Admissions are
serialised (``flows.dialect.serialize``), so two processes freeing slots at once never admit
more runs than there are slots.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from flows import dialect
from flows.models import ACTIVE_RUN_STATUSES, Flow, FlowRun, NodeRun, NodeStatus, RunStatus

logger = logging.getLogger("flowplatform.engine")

#: Waiting runs looked at per pass (the rest wait for the next pass).
SCAN = 500


def queue_name(queue: str) -> str:
    """The Celery queue a run's tasks go to (empty: the default queue)."""
    return queue or settings.CELERY_TASK_DEFAULT_QUEUE


def queue_limit(queue: str) -> int:
    return int(settings.FLOWPLATFORM_QUEUE_LIMITS.get(queue_name(queue), 0))


def limited(flow: Flow) -> bool:
    """Whether any slot limit applies to a run of ``flow`` (else it is dispatched at once)."""
    return bool(
        flow.max_active_runs or settings.FLOWPLATFORM_MAX_ACTIVE_RUNS or queue_limit(flow.queue)
    )


def waiting() -> int:
    return FlowRun.objects.filter(status=RunStatus.QUEUED, dispatched_at__isnull=True).count()


def run_finished(run: FlowRun) -> int:
    """A run ended: admit waiting runs if its slot is one they may wait for. Only a run a
    limit applied to (``limited``, recorded at its start) frees such a slot, so the end of a
    run no limit applies to costs no query."""
    return admit_waiting() if run.limited or waiting_possible() else 0


def waiting_possible() -> bool:
    """A global or queue limit is set (then any run's end may free a slot)."""
    return bool(settings.FLOWPLATFORM_MAX_ACTIVE_RUNS or settings.FLOWPLATFORM_QUEUE_LIMITS)


def admit_waiting() -> int:
    """Dispatch waiting runs while slots are free; returns how many were dispatched."""
    from flows.services import DispatchError, dispatch

    pending = FlowRun.objects.filter(status=RunStatus.QUEUED, dispatched_at__isnull=True)
    if not pending.exists():
        return 0
    with transaction.atomic():
        dialect.serialize(dialect.ADMISSIONS)
        candidates = list(
            pending.select_related("flow", "version").order_by("-priority", "created_at")[:SCAN]
        )
        admitted = _fit(candidates)
        if admitted:
            FlowRun.objects.filter(
                pk__in=[r.pk for r in admitted], status=RunStatus.QUEUED, dispatched_at=None
            ).update(dispatched_at=timezone.now())
    for run in admitted:
        try:
            dispatch(run, only=_unfinished(run))
        except DispatchError as exc:
            logger.error("%s", exc)  # the run is recorded and failed
    return len(admitted)


def _fit(candidates: list[FlowRun]) -> list[FlowRun]:
    """The candidates that fit the free slots, in order (the caller holds the lock)."""
    active = FlowRun.objects.filter(status__in=ACTIVE_RUN_STATUSES, dispatched_at__isnull=False)
    total = active.count()
    per_flow = dict(active.values_list("flow_id").annotate(n=Count("id")))
    per_queue: dict[str, int] = {}
    for queue, count in active.values_list("queue").annotate(n=Count("id")):
        per_queue[queue_name(queue)] = per_queue.get(queue_name(queue), 0) + count
    overall = settings.FLOWPLATFORM_MAX_ACTIVE_RUNS
    admitted = []
    for run in candidates:
        if overall and total >= overall:
            break
        queue = queue_name(run.queue)
        flow_limit = run.flow.max_active_runs
        if flow_limit and per_flow.get(run.flow_id, 0) >= flow_limit:
            continue
        if queue_limit(queue) and per_queue.get(queue, 0) >= queue_limit(queue):
            continue
        admitted.append(run)
        total += 1
        per_flow[run.flow_id] = per_flow.get(run.flow_id, 0) + 1
        per_queue[queue] = per_queue.get(queue, 0) + 1
    return admitted


def _unfinished(run: FlowRun) -> set[str] | None:
    """A rerun reusing some nodes dispatches only the others; None: the whole run."""
    nodes = NodeRun.objects.filter(run=run)
    if not nodes.filter(reused_from__isnull=False).exists():
        return None
    return set(nodes.exclude(status=NodeStatus.SUCCEEDED).values_list("node_key", flat=True))
