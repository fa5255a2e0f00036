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
from typing import Any

from celery import Task, chord, shared_task
from celery.canvas import Signature
from celery.exceptions import Ignore
from django.conf import settings
from django.db import DatabaseError

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
    manifest_name,
    output_name,
    partial_name,
    read_batches,
    write_bytes,
    write_manifest,
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


def combiner_after(definition: dict[str, Any], key: str, stretch: list[str]) -> str | None:
    """The combinable node (``aggregate``, ``dedupe``: ``capabilities.Combinable``) that takes
    the stretch's output, when there is one: it runs a partial per partition at the end of the
    partition's stretch and one combine, as its own node run, after every partition (decision
    0037). It is the only child of the stretch's last node, and that node its only parent."""
    graph = Graph.from_definition(definition)
    last = stretch[-1] if stretch else key
    if len(graph.children[last]) != 1:
        return None
    child = graph.children[last][0].target
    if len(graph.parents[child]) != 1:
        return None
    spec = node_spec(definition, child)
    cls = registry.get(spec["type"])
    if cls is None or not capabilities.combinable_with(cls, spec.get("config") or {}):
        return None
    return child


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
    combiner = combiner_after(definition, node_run.node_key, candidates)
    if not candidates and combiner is None:
        return None
    rows = run_fan_out_rows(node_run, spec)  # (a source may ask its database first)
    if rows is None:
        return None
    run_id = str(node_run.run_id)
    stretch: list[NodeRun] = []
    for key in candidates:
        if (taken := _claim(run_id, key)) is None:
            break
        stretch.append(taken)
    if len(stretch) < len(candidates):
        combiner = None  # the stretch stops early: its last node's output is read whole
    if not stretch and combiner is None:
        return None
    # From here the fan-out owns the source and the stretch: a later delivery of their
    # run_node (a duplicate, a re-dispatch) must not start a second one (tasks._inside_fan_out).
    transitions.mark_partitioned([node_run, *stretch])
    transitions.hand_over(node_run, FAN_OUT, _fan_out_lease_s())
    keys = [taken.node_key for taken in stretch]
    return chord(
        [produce_partitions.si(run_id, node_run.node_key, keys, rows, combiner)],
        join_partitions.si(run_id, node_run.node_key, keys, combiner),
    )


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
    """Records and starts partition tasks: added to the running chord, or run inline in
    embedded mode."""

    def __init__(
        self, task: Task, run_id: str, source: str, stretch: list[str], combiner: str | None
    ) -> None:
        self.task = task
        self.run_id, self.source, self.stretch = run_id, source, stretch
        self.combiner = combiner
        self.inline = bool(task.request.is_eager or not task.request.chord)
        self.count = 0

    def start(self, index: int, slice_: Any = None) -> None:
        nodes = [self.source, *self.stretch] if slice_ is not None else list(self.stretch)
        if self.combiner is not None:
            nodes.append(self.combiner)
        transitions.add_partitions(self.run_id, self.source, [index], nodes)
        self.count += 1
        signature = run_partition.si(
            self.run_id, self.source, self.stretch, index, slice_, self.combiner
        )
        if not self.inline:
            self.task.add_to_chord(signature)
            return
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
    combiner: str | None = None,
) -> dict[str, Any]:
    """Start one ``run_partition`` per partition of the source as soon as it is known.

    A source that plans slices (``SlicedSource.plan_slices``) only plans here: each partition
    task reads its own slice (``execute_slice``). Any other source is read here and cut, each
    partition started as soon as it is stored. ``rows``: rows per partition, as the fan-out
    decided. A failure before any partition has started is retried per the source's policy.
    """
    node_run = NodeRun.objects.select_related("run__version").get(run_id=run_id, node_key=source)
    _check_active(node_run.run, [node_run])
    starter = _Starter(self, run_id, source, stretch, combiner)
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
    except RunCancelled:
        transitions.finish_node(node_run, NodeStatus.CANCELLED, error="cancelled")
        raise PartitionStopped(f"run {run_id} was cancelled") from None
    except transitions.LeaseLost:
        raise Ignore() from None
    except Exception as exc:  # noqa: BLE001 - any failure of the source retries or fails it
        if _run_ended(run_id):  # cancelled, or failed elsewhere: planning stops
            transitions.finish_node(node_run, NodeStatus.CANCELLED, error="run ended")
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
                raise NodeError(
                    f"the output has more than {MAX_PARTITIONS} partitions of {rows} rows: "
                    "raise partition_rows",
                    permanent=True,
                )
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
    combiner: str | None = None,
) -> dict[str, Any]:
    """Execute partition ``partition`` of ``source``'s output through every node of
    ``stretch``: take it (``transitions.take_partition``), stream it, finish it, or retry or
    fail it. Safe to deliver twice, as ``run_node``: never run twice at once, a finished
    partition is not run again, a delivery whose worker died is taken over.

    With ``slice_`` the partition is read from the source itself (its ``execute_slice``) and
    stored as the source's partition on the way; otherwise it is read from storage.
    """
    claim = transitions.take_partition(run_id, source, partition)
    if claim.outcome == "done":
        return {"partition": partition}
    if claim.outcome == "busy":
        logger.info("run %s %s partition %s is executing elsewhere", run_id, source, partition)
        raise Ignore()
    if claim.outcome != "execute" or claim.partition is None:
        raise PartitionStopped(f"run {run_id} has ended")
    part = claim.partition
    run = FlowRun.objects.get(id=run_id)
    run.version = version_of(run.version_id)
    node_runs = {
        nr.node_key: nr for nr in NodeRun.objects.filter(run_id=run_id, node_key__in=part.nodes)
    }
    for node_run in node_runs.values():
        node_run.run = run
    # (the combinable node after the stretch only stores its partial here: its node run is
    # its combine's, pending until the partitions are done)
    fan = [node_runs[key] for key in part.nodes if key != combiner]
    if not _active(run, fan):
        _stop(part, fan)
        raise PartitionStopped(f"run {run_id} is {run.status}")
    if claim.took_over:
        logger.warning("run %s %s partition %s: worker lost, resuming", run_id, source, partition)
        if part.workers_lost >= settings.FLOWPLATFORM_MAX_WORKERS_LOST:
            _fail(fan[0], f"worker lost {part.workers_lost} times", "", part.nodes, part)
    probe = CancelProbe(run_id, stop_when_finished=True)
    pipeline = _Pipeline(run, node_runs, part, probe, combiner)
    retry = part.attempts - 1 - part.workers_lost > 0
    observed = telemetry.partition_execution(
        fan, run.version.flow.slug, run.version.number, partition, part.attempts, retry,
        pipeline.redactor,
    )  # fmt: skip
    try:
        with (
            Heartbeat(part, *fan),
            redaction.scope(pipeline.redactor),
            observed as seen,
        ):
            try:
                if slice_ is not None:
                    batches = pipeline.read_slice(source, slice_)
                else:
                    batches = read_batches(output_name(run_id, source, partition))
                pipeline.drain(batches, stretch)
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
        logger.warning("run %s %s partition %s was taken over; this delivery stops",
                       run_id, source, partition)  # fmt: skip
        raise Ignore() from None
    except PartitionStopped:
        _stop(part, fan)
        raise
    except _NodeRaised as raised:
        tb = "".join(traceback.format_exception(raised.error))
        _retry_or_fail(self, part, node_runs, raised, tb, pipeline.redactor)
    finally:
        pipeline.close()
    if not transitions.finish_partition(part, NodeStatus.SUCCEEDED, rows=pipeline.rows()):
        logger.warning("run %s %s partition %s finished, but no longer held it",
                       run_id, source, partition)  # fmt: skip
        raise Ignore()
    return {"partition": partition}


def _stop(part: PartitionRun, fan: list[NodeRun]) -> None:
    """The run has ended (cancelled, failed elsewhere, timed out) while the partition ran: it
    ends cancelled, and so do the fan-out's node runs still running (the first partition to
    stop ends them; the others find them ended)."""
    transitions.finish_partition(part, NodeStatus.CANCELLED, error="run ended")
    for node_run in fan:
        if node_run.status == NodeStatus.RUNNING:
            transitions.finish_node(node_run, NodeStatus.CANCELLED, error="cancelled")


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
    """One partition streamed through a stretch of nodes, each node's output teed to storage."""

    def __init__(
        self,
        run: FlowRun,
        node_runs: dict[str, NodeRun],
        partition: PartitionRun,
        probe: CancelProbe,
        combiner: str | None = None,
    ) -> None:
        self.run = run
        self.combiner = combiner
        self.node_runs = node_runs
        self.partition = partition
        self.index = partition.index
        self.probe = probe
        #: Learns the secrets of the connections the stretch's nodes use.
        self.redactor = Redactor()
        self.writers: dict[str, BatchWriter] = {}
        self.counters: dict[str, tuple[RowCounter, RowCounter]] = {}

    def _context(self, spec: dict[str, Any]) -> Any:
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
        )

    def _save_checkpoint(self, key: str, value: Any) -> None:
        """A node's checkpoint in this partition, saved only while the partition is this
        delivery's (a partition taken over stops at its next checkpoint)."""
        checkpoint = {**(self.partition.checkpoint or {}), key: value}
        if not transitions.save_checkpoint(self.partition, checkpoint):
            raise transitions.LeaseLost()
        self.partition.checkpoint = checkpoint

    def read_slice(self, key: str, slice_: Any) -> Iterator[AnyBatch]:
        """A source's slice, stored as its partition as it streams."""
        try:
            spec = node_spec(self.run.version.definition, key)
            node = build_node(spec)
        except Exception as exc:
            raise _NodeRaised(key, exc) from exc
        context = self._context(spec)
        rows_in, rows_out = RowCounter(), RowCounter()
        writer = BatchWriter(output_name(str(self.run.id), key, self.index))
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
        counted = list(self.counters.values())
        ticking = _ticking(self._tee(None, stream), progress, counted)
        if self.combiner is None:
            for _batch in ticking:
                pass
        else:
            self._partial(definition, self.combiner, ticking)
        for key, writer in self.writers.items():
            try:
                writer.save()
            except Exception as exc:
                raise _NodeRaised(key, exc) from exc
        progress.flush(counted)

    def _partial(self, definition: dict[str, Any], key: str, stream: Iterable[AnyBatch]) -> None:
        """The combinable node's partial state of this partition, stored for its combine."""
        rows_in = RowCounter()
        self.counters[key] = (rows_in, RowCounter())
        try:
            spec = node_spec(definition, key)
            node = build_node(spec)
            assert isinstance(node, capabilities.Combinable)
            port = next(edge["to_port"] for edge in definition["edges"] if edge["to"] == key)
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
        port = next(edge["to_port"] for edge in definition["edges"] if edge["to"] == key)
        context = self._context(spec)
        rows_in, rows_out = RowCounter(), RowCounter()
        self.counters[key] = (rows_in, rows_out)
        writer = None
        if stored:
            writer = BatchWriter(output_name(str(self.run.id), key, self.index))
            self.writers[key] = writer
        output = node.run(context, {port: rows_in.wrap(stream)})
        return self._tee(writer, rows_out.wrap(_blame(key, output)))

    def _tee(self, writer: BatchWriter | None, batches: Iterable[AnyBatch]) -> Iterator[AnyBatch]:
        for batch in batches:
            if self.probe():
                raise PartitionStopped(f"run {self.run.id} ended")
            if heartbeat.lost(self.partition):
                raise transitions.LeaseLost()
            if writer is not None:
                writer.write(batch)
            yield batch

    def rows(self) -> dict[str, list[int]]:
        return {key: [c[0].rows, c[1].rows] for key, c in self.counters.items()}

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _ticking(
    stream: Iterable[AnyBatch],
    progress: _Progress,
    counted: list[tuple[RowCounter, RowCounter]],
) -> Iterator[AnyBatch]:
    for batch in stream:
        progress.tick(counted)
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
    run_id: str, source: str, stretch: list[str], combiner: str | None = None
) -> str:
    """Chord body: once every partition has succeeded, write each node's manifest, sum the
    partitions' rows on its node run and finish it succeeded.

    When the source was read slice by slice in the partition tasks, it is joined here too;
    otherwise ``produce_partitions`` has finished it.
    """
    parts = list(PartitionRun.objects.filter(run_id=run_id, source=source).order_by("index"))
    joined = [key for key in parts[0].nodes if key != combiner] if parts else stretch
    node_runs = {
        nr.node_key: nr for nr in NodeRun.objects.filter(run_id=run_id, node_key__in=joined)
    }
    run = FlowRun.objects.get(id=run_id)
    _check_active(run, list(node_runs.values()))
    done = [p.index for p in parts if p.status == NodeStatus.SUCCEEDED]
    if not parts or done != list(range(len(parts))):
        text = f"partitions missing after the join: {len(done)} of {len(parts)} succeeded"
        _fail(node_runs[joined[0]], text, "", [source, *stretch])
    definition = version_of(run.version_id).definition
    for key in joined:
        is_derived = key in stretch and derived(definition, key, stretch)
        manifest = [
            Part("" if is_derived else output_name(run_id, key, p.index), *p.rows_of(key))
            for p in parts
        ]
        if is_derived:
            upstream = source if key == stretch[0] else stretch[stretch.index(key) - 1]
            recipe = derivation(definition, key, manifest_name(run_id, upstream))
            ref = write_manifest(manifest_name(run_id, key), manifest, derived_from=recipe)
        else:
            ref = write_manifest(manifest_name(run_id, key), manifest)
        transitions.finish_node(
            node_runs[key],
            NodeStatus.SUCCEEDED,
            rows_in=sum(part.rows_in for part in manifest),
            rows_out=sum(part.rows_out for part in manifest),
            output_ref=ref,
        )
    logger.info("run %s: %s joined over %d partitions", run_id, ", ".join(joined), len(parts))
    return stretch[-1] if stretch else source


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
