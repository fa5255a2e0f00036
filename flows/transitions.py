"""Every run and node-run state change, each a compare-and-set UPDATE.

A change only happens from the states it names, so a redelivered task, a late errback or a
second worker can never move a finished run or node backwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.db import connection, models, transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Coalesce
from django.utils import timezone

from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun, NodeStatus, RunStatus

ModelT = TypeVar("ModelT", bound=models.Model)

#: What a node's execution reads of its run (the rest stays deferred).
RUN_FIELDS_FOR_NODES = (
    "id", "flow_id", "version_id", "status", "params", "interval_start", "interval_end",
)  # fmt: skip


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
        return True
    return finish_run(run_id, RunStatus.FAILED, "not every node succeeded")


@dataclass
class Claim:
    """The outcome of claiming a node for execution.

    ``execute``: run it (``took_over`` when an earlier delivery died mid-execution);
    ``done``: it already succeeded, the canvas may go on; ``stop``: nothing to do here.
    On PostgreSQL an executing claim also carries the run (with ``version_id``, ``params`` and
    the data interval loaded) and ``outputs``, the output of every succeeded node of the run.
    """

    outcome: str
    node_run: NodeRun | None = None
    took_over: bool = False
    outputs: dict[str, str] | None = None


def claim_node(node_run_id: int) -> Claim:
    """Take a node for execution. Call it while holding the node's lease (``NodeLease``)."""
    if connection.vendor == "postgresql":
        claim = _claim_in_one_statement(node_run_id)
        if claim is not None:
            return claim
    return _claim_locked(node_run_id)


def _claim_locked(node_run_id: int) -> Claim:
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


_NODE_FIELDS = list(NodeRun._meta.concrete_fields)
_RUN_FIELDS = [FlowRun._meta.get_field(name) for name in RUN_FIELDS_FOR_NODES]
# Table and column names come from model metadata.
_CLAIM_SQL = """
WITH prev AS (SELECT id, status FROM {node} WHERE id = %(id)s FOR UPDATE)
UPDATE {node} AS n
SET status = 'running', attempts = n.attempts + 1, deliveries = n.deliveries + 1,
    workers_lost = n.workers_lost + CASE WHEN prev.status = 'running' THEN 1 ELSE 0 END,
    started_at = %(now)s, heartbeat_at = %(now)s, finished_at = NULL
FROM prev, {run} AS r
WHERE n.id = prev.id AND r.id = n.run_id
  AND prev.status IN ('pending', 'running') AND r.status IN ('queued', 'running')
RETURNING prev.status, {node_columns}, {run_columns},
  (SELECT json_object_agg(u.node_key, u.output_ref)::text FROM {node} AS u
   WHERE u.run_id = n.run_id AND u.status = 'succeeded')
""".format(  # noqa: S608
    node=NodeRun._meta.db_table,
    run=FlowRun._meta.db_table,
    node_columns=", ".join(f"n.{f.column}" for f in _NODE_FIELDS),
    run_columns=", ".join(f"r.{f.column}" for f in _RUN_FIELDS),
)


def _claim_in_one_statement(node_run_id: int) -> Claim | None:
    """The common case in one round trip: claim, read the run and the upstream outputs.

    ``None`` when the node is not claimable (finished, or its run is): the caller then asks
    :func:`_claim_locked`, which tells which.
    """
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"id": node_run_id, "now": timezone.now()})
        row = cursor.fetchone()
    if row is None:
        return None
    previous, outputs = row[0], row[-1]
    node_values = row[1 : 1 + len(_NODE_FIELDS)]
    run_values = row[1 + len(_NODE_FIELDS) : -1]
    node_run = model_from_row(NodeRun, _NODE_FIELDS, node_values)
    node_run.run = model_from_row(FlowRun, _RUN_FIELDS, run_values)
    took_over = previous == NodeStatus.RUNNING
    return Claim("execute", node_run, took_over, json.loads(outputs) if outputs else {})


def model_from_row(model: type[ModelT], fields: list[Any], values: Iterable[Any]) -> ModelT:
    """A model instance from raw column values of ``fields`` (other fields stay deferred)."""
    converted = [
        field.from_db_value(value, None, connection)
        if value is not None and hasattr(field, "from_db_value")
        else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


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
