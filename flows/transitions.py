"""Every run and node-run state change, each a compare-and-set UPDATE.

A change only happens from the states it names, so a redelivered task, a late errback or a
second worker can never move a finished run or node backwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun, NodeStatus, RunStatus


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
            closed = NodeStatus.CANCELLED if status == RunStatus.CANCELLED else NodeStatus.SKIPPED
            NodeRun.objects.filter(run_id=run_id, status=NodeStatus.PENDING).update(
                status=closed, finished_at=now
            )
    return bool(changed)


def claim_node(run_id: str, node_key: str) -> NodeRun | None:
    """Take a node for execution (pending, or running after a redelivery); None if it is done.

    The row lock serialises two deliveries of the same task: the second waits, then finds the
    node no longer claimable or re-claims it only if the first gave it up.
    """
    with transaction.atomic():
        node_run = (
            NodeRun.objects.select_for_update()
            .filter(run_id=run_id, node_key=node_key)
            .select_related("run")
            .first()
        )
        if node_run is None or node_run.run.status not in ACTIVE_RUN_STATUSES:
            return None
        NodeRun.objects.filter(pk=node_run.pk).update(deliveries=F("deliveries") + 1)
        if node_run.status not in (NodeStatus.PENDING, NodeStatus.RUNNING):
            return None
        now = timezone.now()
        NodeRun.objects.filter(pk=node_run.pk).update(
            status=NodeStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            error="",
            traceback="",
        )
    node_run.refresh_from_db()
    return node_run


def heartbeat(node_run_id: int, **progress: Any) -> None:
    NodeRun.objects.filter(pk=node_run_id, status=NodeStatus.RUNNING).update(
        heartbeat_at=timezone.now(), **progress
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
