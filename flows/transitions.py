"""Every run and node-run state change, each defined once.

Each change is compare-and-set: it only happens from the states it names, so a redelivered
task, a late errback or a second worker can never move a finished run or node backwards. A node
run is changed by the process holding its lease (``flows.engine.lease``): :func:`take` raises
the node's ``fence`` and every later change by the taker names that fence (``node_run.fence``),
so a process whose lease was taken over changes nothing.

The two changes every node task makes are one statement each on PostgreSQL (one round trip,
one commit): :func:`take` (claim the node, start a queued run, read the run and the outputs of
its succeeded nodes) and :func:`finish_node` (record the outcome; for the run's last task,
close the run). They are written once in SQL both backends run; ``flows.dialect`` runs them
(``chain``). The other changes are single ORM updates, except those made once or more per
partition, also written in SQL both backends run (decision 0047).

A partition of a partitioned source (``PartitionRun``, executed by ``flows.engine.partitions``)
is leased and changed the same way: :func:`take_partition` claims it with a new fence (reading
in the same statement its run, the node runs it executes and the connections' version), and the
changes made while it runs (:func:`heartbeat_many`, :func:`save_checkpoint`, :func:`add_rows`,
:func:`retry_node`, :func:`finish_partition`, :func:`fail_fan_out`) are the node run's own,
fenced alike; the reaper records a lost partition's task as sent again with :func:`mark_resent`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import DEFERRED, Case, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from flowplatform import telemetry
from flows import dialect, hooks, runend
from flows.engine import lease
from flows.models import (
    ACTIVE_RUN_STATUSES,
    FlowRun,
    NodeRun,
    NodeStatus,
    PartitionRun,
    RunStatus,
)
from flows.signals import run_finished
from nodes import models as nodes_models

logger = logging.getLogger("flowplatform.engine")

#: The most characters of an error message a run or node run keeps.
ERROR_MAX_CHARS = 10_000


def clip_error(text: str) -> str:
    """An error message as stored: at most ``ERROR_MAX_CHARS`` characters."""
    return text[:ERROR_MAX_CHARS]


class LeaseLost(Exception):
    """This process's lease on a node run was taken over: it must stop and record nothing."""


# --- taking a node ---------------------------------------------------------------------------
@dataclass
class Claim:
    """The outcome of taking a node for execution.

    ``execute``: this delivery runs it (``took_over`` when the previous owner died or its lease
    ran out); ``node_run`` carries the fence, its run and ``outputs`` (node key -> output of
    every succeeded node of the run); ``connections``: the connections' version, which spares
    the node reading a connection this process read at that version. ``done``: it already succeeded, the canvas may go on.
    ``busy``: a live process executes it. ``stop``: nothing to do (the node or its run has
    ended). ``missing``: the run has no such node.
    """

    outcome: str
    node_run: NodeRun | None = None
    took_over: bool = False
    outputs: dict[str, str] | None = None
    #: The connections' version (``nodes.models.version_sql``) as the claim read it.
    connections: str | None = None


# What a node's execution reads of its node run and of its run (the rest stays deferred).
_NODE_FIELDS = (
    "id", "run", "node_key", "node_type", "position", "status", "attempts", "deliveries",
    "workers_lost", "checkpoint", "fence", "started_at",
)  # fmt: skip
# (Its trigger and creation time: the run's metrics when its last node closes it, no query.)
_RUN_FIELDS = (
    "id", "flow", "version", "status", "trigger", "params", "interval_start", "interval_end",
    "payload", "created_at", "limited",
)  # fmt: skip


def _columns(model: type[Any], names: Iterable[str], alias: str, prefix: str = "") -> str:
    return ", ".join(f"{alias}.{prefix}{model._meta.get_field(name).column}" for name in names)


# The node as it is now, and its run (read once here: the later steps read it from ``seen``).
_SEEN = """
SELECT n.id, n.status, n.fence, n.lease_owner, n.lease_expires_at, r.status AS run_status,
       {seen_run_columns}
FROM {node} AS n JOIN {run} AS r ON r.id = n.run_id
WHERE n.run_id = %(run)s AND n.node_key = %(key)s{lazy}
"""
# Claim it: a pending node, or a running one whose lease has run out or whose owner is gone
# (``gone_fence``: the fence it had when its owner was found gone), in an active run. The new
# fence is above the last one and at least the database server's clock in microseconds: a
# take that a crash of the server lost (its commit does not wait for the disk) handed out a
# fence no later take hands out again (decision 0050).
_CLAIM = """
UPDATE {node} SET
    status = 'running', attempts = attempts + 1, deliveries = deliveries + 1,
    workers_lost = workers_lost + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
    fence = {greatest}(fence + 1, {clock_us}),
    lease_owner = %(owner)s, lease_expires_at = %(expires)s,
    started_at = %(now)s, heartbeat_at = %(now)s, finished_at = NULL
WHERE run_id = %(run)s AND node_key = %(key)s
  AND (status = 'pending'
       OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < %(now)s
                                   OR fence = %(gone_fence)s)))
  AND EXISTS (SELECT 1 FROM seen WHERE run_status IN ('queued', 'running'))
RETURNING {node_columns}
"""
# Start the run if it was queued. (SKIP LOCKED: a run being finished, e.g. cancelled, holds its
# row and waits for the rows of its pending nodes; waiting for it here, holding this node's
# row, would deadlock.)
_START = """
UPDATE {run} SET status = 'running', started_at = %(now)s
WHERE id = (SELECT id FROM {run} WHERE id = %(run)s AND status = 'queued'
              AND EXISTS (SELECT 1 FROM claimed) {skip_locked})
"""
# What was seen; when claimed, the node, its run and the outputs of the run's succeeded nodes.
_TAKEN = """
SELECT seen.status, seen.fence, seen.lease_owner, seen.run_status, claimed.*, {run_columns},
       CASE WHEN claimed.id IS NOT NULL THEN {connections_version} END,
       CASE WHEN claimed.id IS NOT NULL THEN
           (SELECT CAST({json_object_agg}(u.node_key, u.output_ref) AS TEXT) FROM {node} AS u
            WHERE u.run_id = %(run)s AND u.status = 'succeeded')
       END
FROM seen
LEFT JOIN claimed ON true
"""


def _sql(text: str, lazy: str = "") -> str:
    """A statement of this module as this database runs it (rendered once per backend);
    ``lazy``: :func:`dialect.lazy_commit_sql` for its ``{lazy}``."""
    return _rendered(text, connection.vendor, lazy)


@functools.cache
def _rendered(text: str, _vendor: str, lazy: str = "") -> str:
    return dialect.render(
        text,
        lazy=lazy,
        node=NodeRun._meta.db_table,
        run=FlowRun._meta.db_table,
        node_columns=", ".join(NodeRun._meta.get_field(n).column for n in _NODE_FIELDS),
        run_columns=_columns(FlowRun, _RUN_FIELDS, "seen", "r_"),
        seen_run_columns=", ".join(
            f"r.{column} AS r_{column}"
            for column in (FlowRun._meta.get_field(name).column for name in _RUN_FIELDS)
        ),
        connections_version=nodes_models.version_sql(),
    )


def take(
    run_id: str, node_key: str, *, owner: str | None = None, lease_s: float | None = None
) -> Claim:
    """Take a run's node for execution: one statement (PostgreSQL) that claims it under a new
    lease (``running``, ``attempts + 1``, ``deliveries + 1``, a fence above the last one and at
    least the database server's clock in microseconds; a take-over also counts
    ``workers_lost + 1``), starts a queued run and reads the run and the outputs of its
    succeeded nodes. Its commit does not wait for the disk (decision 0050).

    A node leased by a process of this machine that no longer exists is taken over at once
    (a second statement); one leased by a live or unknown owner is left to it (``busy``).
    ``owner``/``lease_s``: whom the lease names and how long it lasts (default: this process,
    ``FLOWPLATFORM_LEASE_TTL_S``).
    """
    claim, seen = _take(run_id, node_key, owner, lease_s, gone_fence=-1)
    if claim.outcome == "busy" and seen is not None and lease.gone(seen[2]):
        logger.warning("run %s node %s: its owner %s is gone", run_id, node_key, seen[2])
        claim, _seen = _take(run_id, node_key, owner, lease_s, gone_fence=seen[1])
    return claim


def _take(
    run_id: str, node_key: str, owner: str | None, lease_s: float | None, gone_fence: int
) -> tuple[Claim, tuple[Any, ...] | None]:
    now = timezone.now()
    params = {
        "run": _db_uuid(run_id),
        "key": node_key,
        "now": _db_time(now),
        "owner": owner or lease.owner(),
        "expires": _db_time(lease.expiry(now, lease_s)),
        "gone_fence": gone_fence,
    }
    # (its commit need not wait for the disk: see _CLAIM)
    seen = _sql(_SEEN, dialect.lazy_commit_sql())
    rows = dialect.chain(
        [("seen", seen), ("claimed", _sql(_CLAIM)), ("started", _sql(_START))],
        _sql(_TAKEN),
        params,
    )
    if not rows:
        return Claim("missing"), None
    row = rows[0]
    status, run_status, claimed = row[0], row[3], row[4 : 4 + len(_NODE_FIELDS)]
    if claimed[0] is None:
        return Claim(_why_not(status, run_status)), row
    node_run = _from_row(NodeRun, _NODE_FIELDS, claimed)
    node_run.run = _from_row(FlowRun, _RUN_FIELDS, row[4 + len(_NODE_FIELDS) : -2])
    node_run.run.status = RunStatus.RUNNING  # (the statement has made it so if it was queued)
    outputs = json.loads(row[-1]) if row[-1] else {}
    return Claim("execute", node_run, status == NodeStatus.RUNNING, outputs, row[-2]), row


def _why_not(status: str, run_status: str) -> str:
    if status == NodeStatus.SUCCEEDED:
        return "done"
    if run_status not in ACTIVE_RUN_STATUSES or status not in (
        NodeStatus.PENDING,
        NodeStatus.RUNNING,
    ):
        return "stop"
    return "busy"  # (or pending again by a retry since: its retry message takes it)


# --- finishing a node ------------------------------------------------------------------------
#: The fields a finished node may record beside its status.
_FINISH_FIELDS = frozenset(
    {"rows_in", "rows_out", "rows_out_by_port", "output_ref", "error", "traceback", "partitioned"}
)

_FINISH = """
UPDATE {node} SET status = %(status)s, finished_at = %(now)s, duration_ms = %(duration_ms)s,
    lease_owner = '', lease_expires_at = NULL{figures}
WHERE id = %(id)s AND fence = %(fence)s AND status = 'running'
RETURNING id
"""
# The run's last task: close the run when every other node has succeeded.
_CLOSE = """
UPDATE {run} SET status = 'succeeded', finished_at = %(now)s,
    started_at = COALESCE(started_at, %(now)s)
WHERE id = %(run)s AND status IN ('queued', 'running') AND EXISTS (SELECT 1 FROM finished)
  AND NOT EXISTS (SELECT 1 FROM {node} AS x
                  WHERE x.run_id = %(run)s AND x.id <> %(id)s AND x.status <> 'succeeded')
RETURNING id
"""


def duration_ms(started_at: datetime | None, finished_at: datetime) -> int | None:
    """A node run's duration as recorded."""
    if started_at is None:
        return None
    return int((finished_at - started_at).total_seconds() * 1000)


def finish_node(node_run: NodeRun, status: str, *, close: bool = False, **fields: Any) -> bool:
    """Move the node, running under ``node_run.fence``, to a final status with its figures
    (``rows_in``, ``rows_out``, ``rows_out_by_port``, ``output_ref``, ``error``, ``traceback``)
    and end its lease.
    False when it was no longer running under that fence (cancelled, failed by a timeout,
    taken over).

    ``close``: this is the run's last task, and the same statement closes the run when every
    node has succeeded; otherwise the run fails. The run's end is announced once.
    """
    unknown = set(fields) - _FINISH_FIELDS
    if unknown:
        raise TypeError(f"finish_node() got unexpected fields {sorted(unknown)}")
    if close and status != NodeStatus.SUCCEEDED:
        raise ValueError("only a node that succeeded closes its run (close=True)")
    if "error" in fields:
        fields["error"] = clip_error(fields["error"])
    now = timezone.now()
    figures = "".join(
        f", {NodeRun._meta.get_field(name).column} = %({name})s" for name in sorted(fields)
    )
    params = {
        **{
            name: NodeRun._meta.get_field(name).get_db_prep_value(value, connection)
            for name, value in fields.items()
        },
        "status": status,
        "now": _db_time(now),
        "duration_ms": duration_ms(node_run.started_at, now),
        "id": node_run.pk,
        "fence": node_run.fence,
        "run": _db_uuid(node_run.run_id),
    }
    steps = [("finished", _sql(_FINISH.replace("{figures}", figures)))]
    names: list[str] = []
    if close:
        # Closing the run also asks whether its end concerns the run-end hooks (flows.hooks).
        names, asked, values = hooks.concerns_sql(connection.vendor)
        steps.append(("closed", _sql(_CLOSE)))
        final = "SELECT (SELECT count(*) FROM finished), (SELECT count(*) FROM closed)"
        final += "".join(f", {expression}" for expression in asked)
        params.update(values)
    else:
        final = "SELECT (SELECT count(*) FROM finished), 0"
    done, closed, *answers = dialect.chain(steps, final, params)[0]
    if closed:
        concerns = dict(zip(names, (bool(a) for a in answers), strict=True))
        announce_finished(
            str(node_run.run_id), RunStatus.SUCCEEDED, _cached_run(node_run), concerns
        )
    elif done and close:
        close_run(str(node_run.run_id))  # not every node succeeded: it fails the run
    return bool(done)


def _cached_run(node_run: NodeRun) -> FlowRun | None:
    run = node_run._state.fields_cache.get("run")
    return run if isinstance(run, FlowRun) else None


def fail_node(node_run: NodeRun, error: str, traceback: str = "", skip: Iterable[str] = ()) -> bool:
    """The node failed for good: record it (with ``traceback``), skip the pending nodes
    ``skip`` (its descendants) and fail the run with ``node 'KEY' failed: ERROR``, in one
    transaction. False (and nothing changed) when it was no longer running under its fence."""
    error = clip_error(error)
    run_id = str(node_run.run_id)
    with transaction.atomic():
        if not _finish_orm(node_run, NodeStatus.FAILED, error=error, traceback=traceback):
            return False
        skip_nodes(run_id, skip)
        ended = _end_run(run_id, RunStatus.FAILED, f"node '{node_run.node_key}' failed: {error}")
    if ended:
        announce_finished(run_id, RunStatus.FAILED)
    return True


def _finish_orm(row: Leased, status: str, **fields: Any) -> int:
    now = timezone.now()
    return _mine(row).update(
        status=status,
        finished_at=now,
        duration_ms=duration_ms(row.started_at, now),
        lease_owner="",
        lease_expires_at=None,
        **fields,
    )


def retry_node(node_run: Leased, error: str, delay_s: float) -> bool:
    """Put a failed attempt of a node run (or partition) back to pending (its error kept) and
    end its lease, before the task is retried. The heartbeat is set to the retry time, so that
    the reaper does not take the wait for a stall. False when it was no longer running under
    its fence.

    A partition's fan-out node runs (renewed only by running partitions) are held, in the same
    transaction, at least until the retry time plus a lease's TTL."""
    now = timezone.now()
    with transaction.atomic():
        retried = _mine(node_run).update(
            status=NodeStatus.PENDING,
            error=clip_error(error),
            heartbeat_at=now + timedelta(seconds=delay_s),
            lease_owner="",
            lease_expires_at=None,
        )
        if retried and isinstance(node_run, PartitionRun):
            NodeRun.objects.filter(
                run_id=node_run.run_id, node_key__in=node_run.nodes, status=NodeStatus.RUNNING
            ).update(lease_expires_at=_renewed(now + timedelta(seconds=delay_s)))
    return bool(retried)


def skip_nodes(run_id: str, node_keys: Iterable[str]) -> int:
    return NodeRun.objects.filter(
        run_id=run_id, node_key__in=list(node_keys), status=NodeStatus.PENDING
    ).update(status=NodeStatus.SKIPPED, finished_at=timezone.now())


# --- while a node runs -----------------------------------------------------------------------
Leased = NodeRun | PartitionRun


def _mine(row: Leased) -> Any:
    """The node run (or partition) while it runs under ``row.fence`` (a queryset of it, or of
    nothing)."""
    return type(row)._default_manager.filter(pk=row.pk, fence=row.fence, status=NodeStatus.RUNNING)


def _renewed(now: datetime) -> Case:
    """The lease's expiry moved to now + TTL (never earlier than it was)."""
    expires = lease.expiry(now)
    return Case(
        When(lease_expires_at__gt=expires, then=F("lease_expires_at")), default=Value(expires)
    )


def heartbeat(node_run: NodeRun, **progress: Any) -> bool:
    """Renew the node's lease (and record ``rows_in``/``rows_out`` so far). False when it is no
    longer running under its fence."""
    now = timezone.now()
    return bool(
        _mine(node_run).update(heartbeat_at=now, lease_expires_at=_renewed(now), **progress)
    )


# A checkpoint saved by the node (or partition) running under its fence, its lease renewed.
_SAVE_CHECKPOINT = """
UPDATE {table} SET checkpoint = %(value)s, heartbeat_at = %(now)s, lease_expires_at = {renewed}
WHERE id = %(id)s AND fence = %(fence)s AND status = 'running'{lazy}
"""
# The lease's expiry moved to ``expires`` (never earlier than it was), as ``_renewed``.
_RENEWED = "CASE WHEN lease_expires_at > %(expires)s THEN lease_expires_at ELSE %(expires)s END"


def save_checkpoint(node_run: Leased, value: Any) -> bool:
    """Store where a re-delivered node (or partition) resumes from (and renew its lease). False
    when it is no longer running under its fence.

    Its commit does not wait for the disk (``dialect.lazy_commit_sql``): a checkpoint lost in a
    crash of the database server leaves the one before, from which the node resumes as
    correctly, re-doing a little more (``http_post`` re-sends those batches with the same
    Idempotency-Key)."""
    now = timezone.now()
    model = type(node_run)
    sql = _leased_sql(_SAVE_CHECKPOINT, model, connection.vendor, dialect.lazy_commit_sql())
    params = {
        # (``get_db_prep_save``: ``None`` is SQL NULL, as saving the model stores it)
        "value": model._meta.get_field("checkpoint").get_db_prep_save(value, connection),
        "now": _db_time(now),
        "expires": _db_time(lease.expiry(now)),
        "id": node_run.pk,
        "fence": node_run.fence,
    }
    return bool(dialect.update(sql, params))


@functools.cache
def _leased_sql(text: str, model: type[Any], _vendor: str, lazy: str, **more: str) -> str:
    return dialect.render(text, table=model._meta.db_table, renewed=_RENEWED, lazy=lazy, **more)


def heartbeat_many(
    leases: Mapping[int, int], model: type[NodeRun] | type[PartitionRun] = NodeRun
) -> set[int]:
    """Renew the leases of several node runs (or partitions: ``model``), id -> fence, in one
    statement; the ids still held (a missing one was taken over, or has ended)."""
    if not leases:
        return set()
    held = Q()
    for pk, fence in leases.items():
        held |= Q(pk=pk, fence=fence)
    now = timezone.now()
    mine = model._default_manager.filter(held, status=NodeStatus.RUNNING)
    if mine.update(heartbeat_at=now, lease_expires_at=_renewed(now)) == len(leases):
        return set(leases)
    return set(mine.values_list("pk", flat=True))


# Rows added to node runs running under their fences (``{held}``: each one's id and fence),
# their leases renewed.
_ADD_ROWS = """
UPDATE {table} SET heartbeat_at = %(now)s, lease_expires_at = {renewed},
    rows_in = rows_in + CASE {rows_in} ELSE 0 END,
    rows_out = rows_out + CASE {rows_out} ELSE 0 END
WHERE status = 'running' AND ({held}){lazy}
"""


def add_rows(deltas: Mapping[NodeRun, tuple[int, int]]) -> int:
    """Add (rows in, rows out) to several node runs running under their fences, and renew
    their leases, in one statement.

    The rows are locked in whatever order the plan visits them, so two such statements on the
    same rows may deadlock; PostgreSQL then fails one, which progress writers skip. Progress
    is only shown (the join records the exact rows): its commit does not wait for the disk
    (``dialect.lazy_commit_sql``), so the rows' locks are held for less time."""
    if not deltas:
        return 0
    count = len(deltas)
    sql = _leased_sql(
        _ADD_ROWS, NodeRun, connection.vendor, dialect.lazy_commit_sql(),
        rows_in=" ".join(f"WHEN id = %(id_{i})s THEN %(in_{i})s" for i in range(count)),
        rows_out=" ".join(f"WHEN id = %(id_{i})s THEN %(out_{i})s" for i in range(count)),
        held=" OR ".join(f"(id = %(id_{i})s AND fence = %(fence_{i})s)" for i in range(count)),
    )  # fmt: skip
    now = timezone.now()
    params: dict[str, Any] = {"now": _db_time(now), "expires": _db_time(lease.expiry(now))}
    for i, (node_run, (rows_in, rows_out)) in enumerate(deltas.items()):
        params.update({f"id_{i}": node_run.pk, f"fence_{i}": node_run.fence,
                       f"in_{i}": rows_in, f"out_{i}": rows_out})  # fmt: skip
    return dialect.update(sql, params)


def hand_over(node_run: NodeRun, owner: str, lease_s: float) -> bool:
    """Give the node's lease, fence unchanged, to ``owner`` for ``lease_s`` seconds (a source
    handing its stretch to the tasks of its fan-out). False when the node is no longer running
    under its fence, or its run is no longer active (a run cancelled while its source planned
    its partitions: nothing is handed over, and the source is the caller's to end)."""
    mine = _mine(node_run).filter(run__status__in=ACTIVE_RUN_STATUSES)
    return bool(mine.update(lease_owner=owner, lease_expires_at=lease.expiry(None, lease_s)))


def mark_partitioned(node_runs: Iterable[NodeRun]) -> int:
    """Record that these node runs, held under their fences, are run partition by partition
    (a source handing its work to its fan-out, and the stretch after it)."""
    held = Q()
    for node_run in node_runs:
        held |= Q(pk=node_run.pk, fence=node_run.fence)
    return NodeRun.objects.filter(held, status=NodeStatus.RUNNING).update(partitioned=True)


# --- partitions ------------------------------------------------------------------------------
@dataclass
class PartitionClaim:
    """The outcome of taking a partition, as :class:`Claim` for a node: ``execute`` (with the
    partition under its new fence; ``took_over`` when a previous owner died or its lease ran
    out), ``done``, ``busy``, ``stop`` or ``missing``."""

    outcome: str
    partition: PartitionRun | None = None
    took_over: bool = False
    #: The connections' version as the claim read it (see :class:`Claim`).
    connections: str | None = None
    #: The node runs the partition executes, of those asked for, by key (with their fences).
    node_runs: dict[str, NodeRun] = dataclasses.field(default_factory=dict)


def add_partitions(
    run_id: str,
    source: str,
    indexes: Iterable[int],
    nodes: list[str],
    task: Mapping[str, Any] | None = None,
) -> None:
    """Record partitions of a source's output, pending, as they are planned (one already
    recorded is left as it is: a re-planned fan-out). ``task``: the task that executes the
    partition, as it is sent (one partition), for the reaper to send it again."""
    PartitionRun.objects.bulk_create(
        [
            PartitionRun(run_id=run_id, source=source, index=i, nodes=nodes, task=task)
            for i in indexes
        ],
        ignore_conflicts=True,
    )


# The partition as it is now, and its run's status.
_SEEN_PARTITION = """
SELECT p.id, p.status, p.fence, p.lease_owner, r.status AS run_status
FROM {partition} AS p JOIN {run} AS r ON r.id = p.run_id
WHERE p.run_id = %(run)s AND p.source = %(source)s AND p.{index} = %(index)s
"""
# Claim it, as ``_CLAIM`` claims a node.
_CLAIM_PARTITION = """
UPDATE {partition} SET
    status = 'running', attempts = attempts + 1, deliveries = deliveries + 1,
    workers_lost = workers_lost + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
    fence = fence + 1, lease_owner = %(owner)s, lease_expires_at = %(expires)s,
    started_at = %(now)s, heartbeat_at = %(now)s, finished_at = NULL
WHERE run_id = %(run)s AND source = %(source)s AND {index} = %(index)s
  AND (status = 'pending'
       OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < %(now)s
                                   OR fence = %(gone_fence)s)))
  AND EXISTS (SELECT 1 FROM {run} WHERE id = %(run)s AND status IN ('queued', 'running'))
RETURNING {partition_columns}
"""
# What was seen; when claimed, the partition, its run, the connections' version and the node
# runs it executes (one row each; ``{keys}``: their placeholders).
_TAKEN_PARTITION = """
SELECT seen.status, seen.fence, seen.lease_owner, seen.run_status, claimed.*, {run_columns},
       CASE WHEN claimed.id IS NOT NULL THEN {connections_version} END, {node_run_columns}
FROM seen
LEFT JOIN claimed ON true
LEFT JOIN {run} AS r ON claimed.id IS NOT NULL AND r.id = %(run)s
LEFT JOIN {node} AS n ON claimed.id IS NOT NULL AND n.run_id = %(run)s
                         AND n.node_key IN ({keys})
ORDER BY n.id
"""
# What executing a partition reads of it (its task and traceback stay deferred).
_PARTITION_FIELDS = (
    "id", "run", "source", "index", "nodes", "status", "attempts", "deliveries", "workers_lost",
    "resends", "resent_at", "rows", "failed_node", "error", "started_at", "finished_at",
    "heartbeat_at", "duration_ms", "fence", "lease_owner", "lease_expires_at", "checkpoint",
)  # fmt: skip
# What executing a partition reads of the node runs it executes.
_PARTITION_NODE_FIELDS = ("id", "run", "node_key", "node_type", "status", "fence", "started_at")


@functools.cache
def _partition_sql(text: str, _vendor: str, keys: int = 0) -> str:
    quote = connection.ops.quote_name
    return dialect.render(
        text,
        partition=PartitionRun._meta.db_table,
        node=NodeRun._meta.db_table,
        run=FlowRun._meta.db_table,
        index=quote(PartitionRun._meta.get_field("index").column),
        partition_columns=", ".join(
            quote(PartitionRun._meta.get_field(n).column) for n in _PARTITION_FIELDS
        ),
        run_columns=_columns(FlowRun, _RUN_FIELDS, "r"),
        node_run_columns=_columns(NodeRun, _PARTITION_NODE_FIELDS, "n"),
        connections_version=nodes_models.version_sql(),
        keys=", ".join(f"%(key_{i})s" for i in range(keys)) or "NULL",
    )


def take_partition(
    run_id: str,
    source: str,
    index: int,
    *,
    owner: str | None = None,
    node_keys: Sequence[str] = (),
) -> PartitionClaim:
    """Take a partition for execution under a new lease, as :func:`take` takes a node: a pending
    partition, or a running one whose lease has run out or whose owner is a process of this
    machine that no longer exists, in an active run (``running``, ``attempts + 1``,
    ``deliveries + 1``, ``fence + 1``; a take-over also counts ``workers_lost + 1``).

    One statement (PostgreSQL) claims it and reads it, its run (``partition.run``), the
    connections' version (``connections``) and those of the node runs ``node_keys`` that it
    executes (``node_runs``, by key); a second one when its owner is found gone."""
    claim, seen = _take_partition(run_id, source, index, owner, node_keys, gone_fence=-1)
    if claim.outcome == "busy" and seen is not None and lease.gone(seen[2]):
        logger.warning("run %s %s partition %s: its owner %s is gone", run_id, source, index,
                       seen[2])  # fmt: skip
        claim, seen = _take_partition(run_id, source, index, owner, node_keys, gone_fence=seen[1])
    if claim.outcome == "stop" and seen is not None and seen[0] == NodeStatus.PENDING:
        # Recorded as its source went on planning after the run had ended (``_end_run``
        # cancelled those recorded before): it never starts.
        PartitionRun.objects.filter(
            run_id=run_id, source=source, index=index, status=NodeStatus.PENDING
        ).update(status=NodeStatus.CANCELLED, finished_at=timezone.now(), error="run ended")
    return claim


def _take_partition(
    run_id: str,
    source: str,
    index: int,
    owner: str | None,
    node_keys: Sequence[str],
    gone_fence: int,
) -> tuple[PartitionClaim, tuple[Any, ...] | None]:
    now = timezone.now()
    params = {
        "run": _db_uuid(run_id),
        "source": source,
        "index": index,
        "now": _db_time(now),
        "owner": owner or lease.owner(),
        "expires": _db_time(lease.expiry(now)),
        "gone_fence": gone_fence,
        **{f"key_{i}": key for i, key in enumerate(node_keys)},
    }
    vendor = connection.vendor
    rows = dialect.chain(
        [
            ("seen", _partition_sql(_SEEN_PARTITION, vendor)),
            ("claimed", _partition_sql(_CLAIM_PARTITION, vendor)),
        ],
        _partition_sql(_TAKEN_PARTITION, vendor, len(node_keys)),
        params,
    )
    if not rows:
        return PartitionClaim("missing"), None
    row = rows[0]
    status, run_status = row[0], row[3]
    claimed = row[4 : 4 + len(_PARTITION_FIELDS)]
    if claimed[0] is None:
        return PartitionClaim(_why_not(status, run_status)), row
    partition = _from_row(PartitionRun, _PARTITION_FIELDS, claimed)
    at = 4 + len(_PARTITION_FIELDS)
    run = _from_row(FlowRun, _RUN_FIELDS, row[at : at + len(_RUN_FIELDS)])
    partition.run = run
    at += len(_RUN_FIELDS)
    connections = row[at]
    node_runs = {}
    for each in rows:
        if each[at + 1] is not None:
            node_run = _from_row(NodeRun, _PARTITION_NODE_FIELDS, each[at + 1 :])
            node_run.run = run
            node_runs[node_run.node_key] = node_run
    taken = PartitionClaim("execute", partition, status == NodeStatus.RUNNING)
    taken.connections, taken.node_runs = connections, node_runs
    return taken, row


def mark_resent(partition: PartitionRun, now: datetime) -> bool:
    """Record that a lost partition's task is sent again (``partitions.resend_lost``): its
    ``resends`` counted, ``resent_at`` set to ``now`` (its heartbeat left as it was: a resend
    is no sign of life, ``reaper.partitions_live``); it stays running under its old fence, for
    the next delivery to take over. False when it has changed since it was read (another
    reaper sent it, it was taken over or has ended)."""
    return bool(
        PartitionRun.objects.filter(
            pk=partition.pk,
            fence=partition.fence,
            status=NodeStatus.RUNNING,
            resent_at=partition.resent_at,
            lease_expires_at__lt=now,
        ).update(resent_at=now, resends=F("resends") + 1)
    )


def unmark_resent(partition: PartitionRun, now: datetime) -> bool:
    """Undo :func:`mark_resent` (``resent_at`` back to what it was) when the task could not be
    sent: the next reaper's pass sends it, rather than one a staleness later."""
    return bool(
        PartitionRun.objects.filter(
            pk=partition.pk, fence=partition.fence, status=NodeStatus.RUNNING, resent_at=now
        ).update(resent_at=partition.resent_at, resends=F("resends") - 1)
    )


def finish_partition(partition: PartitionRun, status: str, **fields: Any) -> bool:
    """Move a partition running under its fence to a final status (``rows``, ``error``,
    ``traceback``, ``failed_node``) and end its lease. False when it was no longer running under
    that fence."""
    unknown = set(fields) - _PARTITION_FINISH_FIELDS
    if unknown:
        raise TypeError(f"finish_partition() got unexpected fields {sorted(unknown)}")
    if "error" in fields:
        fields["error"] = clip_error(fields["error"])
    now = timezone.now()
    get_field = PartitionRun._meta.get_field
    quote = connection.ops.quote_name
    figures = "".join(f", {quote(get_field(n).column)} = %({n})s" for n in sorted(fields))
    sql = _leased_sql(_FINISH_PARTITION, PartitionRun, connection.vendor, "", figures=figures)
    params = {
        **{name: get_field(name).get_db_prep_save(v, connection) for name, v in fields.items()},
        "status": status,
        "now": _db_time(now),
        "duration_ms": duration_ms(partition.started_at, now),
        "id": partition.pk,
        "fence": partition.fence,
    }
    return bool(dialect.update(sql, params))


#: The fields a finished partition may record beside its status.
_PARTITION_FINISH_FIELDS = frozenset({"rows", "error", "traceback", "failed_node"})

_FINISH_PARTITION = """
UPDATE {table} SET status = %(status)s, finished_at = %(now)s, duration_ms = %(duration_ms)s,
    lease_owner = '', lease_expires_at = NULL{figures}
WHERE id = %(id)s AND fence = %(fence)s AND status = 'running'
"""


def fail_fan_out(
    node_run: NodeRun,
    error: str,
    traceback: str,
    others: Iterable[NodeRun],
    skip: Iterable[str],
    partition: PartitionRun | None = None,
) -> bool:
    """A node run partition by partition failed for good (in ``partition``, then recorded
    ``partition N: ERROR`` on both): in one transaction, record it failed, end the other running
    node runs of its fan-out ``others`` (skipped when listed in ``skip``, its descendants, else
    cancelled), skip the pending nodes ``skip`` and fail the run. A combinable node's node run
    (pending for its combine after the partitions) fails from pending. False (nothing changed)
    when the partition, or else the node run, was no longer running under its fence (or
    pending, as read)."""
    if partition is not None:
        error = f"partition {partition.index}: {error}"
    error = clip_error(error)
    run_id = str(node_run.run_id)
    skip = set(skip)
    with transaction.atomic():
        # The run's row first, as a run's end (_end_run) takes it: never a partition or a
        # node run held while waiting for it.
        list(FlowRun.objects.select_for_update().filter(id=run_id).values_list("id", flat=True))
        if partition is not None:
            mine = _finish_orm(
                partition,
                NodeStatus.FAILED,
                error=error,
                traceback=traceback,
                failed_node=node_run.node_key,
            )
            if mine and not _finish_orm(
                node_run, NodeStatus.FAILED, error=error, traceback=traceback
            ):
                # A combinable node's partial failed: its node run waits for the combine.
                _fail_waiting(node_run, error, traceback)
        elif node_run.status == NodeStatus.PENDING:
            # A combinable node whose partitions the join found missing.
            mine = _fail_waiting(node_run, error, traceback)
        else:
            mine = _finish_orm(node_run, NodeStatus.FAILED, error=error, traceback=traceback)
        if not mine:
            return False
        stopped = f"stopped: node '{node_run.node_key}' failed"
        for other in others:
            if other.pk == node_run.pk:
                continue
            if other.node_key in skip:
                _finish_orm(other, NodeStatus.SKIPPED)
            else:
                _finish_orm(other, NodeStatus.CANCELLED, error=stopped)
        skip_nodes(run_id, skip)
        ended = _end_run(run_id, RunStatus.FAILED, f"node '{node_run.node_key}' failed: {error}")
    if ended:
        announce_finished(run_id, RunStatus.FAILED)
    return True


def _fail_waiting(node_run: NodeRun, error: str, traceback: str) -> int:
    """Fail a combinable node's node run, pending for its combine after the partitions."""
    return NodeRun.objects.filter(pk=node_run.pk, status=NodeStatus.PENDING).update(
        status=NodeStatus.FAILED, error=error, traceback=traceback, finished_at=timezone.now()
    )


# --- runs ------------------------------------------------------------------------------------
def finish_run(run_id: str, status: str, error: str = "") -> bool:
    """Move an active run to a final status (its pending nodes skipped; its unfinished
    partitions and the node runs its fan-outs hold cancelled); False when it had already
    finished. The run's end is announced once."""
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            with transaction.atomic():
                changed = _end_run(run_id, status, error)
            break
        except OperationalError as exc:
            # PostgreSQL broke a deadlock (SQLSTATE 40P01) by failing this transaction (e.g.
            # against a heartbeat updating the fan-out's node runs in another order): nothing
            # of it was kept, so it is tried again; inside a caller's transaction it cannot be.
            deadlock = getattr(exc.__cause__, "sqlstate", None) == "40P01"
            if not deadlock or attempt == DEADLOCK_RETRIES or connection.in_atomic_block:
                raise
            logger.warning("run %s: its end hit a deadlock; trying again", run_id)
    if changed:
        announce_finished(run_id, status)
    return changed


#: How often a run's end is tried again after PostgreSQL broke a deadlock by failing it.
DEADLOCK_RETRIES = 3


def _end_run(run_id: str, status: str, error: str) -> bool:
    now = timezone.now()
    changed = FlowRun.objects.filter(id=run_id, status__in=ACTIVE_RUN_STATUSES).update(
        status=status, finished_at=now, error=clip_error(error)
    )
    if changed:
        FlowRun.objects.filter(id=run_id, started_at__isnull=True).update(started_at=now)
        NodeRun.objects.filter(run_id=run_id, status=NodeStatus.PENDING).update(
            status=NodeStatus.SKIPPED, finished_at=now
        )
        # Its partitions not yet finished end with it, then the node runs its fan-outs hold
        # (a delivery still executing one finds it no longer running under its fence, and
        # changes nothing more; the join finds the run ended). Lock order: the run's row, its
        # partitions, then its running node runs in id order; a partition's retry (partition,
        # then its fan-out's node runs) takes them in the same order, and a partition's failure
        # (fail_fan_out) locks the run's row first. Node runs before partitions here deadlocked
        # with a retry; a deadlock left with a single-statement heartbeat is retried by
        # finish_run.
        PartitionRun.objects.filter(
            run_id=run_id, status__in=(NodeStatus.PENDING, NodeStatus.RUNNING)
        ).update(
            status=NodeStatus.CANCELLED,
            finished_at=now,
            error="run ended",
            lease_owner="",
            lease_expires_at=None,
        )
        held = NodeRun.objects.filter(
            run_id=run_id, status=NodeStatus.RUNNING, lease_owner=lease.FAN_OUT
        )
        for node_run in held.only("pk", "fence", "started_at").order_by("pk"):
            _finish_orm(node_run, NodeStatus.CANCELLED, error="run ended")
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


def announce_finished(
    run_id: str,
    status: str,
    run: FlowRun | None = None,
    concerns: hooks.Concerns | None = None,
) -> None:
    """A run has just ended (called once, by the state change that ended it): the receivers of
    the ``run_finished`` signal (alerts) and the callbacks of ``flows.hooks`` (triggers, run
    slots) hear of it; their errors are logged, never raised into the run's own bookkeeping.
    ``run``: the run's instance when the caller has it (saves a query); ``concerns``: what the
    hooks' concerns answered, when the state change asked them (those answering no are not
    called, and the signal's receivers are given the answers).

    Those waiting for the run (``flows.runend``) hear first, once the change commits."""
    runend.publish(run_id)
    telemetry.run_finished(run_id, status, run)
    hooks.run_finished(run_id, run, concerns)
    for receiver, result in run_finished.send_robust(
        FlowRun, run_id=run_id, status=status, concerns=concerns
    ):
        if isinstance(result, Exception):
            logger.error("run %s: %s failed on run_finished: %s", run_id, receiver, result)


def mark_redispatched(run_id: str, seen: datetime | None) -> int:
    """Count a re-dispatch of a stalled run whose last re-dispatch was at ``seen``; the new
    count (0 if the run is not active, or another reaper has just re-dispatched it)."""
    with transaction.atomic():
        changed = FlowRun.objects.filter(
            id=run_id, status__in=ACTIVE_RUN_STATUSES, redispatched_at=seen
        ).update(redispatches=F("redispatches") + 1, redispatched_at=timezone.now())
        if not changed:
            return 0
        return FlowRun.objects.values_list("redispatches", flat=True).get(id=run_id)


# --- values in and out of raw statements (model metadata; no backend named here) -------------
def _db_uuid(value: Any) -> Any:
    return FlowRun._meta.pk.get_db_prep_value(value, connection)


def _db_time(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _from_row(model: type[Any], names: tuple[str, ...], values: Sequence[Any]) -> Any:
    """A model instance from raw column values of the fields ``names`` (the other fields
    deferred), converted as the ORM converts them, made as ``Model.from_db`` makes it."""
    alias = connection.alias
    slots, columns = _conversions(model, names, alias, connection.vendor)
    converted = list(values)
    for position, column, converters in columns:
        value = converted[position]
        if value is not None:
            for converter in converters:
                value = converter(value, column, connection)
            converted[position] = value
    # Every concrete field in the model's order: its value, or DEFERRED (``from_db`` finds
    # which is which by searching the names for each field, on every row).
    new = model(*[DEFERRED if i is None else converted[i] for i in slots])
    new._state.adding = False
    new._state.db = alias
    return new


@functools.cache
def _conversions(model: type[Any], names: tuple[str, ...], _alias: str, _vendor: str) -> Any:
    """For ``_from_row``: for each concrete field in the model's order, its position in
    ``names`` (None: deferred); and the converters of each field that has some."""
    fields = [model._meta.get_field(name) for name in names]
    position = {field.attname: i for i, field in enumerate(fields)}
    slots = tuple(position.get(f.attname) for f in model._meta.concrete_fields)
    columns = []
    for i, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            columns.append((i, column, converters))
    return slots, tuple(columns)
