"""Partitioned execution: a source cuts its output by row count and the stretch of partitionable
nodes after it runs once per partition, in parallel across workers.

When ``run_node`` claims a source with ``partition_rows`` that is followed by a *stretch* (a
straight line of partitionable nodes, each with one parent and alone in its level of the
canvas), :func:`fan_out` gives it a replacement canvas::

    chord([produce_partitions(source, stretch)], join_partitions(stretch))

``produce_partitions`` runs the source and, as each partition is stored, adds
``run_partition(i)`` to its own chord (``add_to_chord``), so the other workers start on
partition 0 while the source is still reading. A source that plans slices
(``Node.plan_slices``, e.g. ``sql_query`` with ``partition_column``) is only planned there:
each ``run_partition(i, slice)`` is added as soon as its slice is known and reads it itself.
``run_partition`` streams one partition through the whole stretch in one task, node after node
in memory, storing each node's partition output on the way (a pure node's is derived instead,
recomputed when read). The chord joins when the source and
every partition are done; ``join_partitions`` writes each node's manifest, sums the rows and
marks the stretch succeeded, and the run's chain goes on past the stretch (its ``run_node``
tasks find those nodes done). In embedded mode (eager) the partitions run one after the other
inside ``produce_partitions``.

A failing partition fails its node with ``partition N: ...`` and the run; the other partitions
stop at their next batch, and the chord's error reaches the run's error callback.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

from celery import Task, chord, shared_task
from celery.canvas import Signature
from django.conf import settings
from django.db import DatabaseError

from flowplatform import telemetry
from flows import transitions
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
from flows.engine.handoff import (
    MAX_PARTITIONS,
    BatchWriter,
    Part,
    manifest_name,
    output_name,
    read_batches,
    write_manifest,
)
from flows.engine.heartbeat import Heartbeat
from flows.engine.lease import FAN_OUT
from flows.engine.tasks import NodeFailed
from flows.graph import Graph
from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun, NodeStatus, RunStatus
from nodes import redaction
from nodes.redaction import Redactor
from nodes.registry import registry
from nodes.sdk import NodeError, capabilities
from nodes.sdk.node import AnyBatch

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
    """The partitionable nodes that can run per partition of ``key``'s output, in order."""
    graph = Graph.from_definition(definition)
    alone = {level[0] for level in graph.levels() if len(level) == 1}
    if key not in alone:
        return []
    types = {node["key"]: node["type"] for node in definition["nodes"]}
    configs = {node["key"]: node.get("config") or {} for node in definition["nodes"]}
    stretch: list[str] = []
    current = key
    while len(graph.children[current]) == 1:
        child = graph.children[current][0].target
        cls = registry.get(types[child])
        if child not in alone or len(graph.parents[child]) != 1:
            break
        if cls is None or not capabilities.partitionable_with(cls, configs[child]):
            break
        stretch.append(child)
        current = child
    return stretch


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
    sources = NodeRun.objects.filter(run_id=run_id, node_key__in=decided_by_run)
    return bool(decided_by_run) and any(fanned_out(source) for source in sources)


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
    if not candidates:
        return None
    rows = run_fan_out_rows(node_run, spec)  # (a source may ask its database first)
    if rows is None:
        return None
    run_id = str(node_run.run_id)
    stretch: list[str] = []
    for key in candidates:
        if not _claim(run_id, key):
            break
        stretch.append(key)
    if not stretch:
        return None
    # From here the fan-out owns the source: a later delivery of its run_node (a duplicate, a
    # re-dispatch) must not start a second one (see tasks._inside_fan_out).
    transitions.save_checkpoint(node_run, {FANNED_OUT: True})
    transitions.hand_over(node_run, FAN_OUT, _fan_out_lease_s())
    return chord(
        [produce_partitions.si(run_id, node_run.node_key, stretch, rows)],
        join_partitions.s(run_id, node_run.node_key, stretch),
    )


FANNED_OUT = "fanned_out"


def fanned_out(node_run: NodeRun) -> bool:
    """Whether a partitioned source has handed its work to a fan-out (which finishes it)."""
    return isinstance(node_run.checkpoint, dict) and bool(node_run.checkpoint.get(FANNED_OUT))


def _slices(
    node_run: NodeRun, spec: dict[str, Any], rows: int, stretch: list[str], redactor: Redactor
) -> Iterator[Any] | None:
    """The source's slices, planned lazily (``None`` when it reads once instead); a failure to
    plan fails the source and the run. Planning stops once the run has ended any way."""
    run = load_run(node_run)
    probe = CancelProbe(str(run.id), stop_when_finished=True)
    context = make_context(run, spec, node_run.attempts, probe, redactor=redactor)
    try:
        slices = capabilities.plan_slices(build_node(spec), context, rows)
    except Exception as exc:  # noqa: BLE001 - any failure to plan fails the source and the run
        fan = [node_run.node_key, *stretch]
        _fail(node_run, _message(exc), traceback.format_exc(), fan, redactor)
    return None if slices is None else iter(slices)


def _claim(run_id: str, node_key: str) -> bool:
    """Take a node of the stretch for the fan-out (False: a delivery of its own task is
    executing it, let that one go on). The fan-out's tasks hold it until the join."""
    claim = transitions.take(run_id, node_key, owner=FAN_OUT, lease_s=_fan_out_lease_s())
    return claim.outcome == "execute"


def _fan_out_lease_s() -> float:
    """How long the fan-out holds its nodes: as long as a task may run."""
    return float(settings.FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S)


def derived(definition: dict[str, Any], key: str, stretch: list[str]) -> bool:
    """Whether a stretch node's output is recomputed when read instead of stored: a pure node
    (``Node.pure``) that is not the last of its stretch (its output only feeds the next)."""
    if key == stretch[-1]:
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


# --- the source ------------------------------------------------------------------------------
class _Starter:
    """Starts partition tasks: added to the running chord, or run inline in embedded mode."""

    def __init__(self, task: Task, run_id: str, source: str, stretch: list[str]) -> None:
        self.task = task
        self.args = (run_id, source, stretch)
        self.inline = bool(task.request.is_eager or not task.request.chord)
        self.count = 0
        self.done: list[dict[str, Any]] = []

    def start(self, index: int, slice_: Any = None) -> None:
        self.count += 1
        signature = run_partition.si(*self.args, index, slice_)
        if not self.inline:
            self.task.add_to_chord(signature)
            return
        result = signature.apply()
        if result.failed():
            raise NodeFailed(str(result.result))
        self.done.append(result.get())


@shared_task(bind=True, name="flows.produce_partitions", acks_late=True, reject_on_worker_lost=True)
def produce_partitions(
    self: Task, run_id: str, source: str, stretch: list[str], rows: int | None = None
) -> dict[str, Any]:
    """Start one ``run_partition`` per partition of the source as soon as it is known.

    A source that plans slices (``Node.plan_slices``) only plans here: each partition task
    reads its own slice (``Node.execute_slice``). Any other source is read here and cut, each
    partition started as soon as it is stored. ``rows``: rows per partition, as the fan-out
    decided.
    """
    node_run = NodeRun.objects.select_related("run__version").get(run_id=run_id, node_key=source)
    _check_active(node_run.run, [node_run])
    starter = _Starter(self, run_id, source, stretch)
    sliced = False
    redactor = Redactor()
    try:
        spec = node_spec(node_run.run.version.definition, source)
        rows = rows or fan_out_rows(spec) or 1
        slices = _slices(node_run, spec, rows, [source, *stretch], redactor)
        sliced = slices is not None
        with Heartbeat(node_run), redaction.scope(redactor):
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
    except RunCancelled:
        transitions.finish_node(node_run, NodeStatus.CANCELLED, error="cancelled")
        raise PartitionStopped(f"run {run_id} was cancelled") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the source fails the run
        if sliced and _run_ended(run_id):  # cancelled, or failed elsewhere: planning stops
            transitions.finish_node(node_run, NodeStatus.CANCELLED, error="run ended")
            raise PartitionStopped(f"run {run_id} ended") from None
        _fail(node_run, _message(exc), traceback.format_exc(), [source, *stretch], redactor)
    if not sliced:
        transitions.finish_node(node_run, NodeStatus.SUCCEEDED, **outcome.figures())
    return {"source": source, "partitions": starter.count, "done": starter.done, "sliced": sliced}


def _start_slices(starter: _Starter, slices: Iterator[Any], rows: int) -> None:
    """One partition task per slice, started as each is planned (at most ``MAX_PARTITIONS``)."""
    with contextlib.closing(slices):
        for index, slice_ in enumerate(slices):
            if index >= MAX_PARTITIONS:
                raise NodeError(
                    f"the output has more than {MAX_PARTITIONS} partitions of {rows} rows: "
                    "raise partition_rows",
                    permanent=True,
                )
            starter.start(index, slice_)


# --- one partition through the stretch -------------------------------------------------------
@shared_task(name="flows.run_partition", acks_late=True, reject_on_worker_lost=True)
def run_partition(
    run_id: str, source: str, stretch: list[str], partition: int, slice_: Any = None
) -> dict[str, Any]:
    """Stream partition ``partition`` of ``source``'s output through every node of ``stretch``.

    With ``slice_`` the partition is read from the source itself (its ``execute_slice``) and
    stored as the source's partition on the way; otherwise it is read from storage.
    """
    run = FlowRun.objects.get(id=run_id)
    run.version = version_of(run.version_id)
    fan = [source, *stretch] if slice_ is not None else stretch
    node_runs = {nr.node_key: nr for nr in NodeRun.objects.filter(run_id=run_id, node_key__in=fan)}
    _check_active(run, list(node_runs.values()))
    probe = CancelProbe(run_id, stop_when_finished=True)
    pipeline = _Pipeline(run, node_runs, partition, probe)
    observed = telemetry.partition_execution(
        run_id, run.version.flow.slug, run.version.number, source, partition
    )
    try:
        # One live node of the fan-out keeps the reaper away while partitions are running.
        with Heartbeat(node_runs[fan[0]]), redaction.scope(pipeline.redactor), observed as seen:
            if slice_ is not None:
                batches = pipeline.read_slice(source, slice_)
            else:
                batches = read_batches(output_name(run_id, source, partition))
            pipeline.drain(batches, stretch)
            seen(pipeline.rows())
    except _NodeRaised as raised:
        if probe() or _run_ended(run_id):
            raise PartitionStopped(f"run {run_id} ended") from None
        message = f"partition {partition}: {_message(raised.error)}"
        tb = "".join(traceback.format_exception(raised.error))
        _fail(node_runs[raised.node_key], message, tb, [source, *stretch], pipeline.redactor)
    finally:
        pipeline.close()
    return {"partition": partition, "rows": pipeline.rows()}


class _Pipeline:
    """One partition streamed through a stretch of nodes, each node's output teed to storage."""

    def __init__(
        self, run: FlowRun, node_runs: dict[str, NodeRun], partition: int, probe: CancelProbe
    ) -> None:
        self.run = run
        self.node_runs = node_runs
        self.partition = partition
        self.probe = probe
        #: Learns the secrets of the connections the stretch's nodes use.
        self.redactor = Redactor()
        self.writers: dict[str, BatchWriter] = {}
        self.counters: dict[str, tuple[RowCounter, RowCounter]] = {}

    def read_slice(self, key: str, slice_: Any) -> Iterator[AnyBatch]:
        """A source's slice, stored as its partition as it streams."""
        try:
            spec = node_spec(self.run.version.definition, key)
            node = build_node(spec)
        except Exception as exc:
            raise _NodeRaised(key, exc) from exc
        attempt = self.node_runs[key].attempts
        context = make_context(
            self.run, spec, attempt, self.probe, self.partition, redactor=self.redactor
        )
        rows_in, rows_out = RowCounter(), RowCounter()
        writer = BatchWriter(output_name(str(self.run.id), key, self.partition))
        self.writers[key], self.counters[key] = writer, (rows_in, rows_out)
        return self._tee(writer, rows_out.wrap(_blame(key, node.execute_slice(context, slice_))))

    def drain(self, source: Iterable[AnyBatch], stretch: list[str]) -> None:
        definition = self.run.version.definition
        # (the source's slice, when read here, counts first, as it was staged first)
        progress = _Progress([self.node_runs[key] for key in [*self.counters, *stretch]])
        stream = source
        for key in stretch:
            stored = not derived(definition, key, stretch)
            stream = self._stage(definition, key, stream, stored)
        for _batch in stream:
            progress.tick(list(self.counters.values()))
        for key, writer in self.writers.items():
            try:
                writer.save()
            except Exception as exc:
                raise _NodeRaised(key, exc) from exc
        progress.flush(list(self.counters.values()))

    def _stage(
        self, definition: dict[str, Any], key: str, stream: Iterable[AnyBatch], stored: bool
    ) -> Iterator[AnyBatch]:
        try:
            spec = node_spec(definition, key)
            node = build_node(spec)
        except Exception as exc:
            raise _NodeRaised(key, exc) from exc
        port = next(edge["to_port"] for edge in definition["edges"] if edge["to"] == key)
        attempt = self.node_runs[key].attempts
        context = make_context(
            self.run, spec, attempt, self.probe, self.partition, redactor=self.redactor
        )
        rows_in, rows_out = RowCounter(), RowCounter()
        self.counters[key] = (rows_in, rows_out)
        writer = None
        if stored:
            writer = BatchWriter(output_name(str(self.run.id), key, self.partition))
            self.writers[key] = writer
        output = node.run(context, {port: rows_in.wrap(stream)})
        return self._tee(writer, rows_out.wrap(_blame(key, output)))

    def _tee(self, writer: BatchWriter | None, batches: Iterable[AnyBatch]) -> Iterator[AnyBatch]:
        for batch in batches:
            if self.probe():
                raise PartitionStopped(f"run {self.run.id} ended")
            if writer is not None:
                writer.write(batch)
            yield batch

    def rows(self) -> dict[str, list[int]]:
        return {key: [c[0].rows, c[1].rows] for key, c in self.counters.items()}

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


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

    def tick(self, counters: list[tuple[RowCounter, RowCounter]]) -> None:
        if time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self.flush(counters)

    def flush(self, counters: list[tuple[RowCounter, RowCounter]]) -> None:
        self._last = time.monotonic()
        now = [(rows_in.rows, rows_out.rows) for rows_in, rows_out in counters]
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
    results: list[dict[str, Any]], run_id: str, source: str, stretch: list[str]
) -> str:
    """Chord body: record each node's partitions and totals, and mark it succeeded.

    When the source was read slice by slice in the partition tasks, it is joined here too;
    otherwise ``produce_partitions`` has recorded it.
    """
    expected, by_partition, joined = None, {}, stretch
    for result in results:
        if "source" in result:
            expected = result["partitions"]
            by_partition.update({done["partition"]: done for done in result["done"]})
            if result.get("sliced"):
                joined = [source, *stretch]
        else:
            by_partition[result["partition"]] = result
    node_runs = {
        nr.node_key: nr for nr in NodeRun.objects.filter(run_id=run_id, node_key__in=joined)
    }
    run = FlowRun.objects.get(id=run_id)
    _check_active(run, list(node_runs.values()))
    if expected is None or sorted(by_partition) != list(range(expected)):
        message = f"partitions missing after the join: got {sorted(by_partition)} of {expected}"
        _fail(node_runs[joined[0]], message, "", [source, *stretch], Redactor())
    definition = version_of(run.version_id).definition
    for key in joined:
        is_derived = key in stretch and derived(definition, key, stretch)
        parts = [
            Part("" if is_derived else output_name(run_id, key, i), *by_partition[i]["rows"][key])
            for i in range(expected)
        ]
        if is_derived:
            upstream = source if key == stretch[0] else stretch[stretch.index(key) - 1]
            recipe = derivation(definition, key, manifest_name(run_id, upstream))
            ref = write_manifest(manifest_name(run_id, key), parts, derived_from=recipe)
        else:
            ref = write_manifest(manifest_name(run_id, key), parts)
        transitions.finish_node(
            node_runs[key],
            NodeStatus.SUCCEEDED,
            rows_in=sum(part.rows_in for part in parts),
            rows_out=sum(part.rows_out for part in parts),
            output_ref=ref,
        )
    logger.info("run %s: %s joined over %d partitions", run_id, ", ".join(joined), expected)
    return stretch[-1]


# --- shared ----------------------------------------------------------------------------------
def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, NodeError) else f"{type(exc).__name__}: {exc}"


def _run_ended(run_id: str) -> bool:
    status = FlowRun.objects.filter(id=run_id).values_list("status", flat=True).first()
    return status not in ACTIVE_RUN_STATUSES


def _check_active(run: FlowRun, node_runs: list[NodeRun]) -> None:
    """Stop (without recording anything) when the run or a node has already finished."""
    if run.status not in ACTIVE_RUN_STATUSES or any(
        nr.status != NodeStatus.RUNNING for nr in node_runs
    ):
        raise PartitionStopped(f"run {run.id} is {run.status}")


def _fail(node_run: NodeRun, message: str, tb: str, fan_out: list[str], redactor: Redactor) -> None:
    """Fail a node of a fan-out and the run; close the fan-out's other running nodes.

    The message and traceback are redacted first; the NodeFailed raised chains nothing.
    """
    message, tb = redactor.redact(message), redactor.redact(tb)
    run_id = str(node_run.run_id)
    transitions.finish_node(node_run, NodeStatus.FAILED, error=message, traceback=tb)
    definition = FlowRun.objects.select_related("version").get(id=run_id).version.definition
    downstream = Graph.from_definition(definition).descendants(node_run.node_key)
    others = NodeRun.objects.filter(
        run_id=run_id, node_key__in=fan_out, status=NodeStatus.RUNNING
    ).exclude(pk=node_run.pk)
    for other in others:
        if other.node_key in downstream:
            transitions.finish_node(other, NodeStatus.SKIPPED)
        else:
            stopped = f"stopped: node '{node_run.node_key}' failed"
            transitions.finish_node(other, NodeStatus.CANCELLED, error=stopped)
    transitions.skip_nodes(run_id, downstream)
    error = f"node '{node_run.node_key}' failed: {message}"
    transitions.finish_run(run_id, RunStatus.FAILED, error)
    logger.warning("run %s %s", run_id, error)
    raise NodeFailed(error) from None
