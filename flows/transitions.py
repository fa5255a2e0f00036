"""Every run and node-run state change, each a compare-and-set UPDATE.

A change only happens from the states it names, so a redelivered task, a late errback or a
second worker can never move a finished run or node backwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from flowplatform import telemetry
from flows import hooks
from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun, NodeStatus, RunStatus
from flows.signals import run_finished

logger = logging.getLogger("flowplatform.engine")


def mark_run_running(run_id: str) -> bool:
    return bool(
        FlowRun.objects.filter(id=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=timezone.now()
        )
    )


def finish_run(run_id: str, status: str, error: str = "") -> bool:
    """Move an active run to a final status; False when it had already finished."""
    now = timezone.now()
    with transaction.atomic():
        changed = FlowRun.objects.filter(id=run_id, status__in=ACTIVE_RUN_STATUSES).update(
            status=status, finished_at=now, error=error[:10000]
        )
        if changed:
            FlowRun.objects.filter(id=run_id, started_at__isnull=True).update(started_at=now)
            NodeRun.objects.filter(run_id=run_id, status=NodeStatus.PENDING).update(
                status=NodeStatus.SKIPPED, finished_at=now
            )
    if changed:
        announce_finished(run_id, status)
    return bool(changed)


def close_run(run_id: str) -> bool:
    """End a run whose last node has finished: succeeded if every node did, else failed.

    False when the run had already finished.
    """
    now = timezone.now()
    not_succeeded = NodeRun.objects.filter(run_id=OuterRef("pk")).exclude(
        status=NodeStatus.SUCCEEDED
    )
    if (
        FlowRun.objects.filter(id=run_id, status__in=ACTIVE_RUN_STATUSES)
        .filter(~Exists(not_succeeded))
        .update(status=RunStatus.SUCCEEDED, finished_at=now, started_at=Coalesce("started_at", now))
    ):
        announce_finished(run_id, RunStatus.SUCCEEDED)
        return True
    return finish_run(run_id, RunStatus.FAILED, "not every node succeeded")


def announce_finished(run_id: str, status: str, run: FlowRun | None = None) -> None:
    """A run has just ended (called once, by the state change that ended it): the receivers of
    the ``run_finished`` signal (alerts) and the callbacks of ``flows.hooks`` (triggers, run
    slots) hear of it; their errors are logged, never raised into the run's own bookkeeping.
    ``run``: the run's instance when the caller has it (saves a query)."""
    telemetry.run_finished(run_id, status, run)
    hooks.run_finished(run_id, run)
    for receiver, result in run_finished.send_robust(FlowRun, run_id=run_id, status=status):
        if isinstance(result, Exception):
            logger.error("run %s: %s failed on run_finished: %s", run_id, receiver, result)


@dataclass
class Claim:
    """The outcome of claiming a node for execution.

    ``execute``: run it (``took_over`` when an earlier delivery died mid-execution);
    ``done``: it already succeeded, the canvas may go on; ``stop``: nothing to do here.
    A claim by ``flows.engine.fastpath.take_node`` also carries ``outputs``, the output of every
    succeeded node of the run (otherwise they are read when the node executes).
    """

    outcome: str
    node_run: NodeRun | None = None
    took_over: bool = False
    outputs: dict[str, str] | None = None


def claim_node(node_run_id: int) -> Claim:
    """Take a node for execution. Call it while holding the node's lease (``NodeLease``).

    (On PostgreSQL a pending node is claimed by ``flows.engine.fastpath.take_node``; this
    serves embedded mode, take-overs and the partitions of a fan-out.)
    """
    with transaction.atomic():
        node_run = NodeRun.objects.select_for_update().select_related("run").get(pk=node_run_id)
        NodeRun.objects.filter(pk=node_run_id).update(deliveries=F("deliveries") + 1)
        if node_run.status == NodeStatus.SUCCEEDED:
            return Claim("done", node_run)
        if node_run.run.status not in ACTIVE_RUN_STATUSES or node_run.status not in (
            NodeStatus.PENDING,
            NodeStatus.RUNNING,
        ):
            return Claim("stop", node_run)
        took_over = node_run.status == NodeStatus.RUNNING
        now = timezone.now()
        NodeRun.objects.filter(pk=node_run_id).update(
            status=NodeStatus.RUNNING,
            attempts=F("attempts") + 1,
            workers_lost=F("workers_lost") + int(took_over),
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
        )
    node_run.refresh_from_db()
    return Claim("execute", node_run, took_over)


def retry_node(node_run: NodeRun, error: str, delay_s: float) -> bool:
    """Put a failed attempt back to pending (its error kept) before the task is retried.

    The heartbeat is set to the retry time, so the reaper does not take the wait for a stall.
    """
    return bool(
        NodeRun.objects.filter(pk=node_run.pk, status=NodeStatus.RUNNING).update(
            status=NodeStatus.PENDING,
            error=error[:10000],
            heartbeat_at=timezone.now() + timedelta(seconds=delay_s),
        )
    )


def mark_redispatched(run_id: str) -> int:
    """Count a re-dispatch of a stalled run; returns the new count (0 if it is not active)."""
    with transaction.atomic():
        changed = FlowRun.objects.filter(id=run_id, status__in=ACTIVE_RUN_STATUSES).update(
            redispatches=F("redispatches") + 1, redispatched_at=timezone.now()
        )
        if not changed:
            return 0
        return FlowRun.objects.values_list("redispatches", flat=True).get(id=run_id)


def save_checkpoint(node_run_id: int, value: Any) -> None:
    NodeRun.objects.filter(pk=node_run_id, status=NodeStatus.RUNNING).update(
        checkpoint=value, heartbeat_at=timezone.now()
    )


def heartbeat(node_run_id: int, **progress: Any) -> None:
    NodeRun.objects.filter(pk=node_run_id, status=NodeStatus.RUNNING).update(
        heartbeat_at=timezone.now(), **progress
    )


def add_rows(deltas: Mapping[int, tuple[int, int]]) -> int:
    """Add (rows in, rows out) to several running node runs, and beat them, in one statement.

    The rows are locked in whatever order the plan visits them, so two such statements on the
    same rows may deadlock; PostgreSQL then fails one, which progress writers skip."""
    if not deltas:
        return 0

    def added(position: int) -> Case:
        steps = [When(pk=pk, then=Value(delta[position])) for pk, delta in deltas.items()]
        return Case(*steps, default=Value(0))

    return NodeRun.objects.filter(pk__in=list(deltas), status=NodeStatus.RUNNING).update(
        heartbeat_at=timezone.now(),
        rows_in=F("rows_in") + added(0),
        rows_out=F("rows_out") + added(1),
    )


def heartbeat_many(node_run_ids: list[int]) -> int:
    return NodeRun.objects.filter(pk__in=node_run_ids, status=NodeStatus.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def finish_node(node_run: NodeRun, status: str, **fields: Any) -> bool:
    """Move a running node to a final status with its figures (rows, output, error)."""
    now = timezone.now()
    duration_ms = (
        int((now - node_run.started_at).total_seconds() * 1000) if node_run.started_at else None
    )
    return bool(
        NodeRun.objects.filter(pk=node_run.pk, status=NodeStatus.RUNNING).update(
            status=status, finished_at=now, duration_ms=duration_ms, **fields
        )
    )


def skip_nodes(run_id: str, node_keys: Iterable[str]) -> int:
    return NodeRun.objects.filter(
        run_id=run_id, node_key__in=list(node_keys), status=NodeStatus.PENDING
    ).update(status=NodeStatus.SKIPPED, finished_at=timezone.now())
