"""A node task's bookkeeping in two PostgreSQL statements, run on the lease session.

``take_node`` finds the node run, takes its lease (the session's advisory lock), claims a
pending node, marks a queued run running and reads the run and its succeeded outputs, in one
round trip. ``finish_succeeded`` records the node's success, closes the run when asked and every
node has succeeded, and releases the lease, in another. A short node's task is thus two round
trips of bookkeeping (prepared statements); everything else (retries, failures, take-overs of
a node whose worker died) goes through :mod:`flows.transitions`.

Both statements are plain compare-and-set updates: ``take_node`` only claims a node still
``pending`` (re-checked under the row lock), and ``finish_succeeded`` only finishes a node still
``running``. ``finish_succeeded`` releases the lock inside the statement, a moment before its
transaction commits: a duplicate delivery taking the lease in that moment sees the node
``running`` and goes through ``transitions.claim_node``, whose ``FOR UPDATE`` waits for the
commit and then finds the node succeeded. When the session's connection breaks under a
statement, the statement is sent once more on a new session (``lease.run_on_session``): if the
first had committed a claim, the second finds the node ``running`` with its lease free and
takes it over (one ``workers_lost`` counted for the lost connection).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connection, models
from django.utils import timezone

from flows import transitions
from flows.engine.lease import (
    LOCK_NAMESPACE,
    NodeLease,
    close_idle_session,
    held_keys,
    lease_key,
    run_on_session,
)
from flows.models import FlowRun, NodeRun, RunStatus
from nodes.models import Connection, connection_info
from nodes.sdk import ConnectionInfo, NodeError

ModelT = TypeVar("ModelT", bound=models.Model)

_NODE = NodeRun._meta.db_table
_RUN = FlowRun._meta.db_table
# What a node's execution reads of its node run (the rest stays deferred).
_NODE_FIELDS = [
    NodeRun._meta.get_field(name)
    for name in (
        "id", "run_id", "node_key", "node_type", "position", "status", "attempts",
        "deliveries", "workers_lost", "checkpoint",
    )
]  # fmt: skip
# What a node's execution reads of its run (in the model's order), and its trigger and
# creation time: the run's metrics when its last node closes it, without a query.
_RUN_FIELDS = [
    FlowRun._meta.get_field(name)
    for name in (
        "id",
        "flow_id",
        "version_id",
        "status",
        "trigger",
        "params",
        "interval_start",
        "interval_end",
        "payload",
        "created_at",
        "limited",
    )
]

# Table and column names come from model metadata; every value is a bound parameter.
_TAKE_SQL = """
WITH target AS MATERIALIZED (
    SELECT n.id, n.status,
           CASE WHEN n.status IN ('pending', 'running') AND r.status IN ('queued', 'running')
                     AND NOT (n.id %% 2147483648)::int = ANY(%(held)s::int[])
                THEN pg_try_advisory_lock(%(namespace)s::int, (n.id %% 2147483648)::int)
           END AS taken
    FROM {node} AS n JOIN {run} AS r ON r.id = n.run_id
    WHERE n.run_id = %(run)s::uuid AND n.node_key = %(key)s
),
claimed AS (
    UPDATE {node} AS n
    SET status = 'running', attempts = n.attempts + 1, deliveries = n.deliveries + 1,
        started_at = %(now)s::timestamptz, heartbeat_at = %(now)s::timestamptz, finished_at = NULL
    FROM target
    WHERE n.id = target.id AND target.taken AND target.status = 'pending'
      AND n.status = 'pending'
    RETURNING {node_columns}
),
started AS (
    -- SKIP LOCKED: a run being finished (cancel, timeout) holds its row and waits for pending
    -- node rows; waiting for it here, holding this node's row, would deadlock.
    UPDATE {run} SET status = 'running', started_at = %(now)s::timestamptz
    WHERE id = (SELECT id FROM {run} WHERE id = %(run)s::uuid AND status = 'queued'
                  AND EXISTS (SELECT 1 FROM claimed) FOR UPDATE SKIP LOCKED)
)
SELECT target.id, target.status, target.taken, claimed.*, {run_columns},
       (SELECT json_object_agg(u.node_key, u.output_ref)::text FROM {node} AS u
        WHERE u.run_id = %(run)s::uuid AND u.status = 'succeeded')
FROM target
LEFT JOIN claimed ON true
LEFT JOIN {run} AS r ON r.id = %(run)s::uuid AND claimed.id IS NOT NULL
""".format(  # noqa: S608
    node=_NODE,
    run=_RUN,
    node_columns=", ".join(f"n.{f.column}" for f in _NODE_FIELDS),
    run_columns=", ".join(f"r.{f.column}" for f in _RUN_FIELDS),
)

_FINISH_SQL = f"""
WITH done AS (
    UPDATE {_NODE}
    SET status = 'succeeded', finished_at = %(now)s, duration_ms = %(duration_ms)s,
        rows_in = %(rows_in)s, rows_out = %(rows_out)s, output_ref = %(output_ref)s
    WHERE id = %(id)s AND status = 'running'
    RETURNING id
),
closed AS (
    UPDATE {_RUN}
    SET status = 'succeeded', finished_at = %(now)s, started_at = COALESCE(started_at, %(now)s)
    WHERE %(close)s::boolean AND id = %(run)s::uuid AND status IN ('queued', 'running')
      AND EXISTS (SELECT 1 FROM done)
      AND NOT EXISTS (SELECT 1 FROM {_NODE} AS x
                      WHERE x.run_id = %(run)s::uuid AND x.id <> %(id)s AND x.status <> 'succeeded')
    RETURNING id
)
SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM closed),
       pg_advisory_unlock(%(namespace)s::int, %(key)s::int)
"""  # noqa: S608


def model_from_row(model: type[ModelT], fields: list[Any], values: Iterable[Any]) -> ModelT:
    """A model instance from raw column values of ``fields`` (other fields stay deferred)."""
    converted = [
        field.from_db_value(value, None, connection)
        if value is not None and hasattr(field, "from_db_value")
        else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def available() -> bool:
    """The fast path needs PostgreSQL (embedded mode on SQLite uses the ORM path)."""
    return connection.vendor == "postgresql"


@dataclass
class Taken:
    """What ``take_node`` found: the node run's id and status, its lease when taken, and the
    claim when the node was pending and is now this delivery's to execute."""

    node_run_id: int
    status: str
    lease: NodeLease | None
    claim: transitions.Claim | None


def take_node(run_id: str, node_key: str) -> Taken | None:
    """Find, lease and (when pending) claim a run's node; ``None`` when there is no such node."""
    now = timezone.now()
    params = {
        "run": run_id,
        "key": node_key,
        "now": now,
        "namespace": LOCK_NAMESPACE,
        "held": held_keys(),
    }
    row = run_on_session(_TAKE_SQL, params)
    if row is None:
        close_idle_session()
        return None
    node_run_id, status, taken = row[0], row[1], bool(row[2])
    if not taken:
        close_idle_session()
        return Taken(node_run_id, status, None, None)
    lease = NodeLease.taken(node_run_id)
    try:
        claimed = row[3 : 3 + len(_NODE_FIELDS)]
        if claimed[0] is None:
            return Taken(node_run_id, status, lease, None)
        node_run = model_from_row(NodeRun, _NODE_FIELDS, claimed)
        node_run.started_at = node_run.heartbeat_at = now
        node_run.finished_at = None
        node_run.run = model_from_row(FlowRun, _RUN_FIELDS, row[3 + len(_NODE_FIELDS) : -1])
        node_run.run.status = RunStatus.RUNNING  # (``started`` has just made it so)
        outputs = json.loads(row[-1]) if row[-1] else {}
    except BaseException:
        lease.release()
        raise
    return Taken(node_run_id, status, lease, transitions.Claim("execute", node_run, False, outputs))


_CONNECTION_SQL = f"""
SELECT encrypted_url, encrypted_headers FROM {Connection._meta.db_table} WHERE name = %(name)s
"""  # noqa: S608


def lookup_connection(name: str) -> ConnectionInfo:
    """``ExecutionContext.connection_lookup`` on the lease session (a prepared statement; an
    error of the statement leaves the session and the running node's lease alone)."""
    row = run_on_session(_CONNECTION_SQL, {"name": name})
    close_idle_session()
    if row is None:
        raise NodeError(f"connection '{name}' does not exist", permanent=True)
    return connection_info(name, row[0], row[1])


def finish_succeeded(
    node_run: NodeRun,
    lease: NodeLease,
    *,
    rows_in: int,
    rows_out: int,
    output_ref: str,
    close: bool,
) -> tuple[bool, bool]:
    """Record the node's success and release its lease; with ``close``, also succeed the run
    when every other node has. Returns (node finished, run closed)."""
    now = timezone.now()
    started = node_run.started_at
    params: dict[str, Any] = {
        "id": node_run.pk,
        "run": str(node_run.run_id),
        "now": now,
        "duration_ms": int((now - started).total_seconds() * 1000) if started else None,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "output_ref": output_ref,
        "close": close,
        "namespace": LOCK_NAMESPACE,
        "key": lease_key(node_run.pk),
    }
    try:
        done, closed, _unlocked = run_on_session(_FINISH_SQL, params)
    except BaseException:
        lease.release()  # the statement may not have run: unlock (or drop the session)
        raise
    lease.released()  # by the statement
    return bool(done), bool(closed)


__all__ = ["Taken", "available", "finish_succeeded", "lookup_connection", "take_node"]
