"""The Python API of the platform: start, wait for and cancel runs."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import current_app
from celery.exceptions import CeleryError
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from flowplatform import telemetry
from flowplatform.audit.context import Source
from flowplatform.audit.models import Action, AuditEntry
from flowplatform.audit.record import entry
from flowplatform.jsonfields import same_json
from flows import admission, dialect, transitions
from flows.access import check_run
from flows.engine.canvas import build_canvas, node_task_id
from flows.engine.failures import NodeFailed
from flows.graph import Graph
from flows.models import Flow, FlowRun, FlowVersion, NodeRun, NodeStatus, RunStatus, Trigger
from flows.runend import RunEndListener
from flows.versions import ensure_current_version

logger = logging.getLogger("flowplatform.engine")


class DispatchError(Exception):
    """The run was recorded but could not be handed to the broker; it has been failed."""


class RerunError(Exception):
    """A rerun was asked of a node that cannot be rerun from (unknown, or upstream not reusable)."""


def start_run(
    flow_or_slug: Flow | str,
    params: dict[str, Any] | None = None,
    trigger: str = Trigger.API,
    *,
    interval_start: datetime | None = None,
    interval_end: datetime | None = None,
    version: FlowVersion | None = None,
    reuse: dict[str, NodeRun] | None = None,
    user: Any = None,
    payload: Any = None,
) -> FlowRun:
    """Validate the flow, snapshot its version, record a queued run and dispatch it on commit.

    ``version`` pins an existing version (re-runs); by default the flow's current graph is used.
    ``reuse`` maps node keys to succeeded node runs of an earlier run whose outputs this run
    takes instead of executing those nodes.
    Raises ``Flow.DoesNotExist`` for an unknown slug and ``FlowValidationError`` for an invalid
    flow (nothing is recorded then). With ``user`` (whoever starts it: a person, or a
    schedule's owner) raises ``AccessDenied`` unless that user may run the flow and use every
    connection it names; without one the caller is the operator. ``payload`` (JSON) is what
    the trigger sent: a webhook's body, an arriving file's name.
    """
    flow = flow_or_slug if isinstance(flow_or_slug, Flow) else Flow.objects.get(slug=flow_or_slug)
    reuse = reuse or {}
    if user is not None:
        check_run(user, flow)
    version = version or ensure_current_version(flow)
    if user is not None:
        check_run(user, flow, version.definition["nodes"])
    with telemetry.run_span(flow.slug, trigger) as span:
        run = FlowRun(
            flow=flow,
            version=version,
            trigger=trigger,
            params=params or {},
            interval_start=interval_start,
            interval_end=interval_end,
            payload=payload,
            queue=flow.queue,
            priority=flow.priority,
            trace_id=span.trace_id,
        )
        waits = run.limited = admission.limited(flow)
        if not waits:
            run.dispatched_at = timezone.now()
        node_runs = [
            _node_run(run, index, node, reuse.get(node["key"]))
            for index, node in enumerate(version.definition["nodes"])
        ]
        # (its audit entry in the same statement; rerun() records its own entry)
        _insert(run, node_runs, _run_entry(Action.RUN, run) if trigger != Trigger.RERUN else None)
        span.started(run)
        only = {n["key"] for n in version.definition["nodes"]} - set(reuse)
        # Inside a caller's transaction, sent once it commits (in the run's trace); otherwise
        # now. A run that a slot limit applies to waits for its turn (flows.admission).
        if waits:
            transaction.on_commit(admission.admit_waiting)
        else:
            transaction.on_commit(span.bind(lambda: dispatch(run, only=only if reuse else None)))
    if current_app.conf.task_always_eager:
        run.refresh_from_db()  # it has run in-process already
    return run


def _record_run(action: str, run: FlowRun, **details: Any) -> None:
    """Record the audit entry of starting, cancelling or re-running ``run``."""
    _run_entry(action, run, **details).save(force_insert=True)


def _run_entry(action: str, run: FlowRun, **details: Any) -> AuditEntry:
    """The audit entry of starting, cancelling or re-running ``run`` (not yet saved)."""
    source = Source.SCHEDULE if run.trigger == Trigger.SCHEDULE else Source.SYSTEM
    facts = {"flow": run.flow.slug, "flow_id": run.flow_id, "version": run.version.number}
    facts.update(trigger=run.trigger, **details)
    return entry(action, run, details=facts, default_source=source)


def _insert(run: FlowRun, node_runs: list[NodeRun], audit: AuditEntry | None = None) -> None:
    """Save a new run, its node runs and the audit entry of its start together (on PostgreSQL
    in one statement)."""
    run_fields = list(FlowRun._meta.concrete_fields)
    node_fields = [f for f in NodeRun._meta.concrete_fields if not f.primary_key]
    params: dict[str, Any] = {}

    def placeholders(prefix: str, values: list[Any]) -> str:
        names = [f"{prefix}_{i}" for i in range(len(values))]
        params.update(zip(names, values, strict=True))
        return "(" + ", ".join(f"%({name})s" for name in names) + ")"

    run_row = placeholders("r", _db_values(run, run_fields))
    node_rows = [
        placeholders(f"n{i}", _db_values(node_run, node_fields))
        for i, node_run in enumerate(node_runs)
    ]
    # Names come from model metadata; every value is bound.
    insert_run = (
        f"INSERT INTO {FlowRun._meta.db_table} ({', '.join(f.column for f in run_fields)}) "  # noqa: S608
        f"VALUES {run_row}"
    )
    insert_nodes = (
        f"INSERT INTO {NodeRun._meta.db_table} ({', '.join(f.column for f in node_fields)}) "  # noqa: S608
        f"VALUES {', '.join(node_rows)}"
    )
    steps = [("run", insert_run)]
    if audit is not None:
        audit_fields = [f for f in AuditEntry._meta.concrete_fields if not f.primary_key]
        audit_row = placeholders("a", _db_values(audit, audit_fields))
        steps.append(
            (
                "audit",
                f"INSERT INTO {AuditEntry._meta.db_table} "  # noqa: S608
                f"({', '.join(f.column for f in audit_fields)}) VALUES {audit_row}",
            )
        )
    dialect.chain(steps, insert_nodes, params)
    run._state.adding = False
    for node_run in node_runs:
        node_run._state.adding = False


def _db_values(obj: Any, fields: list[Any]) -> list[Any]:
    # (this thread's connection itself: the ``connection`` proxy looks it up again on each of
    # the hundreds of attribute reads the fields make, a sixth of this function's CPU)
    db = connections[DEFAULT_DB_ALIAS]
    return [field.get_db_prep_save(field.pre_save(obj, True), db) for field in fields]


def _node_run(run: FlowRun, index: int, node: dict[str, Any], reused: NodeRun | None) -> NodeRun:
    node_run = NodeRun(run=run, node_key=node["key"], node_type=node["type"], position=index)
    if reused is not None:
        node_run.status = NodeStatus.SUCCEEDED
        node_run.rows_in, node_run.rows_out = reused.rows_in, reused.rows_out
        node_run.rows_out_by_port = reused.rows_out_by_port
        node_run.output_ref = reused.output_ref
        node_run.reused_from_id = reused.run_id
    return node_run


def dispatch(run: FlowRun, only: set[str] | None = None, generation: int = 0) -> None:
    """Send the run's canvas to the broker (or execute it in-process in embedded mode)."""
    canvas = build_canvas(
        str(run.id),
        run.version.definition,
        only=only,
        generation=generation,
        queue=run.queue,
    )
    try:
        canvas.apply_async()
    except NodeFailed:
        pass  # in-process execution re-raises a node's failure; the run already recorded it
    except (BrokerError, CeleryError, OSError, RedisError, RuntimeError) as exc:
        # RuntimeError: the Redis result backend gives up reconnecting with one.
        transitions.finish_run(str(run.id), RunStatus.FAILED, f"broker unavailable: {exc}")
        raise DispatchError(f"run {run.id} could not be dispatched: broker unavailable") from exc


def redispatch(run: FlowRun, generation: int) -> None:
    """Send again the part of a stalled run that has not succeeded."""
    pending = set(
        NodeRun.objects.filter(run=run)
        .exclude(status=NodeStatus.SUCCEEDED)
        .values_list("node_key", flat=True)
    )
    try:
        dispatch(run, only=pending, generation=generation)
    except DispatchError:
        logger.warning("run %s could not be re-dispatched: broker unavailable", run.id)


def revoke_run_tasks(run: FlowRun) -> None:
    """Revoke the queued tasks of a run's unfinished nodes (every dispatch generation)."""
    if current_app.conf.task_always_eager:
        return
    keys = NodeRun.objects.filter(run=run).exclude(status=NodeStatus.SUCCEEDED)
    ids = [
        node_task_id(str(run.id), key, generation)
        for key in keys.values_list("node_key", flat=True)
        for generation in range(run.redispatches + 1)
    ]
    if ids:
        try:
            current_app.control.revoke(ids)
        except (BrokerError, OSError) as exc:
            logger.warning(
                "run %s: tasks not revoked (%s); they will stop on their own", run.id, exc
            )


def wait_for_run(run: FlowRun, timeout: float = 600) -> FlowRun:
    """Block until the run finishes or ``timeout`` seconds pass; returns the refreshed run.

    It returns as soon as the run's end is published on the run-end channel
    (``flows.runend``), and looks at the run's status now and then anyway."""
    deadline = time.monotonic() + timeout
    with RunEndListener(str(run.id)) as ended:  # before the first read: no end is missed
        run.refresh_from_db()
        while not run.is_finished and (left := deadline - time.monotonic()) > 0:
            ended.wait(min(ended.poll_s, left))
            run.refresh_from_db()
    return run


def cancel_run(run: FlowRun) -> bool:
    """Cancel an active run: it ends ``cancelled`` at once, queued tasks are revoked, a running
    node stops at its next batch, and nodes that had not started are ``skipped``.
    Returns False when the run had already finished."""
    cancelled = transitions.finish_run(str(run.id), RunStatus.CANCELLED, "cancelled by request")
    if cancelled:
        _record_run(Action.CANCEL, run)
        revoke_run_tasks(run)
    run.refresh_from_db()
    return cancelled


def rerun(
    run: FlowRun, *, from_node: str | None = None, latest: bool = False, user: Any = None
) -> FlowRun:
    """Start a new run with the same params and data interval.

    With ``from_node`` (or, when the run failed, by default its first failed node) only that
    node and what depends on it run again; every other node reuses this run's output. Without
    a failed node or ``from_node`` the whole flow runs again. ``latest`` runs the flow's current
    version instead of this run's (reused nodes must be unchanged in it).
    """
    version = ensure_current_version(run.flow) if latest else run.version
    old_nodes = {n.node_key: n for n in run.node_runs.all()}
    if from_node is None:
        failed = [
            n
            for n in sorted(old_nodes.values(), key=lambda n: n.position)
            if n.status == NodeStatus.FAILED
        ]
        from_node = failed[0].node_key if failed else None
    reuse = _reusable(run, version, old_nodes, from_node) if from_node else {}
    new = start_run(
        run.flow,
        params=dict(run.params),
        trigger=Trigger.RERUN,
        interval_start=run.interval_start,
        interval_end=run.interval_end,
        version=version,
        reuse=reuse,
        user=user,
    )
    _record_run(Action.RERUN, new, rerun_of=str(run.id), from_node=from_node)
    return new


def _reusable(
    run: FlowRun, version: FlowVersion, old_nodes: dict[str, NodeRun], from_node: str
) -> dict[str, NodeRun]:
    graph = Graph.from_definition(version.definition)
    if from_node not in graph.keys:
        raise RerunError(f"node '{from_node}' is not in version {version.number} of the flow")
    rerun_keys = {from_node} | graph.descendants(from_node)
    old_specs = {n["key"]: n for n in run.version.definition["nodes"]}
    reuse = {}
    for node in version.definition["nodes"]:
        key = node["key"]
        if key in rerun_keys:
            continue
        old = old_nodes.get(key)
        if old is None or old.status != NodeStatus.SUCCEEDED or not old.output_ref:
            raise RerunError(f"node '{key}' did not succeed in run {run.id}: rerun from it instead")
        if not same_json(old_specs.get(key), node):
            raise RerunError(f"node '{key}' changed since run {run.id}: rerun from it instead")
        reuse[key] = old
    return reuse


def run_result(run: FlowRun, limit: int = 100) -> dict[str, Any]:
    """What a caller waiting on ``run`` gets: its status, error and the first ``limit``
    records of its last node's output (the node last in the flow's order that succeeded).

    Values are made JSON-safe (dates as ISO text, decimals as text)."""
    from django.core.serializers.json import DjangoJSONEncoder

    from flows.engine.handoff import read_output

    result: dict[str, Any] = {"run": str(run.id), "status": run.status}
    if run.error:
        result["error"] = run.error
    if run.status != RunStatus.SUCCEEDED:
        return result
    last = run.node_runs.exclude(output_ref="").order_by("-position").first()
    records: list[Any] = []
    if last is not None:
        for batch in read_output(last.output_ref):
            records.extend(list(batch)[: limit - len(records)])
            if len(records) >= limit:
                break
        result["node"] = last.node_key
    encoder = DjangoJSONEncoder()
    result["records"] = [
        {k: v if isinstance(v, str | int | float | bool | type(None) | list | dict)
         else encoder.default(v) for k, v in record.items()}
        for record in records
    ]  # fmt: skip
    return result
