"""Partitioned execution: a source cuts its output by row count and the stretch of partitionable
nodes after it runs once per partition, in parallel across workers.

When ``run_node`` takes a source with ``partition_rows`` (or one that partitions by default and
decides to in this run) that is followed by a *stretch* (a straight line of partitionable
nodes, each with one parent and alone in its level of the canvas), :func:`fan_out` takes the
nodes of the stretch too (leased by the fan-out, ``lease.FAN_OUT``), records them run
partition by partition (``NodeRun.partitioned``) and gives the source a replacement canvas::

    chord([produce_partitions(source, stretch)], join_partitions(source, stretch))

``produce_partitions`` runs the source and, as each partition is stored, records it
(``PartitionRun``, pending) and adds ``run_partition(i)`` to its own chord (``add_to_chord``),
so the other workers start on partition 0 while the source is still reading. A source that
plans slices (``SlicedSource.plan_slices``, e.g. ``sql_query`` with ``partition_column``) is
only planned there: each ``run_partition(i, slice)`` reads its slice itself.

A partition is executed as any node run is, through ``flows.transitions``: ``run_partition``
takes it (:func:`~flows.transitions.take_partition`: a fenced lease, a take-over when its
owner died), streams it through the whole stretch in one task, node after node in memory
(storing each node's partition output on the way; a pure node's is derived instead,
recomputed when read), and finishes it with the rows of each node. Its heartbeat renews its
own lease and those of the stretch's node runs. Inside a partition a node gets the
partition's own checkpoint (``http_post`` resumes after its last acknowledged batch of that
partition, with the same Idempotency-Key); a failure is retried after a backoff per the
failing node's policy (the partition alone, not the source), else it fails its node
(``partition N: ...``) and the run; the other partitions stop at their next batch. A cancelled
run stops every partition at its next batch.

The chord joins when the source and every partition are done; ``join_partitions`` writes each
node's manifest, sums the partitions' rows and finishes the stretch's node runs succeeded,
and the run's chain goes on past the stretch (its ``run_node`` tasks find those nodes done). In
embedded mode (eager) the partitions run one after the other inside ``produce_partitions``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, cast

from celery import Task, chord, current_app, shared_task, signature
from celery.canvas import Signature
from celery.exceptions import CeleryError, Ignore
from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Q
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from flowplatform import telemetry
from flows import transitions
from flows.engine import heartbeat
from flows.engine.executor import (
    PROGRESS_EVERY_S,
    CancelProbe,
    RowCounter,
    RunCancelled,
    build_node,
    execute_node,
    fan_out_rows,
    load_run,
    make_context,
    node_spec,
    partition_rows,
    run_fan_out_rows,
    version_of,
)
from flows.engine.failures import NodeFailed, message, next_retry, node_policy
from flows.engine.handoff import (
    MAX_PARTITIONS,
    BatchWriter,
    Part,
    SliceWriter,
    manifest_name,
    not_a_port,
    output_name,
    partial_name,
    port_manifest_name,
    port_output_name,
    port_ref,
    read_batches,
    read_output,
    slice_name,
    too_many_partitions,
    write_bytes,
    write_manifest,
    write_ports_manifest,
)
from flows.engine.heartbeat import Heartbeat
from flows.engine.lease import FAN_OUT
from flows.graph import Graph
from flows.models import (
    ACTIVE_RUN_STATUSES,
    FlowRun,
    NodeRun,
    NodeStatus,
    PartitionRun,
)
from nodes import redaction
from nodes.models import connections_read_at
from nodes.redaction import Redactor
from nodes.registry import registry
from nodes.sdk import Node, NodeError, PortBatch, capabilities, run_cache
from nodes.sdk.node import AnyBatch, per_port

logger = logging.getLogger("flowplatform.engine")


class PartitionStopped(Exception):
    """A partition task found its run already ended (failed or cancelled) and did nothing more."""


class _NodeRaised(Exception):
    """Carries an exception out of a fused stretch together with the node that raised it."""

    def __init__(self, node_key: str, error: BaseException) -> None:
        super().__init__(node_key)
        self.node_key = node_key
        self.error = error


# --- planning --------------------------------------------------------------------------------
def stretch_after(definition: dict[str, Any], key: str) -> list[str]:
    """The partitionable nodes that can run per partition of ``key``'s output, parents before
    children: a straight line of nodes each alone in its level of the canvas with one parent;
    after a node whose output is kept per port (``branch``), each of its children continues a
    line of its own (each route's stretch runs per partition, reading that partition's port)."""
    graph = Graph.from_definition(definition)
    levels = graph.levels()
    alone = {level[0] for level in levels if len(level) == 1}
    level_of = {node: i for i, level in enumerate(levels) for node in level}
    # (a source that may fan out has a step of its own in the canvas: ``canvas._fan_out_alone``)
    specs = {node["key"]: node for node in definition["nodes"]}
    stretch: list[str] = []
    after_key = graph.descendants(key)

    def fits(child: str, after_ports: bool) -> bool:
        cls = registry.get(specs[child]["type"])
        config = specs[child].get("config") or {}
        if cls is not None and probes_right(cls):
            # The left side streams per partition; the right side is whole and done before.
            right = next(edge.source for edge in graph.parents[child] if edge.target_port == RIGHT)
            return (
                len(graph.parents[child]) == 2
                and child not in stretch
                and right not in after_key
                and right != key
                and level_of[right] <= level_of[key]
            )
        return (
            (after_ports or child in alone)
            and len(graph.parents[child]) == 1
            and child not in stretch
            and cls is not None
            and capabilities.partitionable_with(cls, config, by_port=True)
        )

    def follow(current: str, after_ports: bool) -> None:
        children = list(
            dict.fromkeys(
                edge.target for edge in graph.children[current] if edge.target_port != RIGHT
            )
        )
        if len(children) != len(graph.children[current]):
            return  # (it feeds a join's right side: read whole)
        if current != key and _several_ports(specs[current]):
            for child in children:
                if fits(child, True):
                    stretch.append(child)
                    follow(child, True)
        elif len(children) == 1 and fits(children[0], after_ports):
            stretch.append(children[0])
            follow(children[0], after_ports)

    follow(key, False)
    return stretch


def _several_ports(spec: dict[str, Any]) -> bool:
    cls = registry.get(spec["type"])
    return cls is not None and capabilities.several_ports(cls)


#: The input port of a node that looks records up (``join``'s right side): whole, not partitioned.
RIGHT = "right"


def probes_right(cls: type) -> bool:
    """Whether a node type streams a ``left`` input and looks records up in a ``right`` one
    (``join``): its left side may run per partition, each partition probing the same whole
    right side (decision 0037)."""
    return [port.name for port in getattr(cls, "inputs", ())] == ["left", RIGHT]


def _input_of(definition: dict[str, Any], key: str) -> tuple[str, str, str]:
    """(parent, the parent's port, this node's port) of a node's streamed input: its only
    input, or a join's left side."""
    edges = [edge for edge in definition["edges"] if edge["to"] == key]
    edge = next((edge for edge in edges if edge.get("to_port") != RIGHT), edges[0])
    return edge["from"], edge.get("from_port", "out"), edge.get("to_port", "in")


def right_input(definition: dict[str, Any], run_id: str, key: str) -> tuple[str, int] | None:
    """A join's right side in a run: the stored reference of its parent's port and its rows
    (``None``: the node has no right side). Raises NodeError while the parent has not
    succeeded."""
    edge = next(
        (e for e in definition["edges"] if e["to"] == key and e.get("to_port") == RIGHT), None
    )
    if edge is None:
        return None
    parent = NodeRun.objects.filter(run_id=run_id, node_key=edge["from"]).first()
    if parent is None or parent.status != NodeStatus.SUCCEEDED or not parent.output_ref:
        raise NodeError(f"the right side '{edge['from']}' has no output yet")
    port = edge.get("from_port", "out")
    by_port = parent.rows_by_port
    rows = by_port.get(port, 0) if by_port is not None else parent.rows_out
    return port_ref(parent.output_ref, port), rows


def combiners_after(definition: dict[str, Any], key: str, stretch: list[str]) -> list[str]:
    """The combinable nodes (``aggregate``, ``dedupe``: ``capabilities.Combinable``) that take
    an end of the stretch (or the source's output itself): each runs a partial per partition at
    the end of the partition's stretch and one combine, as its own node run, after every
    partition (decision 0037). Each has one parent: a stretch end whose only child it is, or a
    node of the stretch whose output is kept per port (its partial reads its port)."""
    graph = Graph.from_definition(definition)
    specs = {node["key"]: node for node in definition["nodes"]}
    inside = set(stretch)
    combiners = []
    for end in stretch or [key]:
        ports = end != key and _several_ports(specs[end])
        children = [edge.target for edge in graph.children[end] if edge.target not in inside]
        if not ports and len(graph.children[end]) != 1:
            continue
        for child in children:
            cls = registry.get(specs[child]["type"])
            if (
                len(graph.parents[child]) == 1
                and cls is not None
                and capabilities.combinable_with(cls, specs[child].get("config") or {})
            ):
                combiners.append(child)
    return combiners


def in_partitioned_stretch(definition: dict[str, Any], key: str, run_id: str) -> bool:
    """Whether ``key`` is run partition by partition in run ``run_id``: it follows a source
    with ``partition_rows``, or a source that partitions by default and fanned out in this
    run (``sql_query`` decides as the run reaches it)."""
    decided_by_run = []
    for node in definition["nodes"]:
        if fan_out_rows(node) is None or key not in stretch_after(definition, node["key"]):
            continue
        if partition_rows(node) is not None:
            return True
        decided_by_run.append(node["key"])
    return (
        bool(decided_by_run)
        and NodeRun.objects.filter(
            run_id=run_id, node_key__in=decided_by_run, partitioned=True
        ).exists()
    )


def fan_out(task: Task, node_run: NodeRun) -> Signature | None:
    """The canvas replacing ``run_node`` for a partitioned source, or ``None`` to run it as is.

    Claims the nodes of the stretch (they show as running from now on). A source that plans
    slices (``Node.plan_slices``) is read slice by slice inside the partition tasks themselves,
    in parallel; any other is read once by ``produce_partitions`` and cut as it streams.
    """
    definition = load_run(node_run).version.definition
    spec = node_spec(definition, node_run.node_key)
    # Inside a group the canvas has no chain to hand the replacement to: run plainly there.
    if fan_out_rows(spec) is None or task.request.group:
        return None
    candidates = stretch_after(definition, node_run.node_key)
    combiners = combiners_after(definition, node_run.node_key, candidates)
    if not candidates and not combiners:
        return None
    rows = run_fan_out_rows(node_run, spec)  # (a source may ask its database first)
    if rows is None:
        return None
    run_id = str(node_run.run_id)
    stretch: list[NodeRun] = []
    for key in candidates:
        try:
            right_input(definition, run_id, key)
        except NodeError:
            break  # its right side is not done: the stretch stops before it
        if (taken := _claim(run_id, key)) is None:
            break
        stretch.append(taken)
    if len(stretch) < len(candidates):
        combiners = []  # the stretch stops early: the ends' outputs are read whole
    if not stretch and not combiners:
        return None
    # From here the fan-out owns the source and the stretch: a later delivery of their
    # run_node (a duplicate, a re-dispatch) must not start a second one (tasks._inside_fan_out).
    transitions.mark_partitioned([node_run, *stretch])
    if not transitions.hand_over(node_run, FAN_OUT, _fan_out_lease_s()):
        # The run ended while the source planned (its end found no node run the fan-out
        # holds yet): the source and the stretch it claimed end here, fenced, and nothing runs.
        for taken in (node_run, *stretch):
            transitions.finish_node(taken, NodeStatus.CANCELLED, error="run ended")
        raise Ignore()
    keys = [taken.node_key for taken in stretch]
    return chord(
        [produce_partitions.si(run_id, node_run.node_key, keys, rows, combiners)],
        join_partitions.si(run_id, node_run.node_key, keys, combiners),
    )


def resend_lost(now: datetime, stale: datetime) -> int:
    """Send again the task of each lost partition; how many were sent.

    A partition is lost when it runs under a lease that has run out, in an active run: its
    worker died (or has lost the database for longer than a lease), and Redis would hand its
    task to another worker only after the visibility timeout. Its task is sent again once per
    loss (``transitions.mark_resent``: counted in ``resends``, no sign of life), and once more
    every ``stale`` while no delivery takes it; a send that fails is undone (the next pass sends
    it). One lost again after ``FLOWPLATFORM_MAX_WORKERS_LOST`` resends fails, with its run.
    The task keeps its id, chord and arguments: the delivery takes the partition over
    (``transitions.take_partition``, fenced) and resumes it from its checkpoint, and the chord
    counts the partition once, whichever delivery of that id finishes it (the original one,
    back after the visibility timeout, finds it done or taken). The fan-out's node runs stay
    held meanwhile. Partitions of embedded mode (no task) are not sent."""
    lost = PartitionRun.objects.filter(
        # Not sent for this loss (only before it was last taken), or a staleness ago, untaken.
        Q(resent_at__isnull=True)
        | Q(resent_at__lt=F("started_at"))
        | Q(resent_at__lt=stale),
        status=NodeStatus.RUNNING,
        lease_expires_at__lt=now,
        run__status__in=ACTIVE_RUN_STATUSES,
        task__isnull=False,
    ).only(
        "id", "run_id", "source", "index", "fence", "started_at", "resent_at", "resends", "nodes",
        "task",
    )  # fmt: skip
    sent = 0
    for partition in lost:
        if partition.resends >= settings.FLOWPLATFORM_MAX_WORKERS_LOST:
            # Sent again that many times and its workers lost (or the task never taken): it
            # fails as a partition whose worker is lost every time does.
            _fail_lost(partition)
            continue
        if not transitions.mark_resent(partition, now):
            continue
        logger.warning("run %s %s partition %s: its worker is lost; sending it again",
                       partition.run_id, partition.source, partition.index)  # fmt: skip
        try:
            signature(partition.task, app=current_app).apply_async()
        except (BrokerError, CeleryError, OSError, RedisError, RuntimeError) as exc:
            # (RuntimeError: the result backend gave up.) Not sent: the next pass sends it.
            transitions.unmark_resent(partition, now)
            logger.warning("lost partitions not sent again: broker unavailable (%s)", exc)
            break
        sent += 1
    return sent


def _fail_lost(partition: PartitionRun) -> None:
    """Fail a lost partition sent again ``FLOWPLATFORM_MAX_WORKERS_LOST`` times, with its
    first node and the run (``transitions.fail_fan_out``)."""
    fan = NodeRun.objects.filter(
        run_id=partition.run_id, node_key__in=partition.nodes, status=NodeStatus.RUNNING
    )
    first = next((nr for nr in fan if nr.node_key == partition.nodes[0]), None)
    if first is None:
        return  # (its fan-out has ended: the run's end cancels the partition)
    text = f"worker lost: its task sent again {partition.resends} times"
    downstream = Graph.from_definition(load_run(first).version.definition).descendants(
        first.node_key
    )
    transitions.fail_fan_out(first, text, "", list(fan), downstream, partition)


def _claim(run_id: str, node_key: str) -> NodeRun | None:
    """Take a node of the stretch for the fan-out (None: a delivery of its own task is
    executing it, let that one go on). The fan-out's tasks hold it until the join."""
    claim = transitions.take(run_id, node_key, owner=FAN_OUT, lease_s=_fan_out_lease_s())
    return claim.node_run if claim.outcome == "execute" else None


def _fan_out_lease_s() -> float:
    """How long the fan-out holds its nodes: as long as a task may run."""
    return float(settings.FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S)


def derived(definition: dict[str, Any], key: str, stretch: list[str]) -> bool:
    """Whether a stretch node's output is recomputed when read instead of stored: a pure node
    (``Node.pure``) whose output only feeds nodes of the stretch, read from a parent whose
    output is not kept per port."""
    graph = Graph.from_definition(definition)
    children = {edge.target for edge in graph.children[key]}
    if not children or not children <= set(stretch):
        return False
    parent = _input_of(definition, key)[0]
    if parent in stretch and _several_ports(node_spec(definition, parent)):
        return False
    cls = registry.get(node_spec(definition, key)["type"])
    return cls is not None and capabilities.is_pure(cls)


def derivation(definition: dict[str, Any], key: str, input_ref: str) -> dict[str, Any]:
    """How to recompute a derived output: the node's type and config, and the input it reads."""
    spec = node_spec(definition, key)
    port = next(edge["to_port"] for edge in definition["edges"] if edge["to"] == key)
    return {
        "key": key,
        "type": spec["type"],
        "config": spec["config"],
        "port": port,
        "input": input_ref,
    }


#: The run this process last executed a task of (its per-run caches are dropped when a task of
#: another run starts here).
_current_run: dict[str, str] = {}


def forget_other_runs(run_id: str) -> None:
    """A task of ``run_id`` starts in this process: drop what the process keeps for the run
    whose task it executed before (``join``'s right table, ``nodes.sdk.run_cache``), so a
    worker holds a run's values only while it executes that run's tasks."""
    previous = _current_run.get("run")
    _current_run["run"] = run_id
    if previous is not None and previous != run_id:
        run_cache.forget_run(previous)


# --- the source ------------------------------------------------------------------------------
class _Starter:
    """Records and starts partition tasks: added to the running chord, or run inline in
    embedded mode."""

    def __init__(
        self, task: Task, run_id: str, source: str, stretch: list[str], combiners: list[str]
    ) -> None:
        self.task = task
        self.run_id, self.source, self.stretch = run_id, source, stretch
        self.combiners = combiners
        self.inline = bool(task.request.is_eager or not task.request.chord)
        self.count = 0

    def start(self, index: int, slice_: Any = None) -> None:
        nodes = [self.source, *self.stretch] if slice_ is not None else list(self.stretch)
        nodes.extend(self.combiners)
        self.count += 1
        signature = run_partition.si(
            self.run_id, self.source, self.stretch, index, slice_, self.combiners
        )
        if not self.inline:
            # Counted in the chord and given its task id first, then recorded with it: the
            # reaper sends the same task again if its worker dies (``resend_lost``).
            signature = self.task.add_to_chord(signature, lazy=True)
            transitions.add_partitions(self.run_id, self.source, [index], nodes, signature)
            signature.delay()
            return
        transitions.add_partitions(self.run_id, self.source, [index], nodes)
        result = signature.apply()
        if result.failed():
            raise NodeFailed(str(result.result))


@shared_task(
    bind=True,
    name="flows.produce_partitions",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def produce_partitions(
    self: Task,
    run_id: str,
    source: str,
    stretch: list[str],
    rows: int | None = None,
    combiners: list[str] | None = None,
) -> dict[str, Any]:
    """Start one ``run_partition`` per partition of the source as soon as it is known.

    A source that plans slices (``SlicedSource.plan_slices``) only plans here: each partition
    task reads its own slice (``execute_slice``). Any other source is read here and cut, each
    partition started as soon as it is stored. ``rows``: rows per partition, as the fan-out
    decided. A failure before any partition has started is retried per the source's policy.
    """
    node_run = NodeRun.objects.select_related("run__version").get(run_id=run_id, node_key=source)
    if not _active(node_run.run, [node_run]):
        # (A backstop: the run ended without ending its source, which the fan-out holds under
        # the same fence. Fenced: nothing changes when it has ended already.)
        transitions.finish_node(node_run, NodeStatus.CANCELLED, error="run ended")
        raise PartitionStopped(f"run {run_id} is {node_run.run.status}")
    starter = _Starter(self, run_id, source, stretch, combiners or [])
    sliced = False
    redactor = Redactor()
    spec = node_spec(node_run.run.version.definition, source)
    rows = rows or fan_out_rows(spec) or 1
    try:
        with Heartbeat(node_run), redaction.scope(redactor):
            slices = _slices(node_run, spec, rows, redactor)
            sliced = slices is not None
            if slices is not None:
                _start_slices(starter, slices, rows)
            else:
                outcome = execute_node(
                    node_run,
                    on_partition=lambda i, _part: starter.start(i),
                    redactor=redactor,
                    rows=rows,
                )
    except (NodeFailed, PartitionStopped):
        raise
    except RunCancelled:  # (its end has ended the source's node run: the fan-out holds it)
        raise PartitionStopped(f"run {run_id} was cancelled") from None
    except transitions.LeaseLost:
        if _run_ended(run_id):  # (its end has ended the source's node run, as above)
            raise PartitionStopped(f"run {run_id} ended") from None
        raise Ignore() from None
    except Exception as exc:  # noqa: BLE001 - any failure of the source retries or fails it
        if _run_ended(run_id):  # cancelled, or failed elsewhere: planning stops
            raise PartitionStopped(f"run {run_id} ended") from None
        text = redactor.redact(message(exc))
        permanent = isinstance(exc, NodeError) and exc.permanent
        policy = node_policy(spec)
        delay = next_retry(policy, self.request.retries + 1, 0, permanent)
        if delay is not None and starter.count == 0:
            logger.warning(
                "run %s source %s failed (%s); retrying in %.1fs", run_id, source, text, delay
            )
            raise self.retry(countdown=delay, throw=False) from None
        _fail(node_run, text, redactor.redact(traceback.format_exc()), [source, *stretch])
    if not sliced:
        transitions.finish_node(node_run, NodeStatus.SUCCEEDED, **outcome.figures())
    return {"source": source, "partitions": starter.count, "sliced": sliced}


def _slices(
    node_run: NodeRun, spec: dict[str, Any], rows: int, redactor: Redactor
) -> Iterator[Any] | None:
    """The source's slices, planned lazily (``None`` when it reads once instead)."""
    run = load_run(node_run)
    probe = CancelProbe(str(run.id), stop_when_finished=True)
    context = make_context(run, spec, node_run.attempts, probe, redactor=redactor)
    slices = capabilities.plan_slices(build_node(spec), context, rows)
    return None if slices is None else iter(slices)


def _start_slices(starter: _Starter, slices: Iterator[Any], rows: int) -> None:
    """One partition task per slice, started as each is planned (at most ``MAX_PARTITIONS``).
    A generator of slices is closed at the end, whatever happened (a list needs no closing)."""
    try:
        for index, slice_ in enumerate(slices):
            if index >= MAX_PARTITIONS:
                raise too_many_partitions(rows)
            starter.start(index, slice_)
    finally:
        close = getattr(slices, "close", None)
        if callable(close):
            close()


# --- one partition through the stretch -------------------------------------------------------
@shared_task(
    bind=True,
    name="flows.run_partition",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def run_partition(
    self: Task,
    run_id: str,
    source: str,
    stretch: list[str],
    partition: int,
    slice_: Any = None,
    combiners: list[str] | None = None,
) -> dict[str, Any]:
    """Execute partition ``partition`` of ``source``'s output through every node of
    ``stretch``: take it (``transitions.take_partition``), stream it, finish it, or retry or
    fail it. Safe to deliver twice, as ``run_node``: never run twice at once, a finished
    partition is not run again, a delivery whose worker died is taken over.

    With ``slice_`` the partition is read from the source itself (its ``execute_slice``) and
    stored as the source's partition on the way; otherwise it is read from storage.
    """
    forget_other_runs(run_id)
    combiners = combiners or []
    # (the node runs a partition may execute: its ``nodes``, as ``_Starter`` records them)
    keys = [source, *stretch, *combiners]
    claim = transitions.take_partition(run_id, source, partition, node_keys=keys)
    if claim.outcome == "done":
        return {"partition": partition}
    if claim.outcome == "busy":
        logger.info("run %s %s partition %s is executing elsewhere", run_id, source, partition)
        raise Ignore()
    if claim.outcome != "execute" or claim.partition is None:
        raise PartitionStopped(f"run {run_id} has ended")
    part = claim.partition
    run = part.run
    run.version = version_of(run.version_id)
    unknown = [key for key in part.nodes if key not in keys]
    if unknown:  # (recorded by a release that ran another stretch for this source)
        _fail_unknown_nodes(part, claim.node_runs, source, unknown)
    node_runs = {key: claim.node_runs[key] for key in part.nodes}
    # (a combinable node after the stretch only stores its partial here: its node run is
    # its combine's, pending until the partitions are done)
    fan = [node_runs[key] for key in part.nodes if key not in combiners]
    if not _active(run, fan):
        _stop(part)
        raise PartitionStopped(f"run {run_id} is {run.status}")
    if claim.took_over:
        logger.warning("run %s %s partition %s: worker lost, resuming", run_id, source, partition)
        if part.workers_lost >= settings.FLOWPLATFORM_MAX_WORKERS_LOST:
            _fail(fan[0], f"worker lost {part.workers_lost} times", "", part.nodes, part)
    probe = CancelProbe(run_id, stop_when_finished=True)
    pipeline = _Pipeline(run, node_runs, part, probe, combiners)
    retry = part.attempts - 1 - part.workers_lost > 0
    observed = telemetry.partition_execution(
        fan, run.version.flow.slug, run.version.number, partition, part.attempts, retry,
        pipeline.redactor,
    )  # fmt: skip
    try:
        with (
            Heartbeat(part, *fan),
            redaction.scope(pipeline.redactor),
            connections_read_at(claim.connections),  # (connections read once per process)
            observed as seen,
        ):
            try:
                if slice_ is not None:
                    batches = pipeline.read_slice(source, slice_)
                else:
                    batches = read_batches(output_name(run_id, source, partition))
                pipeline.drain(source, batches, stretch)
            except _NodeRaised as raised:
                seen.rows = pipeline.rows()
                if isinstance(raised.error, transitions.LeaseLost):
                    raise raised.error from None
                if probe() or _run_ended(run_id):
                    raise PartitionStopped(f"run {run_id} ended") from None
                seen.failed_node = raised.node_key
                raise
            seen.rows = pipeline.rows()
            seen.succeeded = True
    except transitions.LeaseLost:
        if _run_ended(run_id):  # the run's end cancelled the partition: stop its node runs
            _stop(part)
            raise PartitionStopped(f"run {run_id} ended") from None
        logger.warning("run %s %s partition %s was taken over; this delivery stops",
                       run_id, source, partition)  # fmt: skip
        raise Ignore() from None
    except PartitionStopped:
        _stop(part)
        raise
    except _NodeRaised as raised:
        tb = "".join(traceback.format_exception(raised.error))
        _retry_or_fail(self, part, node_runs, raised, tb, pipeline.redactor)
    finally:
        pipeline.close()
    if not transitions.finish_partition(
        part, NodeStatus.SUCCEEDED, rows=pipeline.rows(with_ports=True)
    ):
        logger.warning("run %s %s partition %s finished, but no longer held it",
                       run_id, source, partition)  # fmt: skip
        raise Ignore()
    return {"partition": partition}


def _fail_unknown_nodes(
    part: PartitionRun, node_runs: dict[str, NodeRun], source: str, unknown: list[str]
) -> None:
    """Fail a partition that records nodes this delivery does not run in it (a partition
    planned by an older release), with its first node known and the run; raises as ``_fail``."""
    text = (
        f"the partition records node(s) {', '.join(map(repr, unknown))}, not of the stretch "
        f"after '{source}' this release runs: run the flow again"
    )
    first = next((node_runs[key] for key in part.nodes if key in node_runs), None)
    if first is None:
        first = NodeRun.objects.filter(run_id=part.run_id, node_key=source).first()
    if first is None:  # (no node run to fail beside it: the partition alone)
        transitions.finish_partition(part, NodeStatus.FAILED, error=text)
        raise NodeFailed(f"partition {part.index}: {text}")
    _fail(first, text, "", part.nodes, part)


def _stop(part: PartitionRun) -> None:
    """The run has ended (cancelled, failed elsewhere, timed out) while the partition ran: it
    ends cancelled (unless the run's end has ended it already, with the fan-out's node runs:
    ``transitions.finish_run``)."""
    transitions.finish_partition(part, NodeStatus.CANCELLED, error="run ended")


def _retry_or_fail(
    task: Task,
    part: PartitionRun,
    node_runs: dict[str, NodeRun],
    raised: _NodeRaised,
    tb: str,
    redactor: Redactor,
) -> None:
    """Retry the partition after a backoff while the failing node's policy allows (the node
    runs and the other partitions go on), else fail the node and the run."""
    error = raised.error
    text = redactor.redact(message(error))
    spec = node_spec(load_run(node_runs[raised.node_key]).version.definition, raised.node_key)
    permanent = isinstance(error, NodeError) and error.permanent
    delay = next_retry(node_policy(spec), part.attempts, part.workers_lost, permanent)
    if delay is not None:
        if not transitions.retry_node(part, f"{raised.node_key}: {text}", delay):
            raise Ignore()  # cancelled or taken over meanwhile
        logger.warning(
            "run %s %s partition %s attempt %s failed in %s (%s); retrying in %.1fs",
            part.run_id, part.source, part.index, part.attempts, raised.node_key, text, delay,
        )  # fmt: skip
        raise task.retry(countdown=delay, throw=False) from None
    _fail(node_runs[raised.node_key], text, redactor.redact(tb), part.nodes, part)


class _Pipeline:
    """One partition streamed through a stretch of nodes, each node's output teed to storage.

    The stretch runs line by line: the line after the source, then each line after a node whose
    output is kept per port, reading that node's port of this partition once it is stored. A
    line whose end feeds a combinable node ends in that node's partial state."""

    def __init__(
        self,
        run: FlowRun,
        node_runs: dict[str, NodeRun],
        partition: PartitionRun,
        probe: CancelProbe,
        combiners: list[str] | None = None,
    ) -> None:
        self.run = run
        self.node_runs = node_runs
        self.partition = partition
        self.index = partition.index
        self.probe = probe
        self.combiners = combiners or []
        #: Learns the secrets of the connections the stretch's nodes use.
        self.redactor = Redactor()
        #: Each stored node's writers: one, or one per port (``None``: the node's only output).
        self.writers: dict[str, dict[str | None, BatchWriter | SliceWriter]] = {}
        self.counters: dict[str, tuple[RowCounter, RowCounter]] = {}
        self.partials: dict[str, tuple[RowCounter, RowCounter]] = {}
        self.port_rows: dict[str, dict[str, int]] = {}

    def _context(self, spec: dict[str, Any], input_refs: dict[str, list[str]] | None = None) -> Any:
        key = spec["key"]
        saved = (self.partition.checkpoint or {}).get(key)
        return make_context(
            self.run,
            spec,
            self.partition.attempts,
            self.probe,
            self.index,
            redactor=self.redactor,
            checkpoint=(saved, lambda value: self._save_checkpoint(key, value)),
            input_refs=input_refs,
        )

    def _save_checkpoint(self, key: str, value: Any) -> None:
        """A node's checkpoint in this partition, saved only while the partition is this
        delivery's (a partition taken over stops at its next checkpoint)."""
        checkpoint = {**(self.partition.checkpoint or {}), key: value}
        with telemetry.untraced():
            saved = transitions.save_checkpoint(self.partition, checkpoint)
        if not saved:
            raise transitions.LeaseLost()
        self.partition.checkpoint = checkpoint

    def read_slice(self, key: str, slice_: Any) -> Iterator[AnyBatch]:
        """A source's slice, stored as its partition as it streams (a rereadable source's:
        only the slice and the pins of what it read, decision 0044)."""
        try:
            spec = node_spec(self.run.version.definition, key)
            node = build_node(spec)
        except Exception as exc:
            raise _NodeRaised(key, exc) from exc
        context = self._context(spec)
        rows_in, rows_out = RowCounter(), RowCounter()
        run_id = str(self.run.id)
        writer: BatchWriter | SliceWriter
        if capabilities.is_rereadable(type(node)):
            writer = SliceWriter(slice_name(run_id, key, self.index), slice_)
            read = cast(capabilities.Rereadable, node).read_pinned(context, slice_, writer.pins)
        else:
            writer = BatchWriter(output_name(run_id, key, self.index))
            read = node.execute_slice(context, slice_)
        self.writers[key], self.counters[key] = {None: writer}, (rows_in, rows_out)
        batches = rows_out.wrap(_blame(key, read))
        return self._tee(key, {None: writer}, batches)

    def drain(self, source: str, batches: Iterable[AnyBatch], stretch: list[str]) -> None:
        definition = self.run.version.definition
        # (the source's slice, when read here, counts first, as it was staged first)
        progress = _Progress([self.node_runs[key] for key in [*self.counters, *stretch]])
        parents = {key: _input_of(definition, key) for key in self.combiners}
        ends = {
            parent: key
            for key, (parent, _port, _in) in parents.items()
            if parent == source or not _several_ports(node_spec(definition, parent))
        }
        if not stretch:
            self._end(definition, source, batches, ends, progress)
        for line in _lines(definition, stretch):
            parent, parent_port, _port = _input_of(definition, line[0])
            stream: Iterable[AnyBatch] = batches
            if parent != source:  # a line after a node whose output is kept per port
                name = port_output_name(str(self.run.id), parent, parent_port, self.index)
                stream = _blame(line[0], read_batches(name))
            for key in line:
                stored = not derived(definition, key, stretch)
                stream = self._stage(definition, key, stream, stored)
            self._end(definition, line[-1], stream, ends, progress)
            self._save([source, *line])
        self._save([source])
        run_id = str(self.run.id)
        for key, (parent, port, _in) in parents.items():
            if key not in ends.values():  # after a port: its partial reads the stored port
                stream = _blame(
                    key, read_batches(port_output_name(run_id, parent, port, self.index))
                )
                self._partial(definition, key, self._tee(key, {}, stream))
        progress.flush(self.counters)

    def _end(
        self,
        definition: dict[str, Any],
        key: str,
        stream: Iterable[AnyBatch],
        ends: dict[str, str],
        progress: _Progress,
    ) -> None:
        """Read a line to its end: into the partial state of the combinable node after it."""
        ticking = _ticking(self._tee(key, {}, stream), progress, self.counters)
        if key in ends:
            self._partial(definition, ends[key], ticking)
            return
        for _batch in ticking:
            pass

    def _save(self, keys: list[str]) -> None:
        """Store the partition outputs of these nodes, once each (a line's ports are then read
        by the lines after it)."""
        for key in keys:
            for port, writer in self.writers.get(key, {}).items():
                if writer.saved:
                    continue
                try:
                    rows = writer.save()
                except Exception as exc:
                    raise _NodeRaised(key, exc) from exc
                if port is not None:
                    self.port_rows.setdefault(key, {})[port] = rows

    def _partial(self, definition: dict[str, Any], key: str, stream: Iterable[AnyBatch]) -> None:
        """The combinable node's partial state of this partition, stored for its combine."""
        rows_in = RowCounter()
        self.partials[key] = (rows_in, RowCounter())
        try:
            spec = node_spec(definition, key)
            node = build_node(spec)
            assert isinstance(node, capabilities.Combinable)
            port = _input_of(definition, key)[2]
            data = capabilities.run_partial(node, self._context(spec), {port: rows_in.wrap(stream)})
            write_bytes(partial_name(str(self.run.id), key, self.index), data)
        except (_NodeRaised, PartitionStopped, transitions.LeaseLost):
            raise
        except Exception as exc:
            raise _NodeRaised(key, exc) from exc

    def _stage(
        self, definition: dict[str, Any], key: str, stream: Iterable[AnyBatch], stored: bool
    ) -> Iterator[AnyBatch]:
        try:
            spec = node_spec(definition, key)
            node = build_node(spec)
        except Exception as exc:
            raise _NodeRaised(key, exc) from exc
        port = _input_of(definition, key)[2]
        run_id = str(self.run.id)
        rows_in, rows_out = RowCounter(), RowCounter()
        self.counters[key] = (rows_in, rows_out)
        try:
            right = right_input(definition, run_id, key)
        except NodeError as exc:
            raise _NodeRaised(key, exc) from exc
        refs = {RIGHT: [right[0]]} if right is not None else None
        context = self._context(spec, refs)
        inputs = {port: rows_in.wrap(stream)}
        if right is not None:
            # Its rows are counted once, by the join; a worker process that built its table
            # for an earlier partition of the run does not read it again.
            inputs[RIGHT] = read_output(right[0])
        writers: dict[str | None, BatchWriter] = {}
        if per_port(node):  # every port stored, one that got no batch empty
            for out in node.output_ports():
                name = port_output_name(run_id, key, out.name, self.index)
                writers[out.name] = BatchWriter(name)
        elif stored:
            writers[None] = BatchWriter(output_name(run_id, key, self.index))
        if writers:
            self.writers[key] = writers
        output = node.run(context, inputs)
        return self._tee(key, writers, rows_out.wrap(_blame(key, output)))

    def _tee(
        self,
        key: str,
        writers: dict[str | None, BatchWriter] | dict[str | None, BatchWriter | SliceWriter],
        batches: Iterable[Any],
    ) -> Iterator[AnyBatch]:
        for batch in batches:
            if self.probe():
                raise PartitionStopped(f"run {self.run.id} ended")
            if heartbeat.lost(self.partition):
                raise transitions.LeaseLost()
            if not writers:
                pass
            elif None in writers:
                writers[None].write(batch)
            elif isinstance(batch, PortBatch) and batch.port in writers:
                writers[batch.port].write(batch.batch)
            else:
                raise _NodeRaised(key, not_a_port(batch, [str(port) for port in writers]))
            yield batch

    def rows(self, with_ports: bool = False) -> dict[str, list[Any]]:
        """Each node's ``[rows in, rows out]`` (with ``with_ports``, and ``[[port, rows], ...]``
        for a node whose output is kept per port)."""
        rows: dict[str, list[Any]] = {
            key: [c[0].rows, c[1].rows] for key, c in {**self.counters, **self.partials}.items()
        }
        if with_ports:
            for key, ports in self.port_rows.items():
                rows[key].append([[port, n] for port, n in ports.items()])
        return rows

    def close(self) -> None:
        for writers in self.writers.values():
            for writer in writers.values():
                writer.close()


def _lines(definition: dict[str, Any], stretch: list[str]) -> list[list[str]]:
    """The stretch cut into lines: a node starts a new line unless its parent is the node
    before it in the stretch (whose output is then not kept per port)."""
    lines: list[list[str]] = []
    for key in stretch:
        parent = _input_of(definition, key)[0]
        if lines and lines[-1][-1] == parent and not _several_ports(node_spec(definition, parent)):
            lines[-1].append(key)
        else:
            lines.append([key])
    return lines


def _ticking(
    stream: Iterable[AnyBatch],
    progress: _Progress,
    counters: dict[str, tuple[RowCounter, RowCounter]],
) -> Iterator[AnyBatch]:
    for batch in stream:
        progress.tick(counters)
        yield batch


def _blame(key: str, batches: Iterable[AnyBatch]) -> Iterator[AnyBatch]:
    """Re-raise what a node raises tagged with its key (upstream nodes have tagged theirs)."""
    try:
        yield from batches
    except _NodeRaised:
        raise
    except Exception as exc:
        raise _NodeRaised(key, exc) from exc


class _Progress:
    """Adds each node's new rows to its NodeRun every ``PROGRESS_EVERY_S`` (partitions add up),
    all nodes in one statement. Progress is only shown: a failed write is skipped (the join
    records the exact figures)."""

    def __init__(self, node_runs: list[NodeRun]) -> None:
        self.node_runs = node_runs
        self.sent = [(0, 0)] * len(node_runs)
        self._last = time.monotonic()

    def tick(self, counters: dict[str, tuple[RowCounter, RowCounter]]) -> None:
        if time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self.flush(counters)

    def flush(self, counters: dict[str, tuple[RowCounter, RowCounter]]) -> None:
        """``counters``: the nodes' counters in the order of the node runs (those of nodes
        not reached yet missing)."""
        self._last = time.monotonic()
        now = [(rows_in.rows, rows_out.rows) for rows_in, rows_out in counters.values()]
        now += [(0, 0)] * (len(self.node_runs) - len(now))
        deltas = {
            node_run: (rows[0] - sent[0], rows[1] - sent[1])
            for node_run, rows, sent in zip(self.node_runs, now, self.sent, strict=False)
            if rows != sent
        }
        try:
            transitions.add_rows(deltas)
        except DatabaseError as exc:
            logger.warning("progress not recorded (%s)", exc)
            return
        self.sent = now


# --- the join --------------------------------------------------------------------------------
@shared_task(name="flows.join_partitions", acks_late=True)
def join_partitions(
    run_id: str, source: str, stretch: list[str], combiners: list[str] | None = None
) -> str:
    """Chord body: once every partition has succeeded, write each node's manifest, sum the
    partitions' rows on its node run and finish it succeeded.

    When the source was read slice by slice in the partition tasks, it is joined here too
    (it is still running: ``produce_partitions`` finishes a source it read itself before the
    join). A source that planned no partition (no file matched, an empty range) joins over
    none: every node succeeds with 0 rows. The chord joins only once producing has ended, so
    every planned partition is recorded by then.
    """
    parts = list(PartitionRun.objects.filter(run_id=run_id, source=source).order_by("index"))
    # (the combiners after the stretch are not joined here: not in ``stretch``)
    node_runs = {
        nr.node_key: nr
        for nr in NodeRun.objects.filter(run_id=run_id, node_key__in=[source, *stretch])
    }
    sliced = node_runs[source].status == NodeStatus.RUNNING
    joined = [source, *stretch] if sliced else list(stretch)
    run = FlowRun.objects.get(id=run_id)
    _check_active(run, [node_runs[key] for key in joined])
    done = [p.index for p in parts if p.status == NodeStatus.SUCCEEDED]
    if done != list(range(len(parts))):
        # (e.g. a partition's redelivered task that found it done, counted twice by the chord)
        text = f"partitions missing after the join: {len(done)} of {len(parts)} succeeded"
        _fail(_waiting(run_id, node_runs, joined, combiners or []), text, "", [source, *stretch])
    definition = version_of(run.version_id).definition
    for key in joined:
        spec = node_spec(definition, key)
        if key in stretch and _several_ports(spec):
            _join_ports(run_id, node_runs[key], build_node(spec), parts)
            continue
        is_derived = key in stretch and derived(definition, key, stretch)
        reread = _reread_source(spec) if key == source else None
        right = right_input(definition, run_id, key) if key in stretch else None
        name_of = slice_name if reread is not None else output_name
        manifest = [
            Part("" if is_derived else name_of(run_id, key, p.index), *p.rows_of(key))
            for p in parts
        ]
        if is_derived:
            upstream = _input_of(definition, key)[0]
            recipe = derivation(definition, key, manifest_name(run_id, upstream))
            ref = write_manifest(manifest_name(run_id, key), manifest, derived_from=recipe)
        else:
            ref = write_manifest(manifest_name(run_id, key), manifest, reread=reread)
        transitions.finish_node(
            node_runs[key],
            NodeStatus.SUCCEEDED,
            rows_in=sum(part.rows_in for part in manifest) + (right[1] if right else 0),
            rows_out=sum(part.rows_out for part in manifest),
            output_ref=ref,
        )
    logger.info("run %s: %s joined over %d partitions", run_id, ", ".join(joined), len(parts))
    return stretch[-1] if stretch else source


def _waiting(
    run_id: str, node_runs: dict[str, NodeRun], joined: list[str], combiners: list[str]
) -> NodeRun:
    """The node failed when the join finds partitions missing: the first it joins, or, when the
    source was read once and only combiners follow it, the first combiner (its node run pending
    for its combine)."""
    if joined:
        return node_runs[joined[0]]
    # (a fan-out claims a stretch or has combiners: ``fan_out`` runs plainly otherwise)
    assert combiners, "a fan-out with neither a stretch nor a combiner"
    return NodeRun.objects.get(run_id=run_id, node_key=combiners[0])


def _reread_source(spec: dict[str, Any]) -> dict[str, Any] | None:
    """For a source read slice by slice that reads its slices again instead of storing them
    (``Rereadable``): what its manifest names to read them (see ``handoff.read_output``)."""
    cls = registry.get(spec["type"])
    if cls is None or not capabilities.is_rereadable(cls):
        return None
    return {"key": spec["key"], "type": spec["type"], "config": spec["config"]}


def _join_ports(run_id: str, node_run: NodeRun, node: Node, parts: list[PartitionRun]) -> None:
    """Finish a node whose output is kept per port: each port's partitions listed in order by
    a manifest of its own, the ports by the node's ports manifest (its output reference)."""
    key = node_run.node_key
    ports: dict[str, tuple[str, int]] = {}
    for out in node.output_ports():
        manifest = [
            Part(
                port_output_name(run_id, key, out.name, p.index),
                0,
                p.port_rows_of(key).get(out.name, 0),
            )
            for p in parts
        ]
        ref = write_manifest(port_manifest_name(run_id, key, out.name), manifest)
        ports[out.name] = (ref, sum(part.rows_out for part in manifest))
    transitions.finish_node(
        node_run,
        NodeStatus.SUCCEEDED,
        rows_in=sum(p.rows_of(key)[0] for p in parts),
        rows_out=sum(rows for _ref, rows in ports.values()),
        rows_out_by_port=[[port, rows] for port, (_ref, rows) in ports.items()],
        output_ref=write_ports_manifest(run_id, key, ports),
    )


# --- shared ----------------------------------------------------------------------------------
def _run_ended(run_id: str) -> bool:
    status = FlowRun.objects.filter(id=run_id).values_list("status", flat=True).first()
    return status not in ACTIVE_RUN_STATUSES


def _active(run: FlowRun, node_runs: list[NodeRun]) -> bool:
    return run.status in ACTIVE_RUN_STATUSES and all(
        nr.status == NodeStatus.RUNNING for nr in node_runs
    )


def _check_active(run: FlowRun, node_runs: list[NodeRun]) -> None:
    """Stop (without recording anything) when the run or a node has already finished."""
    if not _active(run, node_runs):
        raise PartitionStopped(f"run {run.id} is {run.status}")


def _fail(
    node_run: NodeRun,
    text: str,
    tb: str,
    fan_out: list[str],
    partition: PartitionRun | None = None,
) -> None:
    """Fail a node of a fan-out (in ``partition``) and the run, closing the fan-out's other
    running nodes (``transitions.fail_fan_out``); raises NodeFailed, chaining nothing (the
    message and traceback are redacted already), or Ignore when no longer this delivery's."""
    definition = load_run(node_run).version.definition
    downstream = Graph.from_definition(definition).descendants(node_run.node_key)
    others = NodeRun.objects.filter(
        run_id=node_run.run_id, node_key__in=fan_out, status=NodeStatus.RUNNING
    )
    if not transitions.fail_fan_out(node_run, text, tb, list(others), downstream, partition):
        raise Ignore()
    where = f"partition {partition.index}: " if partition is not None else ""
    error = f"node '{node_run.node_key}' failed: {where}{text}"
    logger.warning("run %s %s", node_run.run_id, error)
    raise NodeFailed(error) from None
