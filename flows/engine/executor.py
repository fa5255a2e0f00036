"""Execute one node of a run: wire its inputs from upstream outputs, stream, store the output."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from pydantic import ValidationError

from flowplatform import telemetry
from flows import transitions
from flows.engine import heartbeat
from flows.engine.handoff import (
    MAX_PARTITIONS,
    Part,
    flow_data_storage,
    manifest_name,
    output_name,
    partial_name,
    port_ref,
    read_bytes,
    read_output,
    write_manifest,
    write_output,
    write_partitions,
    write_ports,
)
from flows.models import (
    ACTIVE_RUN_STATUSES,
    FlowRun,
    FlowVersion,
    NodeRun,
    NodeStatus,
    PartitionRun,
    RunStatus,
)
from flows.validation import pydantic_problems
from nodes import redaction
from nodes.models import lookup_connection
from nodes.redaction import Redactor
from nodes.registry import registry
from nodes.sdk import ExecutionContext, Node, NodeError, capabilities
from nodes.sdk.capabilities import PartitionPolicy
from nodes.sdk.node import AnyBatch, Output, per_port

logger = logging.getLogger("flowplatform.engine")

PROGRESS_EVERY_S = 2.0


class RunCancelled(Exception):
    """The run was cancelled while this node was executing."""


@dataclass
class Outcome:
    rows_in: int
    rows_out: int
    output_ref: str
    #: The rows of each port, for an output kept per port.
    rows_out_by_port: dict[str, int] | None = None
    #: The output was combined from partial states of the partitions before it.
    partitioned: bool = False

    def figures(self) -> dict[str, Any]:
        """What a succeeded node run records: rows in and out (per port when its output is kept
        per port), and its output reference."""
        figures: dict[str, Any] = {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "output_ref": self.output_ref,
        }
        if self.rows_out_by_port is not None:  # as pairs: a JSON object would lose the order
            figures["rows_out_by_port"] = [[p, n] for p, n in self.rows_out_by_port.items()]
        if self.partitioned:
            figures["partitioned"] = True
        return figures


class RowCounter:
    """Counts the rows that pass through wrapped streams."""

    def __init__(self) -> None:
        self.rows = 0

    def wrap(self, batches: Iterable[AnyBatch]) -> Iterator[AnyBatch]:
        for batch in batches:
            self.rows += len(batch)
            yield batch


class Progress:
    """Live row counts (which renew the node's lease), written at most every
    ``PROGRESS_EVERY_S`` seconds. Raises ``RunCancelled`` once the run is cancelled, and
    ``transitions.LeaseLost`` once another delivery has taken the node over."""

    def __init__(
        self, node_run: NodeRun, rows_in: RowCounter, cancelled: CancelProbe | None = None
    ) -> None:
        self.node_run = node_run
        self.rows_in = rows_in
        self.rows_out = 0
        self.cancelled = cancelled
        self._last = time.monotonic()

    def wrap(self, batches: Iterable[Output]) -> Iterator[Output]:
        for batch in batches:
            if self.cancelled is not None and self.cancelled():
                raise RunCancelled()
            self.rows_out += len(batch)
            now = time.monotonic()
            if now - self._last >= PROGRESS_EVERY_S:
                self._last = now
                if heartbeat.lost(self.node_run) or not transitions.heartbeat(
                    self.node_run, rows_in=self.rows_in.rows, rows_out=self.rows_out
                ):
                    raise transitions.LeaseLost()
            yield batch


class CancelProbe:
    """Answers "should the node stop?" from the database, at most once a second.

    By default only a cancelled run stops a node; ``stop_when_finished`` also stops it once the
    run has ended any other way (a partition elsewhere failed it).
    """

    def __init__(self, run_id: str, stop_when_finished: bool = False) -> None:
        self.run_id = run_id
        self.stop_when_finished = stop_when_finished
        # The run was active when the node was claimed: the first look can wait a second.
        self._checked = time.monotonic()
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= 1.0:
            self._checked = now
            status = FlowRun.objects.filter(id=self.run_id).values_list("status", flat=True).first()
            if self.stop_when_finished:
                self._cancelled = status not in ACTIVE_RUN_STATUSES
            else:
                self._cancelled = status == RunStatus.CANCELLED
        return self._cancelled


def load_run(node_run: NodeRun) -> FlowRun:
    """The node run's run with its version (kept on ``node_run``); versions are cached."""
    run = node_run._state.fields_cache.get("run")
    if run is None:
        run = FlowRun.objects.get(pk=node_run.run_id)
        node_run.run = run
    if "version" not in run._state.fields_cache:
        run.version = version_of(run.version_id)
    return run


_VERSIONS_KEPT = 256
_versions: OrderedDict[int, FlowVersion] = OrderedDict()


_versions_lock = threading.Lock()


def version_of(version_id: int) -> FlowVersion:
    """A flow version, from a per-process cache: versions are immutable once saved."""
    with _versions_lock:
        version = _versions.get(version_id)
        if version is not None:
            _versions.move_to_end(version_id)
            return version
    version = FlowVersion.objects.select_related("flow").get(pk=version_id)
    with _versions_lock:
        _versions[version_id] = version
        if len(_versions) > _VERSIONS_KEPT:
            _versions.popitem(last=False)
    return version


def node_spec(definition: dict[str, Any], key: str) -> dict[str, Any]:
    return next(node for node in definition["nodes"] if node["key"] == key)


def build_node(spec: dict[str, Any]) -> Node:
    """The node instance for a definition entry; a permanent NodeError if its type is missing."""
    cls = registry.require(spec["type"])
    try:
        return cls(spec["config"])
    except ValidationError as exc:
        # A config saved under earlier rules (a pattern refused since): a retry cannot help.
        problems = "; ".join(str(problem) for problem in pydantic_problems(exc, "config"))
        raise NodeError(f"invalid config: {problems}", permanent=True) from None


def partition_rows(spec: dict[str, Any]) -> int | None:
    """Rows per partition when the node splits its output (a number in ``partition_rows``)."""
    rows = spec["config"].get("partition_rows")
    if isinstance(rows, bool) or not isinstance(rows, int | float) or rows < 1:
        return None  # unset, null, or sql_query's "auto"
    return int(rows)


def partition_policy() -> PartitionPolicy:
    """The settings of sources that partition on their own when large."""
    return PartitionPolicy(
        min_rows=settings.FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS,
        rows_per_partition=settings.FLOWPLATFORM_AUTO_PARTITION_ROWS,
        max_partitions=MAX_PARTITIONS,
    )


def fan_out_rows(spec: dict[str, Any]) -> int | None:
    """Rows per partition when the node's output may run partition by partition through the
    nodes after it, decided without I/O: its ``partition_rows``, or for a source that
    partitions by default (``Node.partitions_by_default``: ``file_read`` per file,
    ``sql_query`` when large) the policy's ``rows_per_partition``; each run then decides
    (:func:`run_fan_out_rows`)."""
    rows = partition_rows(spec)
    if rows is not None:
        return rows
    cls = registry.get(spec["type"])
    if cls is not None and capabilities.partitions_by_default(cls, spec.get("config") or {}):
        return partition_policy().rows_per_partition
    return None


def run_fan_out_rows(node_run: NodeRun, spec: dict[str, Any]) -> int | None:
    """Rows per partition of this run of a source that may fan out (:func:`fan_out_rows`),
    decided as the run reaches it: its ``partition_rows``, or what a source that partitions
    by default answers (``Node.partition_rows_for_run``: ``sql_query`` asks its database for
    the query's row estimate). ``None``: the source runs whole, as any other node."""
    rows = partition_rows(spec)
    if rows is not None or fan_out_rows(spec) is None:
        return rows
    run = load_run(node_run)
    redactor = Redactor()
    try:
        node = build_node(spec)
    except NodeError:
        return None  # its own execution fails it, as any node's
    context = make_context(
        run, spec, node_run.attempts, CancelProbe(str(run.id)), redactor=redactor
    )
    with redaction.scope(redactor):
        return capabilities.partition_rows_for_run(node, context, partition_policy())


def make_context(
    run: FlowRun,
    spec: dict[str, Any],
    attempt: int,
    is_cancelled: Callable[[], bool],
    partition: int | None = None,
    node_run: NodeRun | None = None,
    redactor: Redactor | None = None,
    checkpoint: tuple[Any, Callable[[Any], None]] | None = None,
    input_refs: dict[str, list[str]] | None = None,
) -> ExecutionContext:
    """The context of one node; ``node_run`` (a node run executed whole) gives it the node
    run's checkpoint, ``checkpoint`` (a node inside a partition: what it saved in this
    partition, and how to save more) another.

    ``redactor`` learns the secrets of the connections the node looks up: the task that runs
    the node redacts what it records and raises with it."""
    checkpoints: dict[str, Any] = {}
    if node_run is not None:
        checkpoints = {
            "checkpoint": node_run.checkpoint,
            "save_checkpoint": lambda value: _save_checkpoint(node_run, value),
        }
    elif checkpoint is not None:
        checkpoints = {"checkpoint": checkpoint[0], "save_checkpoint": checkpoint[1]}
    return ExecutionContext(
        run_id=str(run.id),
        node_key=spec["key"],
        flow=run.version.flow.slug,
        params=dict(run.params),
        interval_start=run.interval_start,
        interval_end=run.interval_end,
        attempt=attempt,
        logger=logging.getLogger(f"flowplatform.node.{spec['type']}"),
        connection_lookup=lookup_connection,
        storage=flow_data_storage(),
        is_cancelled=is_cancelled,
        partition=partition,
        redactor=redactor if redactor is not None else Redactor(),
        payload=run.payload,
        input_refs=input_refs or {},
        **checkpoints,
    )


def _save_checkpoint(node_run: NodeRun, value: Any) -> None:
    """A node's checkpoint, saved only while its lease is this process's: a node taken over
    stops at its next checkpoint (so it sends nothing more the new owner sends too). The
    engine's bookkeeping: no client span under the node's."""
    with telemetry.untraced():
        saved = transitions.save_checkpoint(node_run, value)
    if not saved:
        raise transitions.LeaseLost()


def upstream_streams(
    node_run: NodeRun, definition: dict[str, Any], outputs: dict[str, str] | None = None
) -> dict[str, Iterator[AnyBatch]]:
    """One stream per input port: the outputs of every upstream node feeding it, in edge order.

    ``outputs`` (node key -> output of the run's succeeded nodes) is read when not given.
    A partitioned upstream output is read partition after partition.
    """
    refs: dict[str, list[str]] = {}
    if outputs is None:
        outputs = dict(
            NodeRun.objects.filter(run_id=node_run.run_id, status=NodeStatus.SUCCEEDED).values_list(
                "node_key", "output_ref"
            )
        )
    storage = flow_data_storage()
    for edge in definition["edges"]:
        if edge["to"] != node_run.node_key:
            continue
        if edge["from"] not in outputs:
            raise NodeError(f"upstream node '{edge['from']}' has no output", permanent=True)
        ref = port_ref(outputs[edge["from"]], edge["from_port"], storage)
        refs.setdefault(edge["to_port"], []).append(ref)
    return {port: _concat(names, storage) for port, names in refs.items()}


def _concat(refs: list[str], storage: Any) -> Iterator[AnyBatch]:
    for ref in refs:
        yield from read_output(ref, storage)


def execute_node(
    node_run: NodeRun,
    on_partition: Callable[[int, Part], None] | None = None,
    outputs: dict[str, str] | None = None,
    redactor: Redactor | None = None,
    rows: int | None = None,
) -> Outcome:
    """Run ``node_run``'s node to completion and store its output; raises NodeError on failure.

    A node with ``partition_rows`` (or ``rows``: the fan-out's decision for this run) writes
    its output as partitions of that many rows plus a manifest (the output reference);
    ``on_partition(index, part)`` is called as each partition is stored.
    ``outputs``: the run's succeeded outputs when the claim read them already.
    ``redactor`` learns the secrets of the connections the node uses.
    """
    run = load_run(node_run)
    definition = run.version.definition
    spec = node_spec(definition, node_run.node_key)
    node = build_node(spec)
    cancelled = CancelProbe(str(run.id))
    context = make_context(
        run, spec, node_run.attempts, cancelled, node_run=node_run, redactor=redactor
    )
    combinable = capabilities.combinable_with(type(node), spec.get("config") or {})
    parts = combined_partitions(str(run.id), node_run.node_key) if combinable else None
    if parts is not None:
        return _combine(node_run, node, context, parts, cancelled)
    rows_in = RowCounter()
    inputs = {
        port: rows_in.wrap(stream)
        for port, stream in upstream_streams(node_run, definition, outputs).items()
    }
    progress = Progress(node_run, rows_in, cancelled)
    output = progress.wrap(node.run(context, inputs))
    return _store(node_run, node, output, rows_in, rows or partition_rows(spec), on_partition)


def combined_partitions(run_id: str, node_key: str) -> list[PartitionRun] | None:
    """The partitions that stored partial states of ``node_key`` (a combinable node after a
    partitioned stretch, decision 0037), in partition order; ``None`` when it runs whole."""
    parts = [
        part
        for part in PartitionRun.objects.filter(run_id=run_id).order_by("source", "index")
        if node_key in part.nodes
    ]
    if not parts:
        return None
    unfinished = [part.index for part in parts if part.status != NodeStatus.SUCCEEDED]
    if unfinished:
        raise NodeError(f"partitions {unfinished} have not succeeded", permanent=True)
    return parts


def _combine(
    node_run: NodeRun,
    node: Node,
    context: ExecutionContext,
    parts: list[PartitionRun],
    cancelled: CancelProbe,
) -> Outcome:
    """The node's output from its partitions' partial states: one combine step
    (``capabilities.run_combine``); its rows in are the partitions' rows in, counted once."""
    run_id, key = str(node_run.run_id), node_run.node_key
    storage = flow_data_storage()
    partials = (read_bytes(partial_name(run_id, key, part.index), storage) for part in parts)
    rows_in = RowCounter()
    rows_in.rows = sum(part.rows_of(key)[0] for part in parts)
    assert isinstance(node, capabilities.Combinable)
    output = Progress(node_run, rows_in, cancelled).wrap(
        capabilities.run_combine(node, context, partials)
    )
    outcome = _store(node_run, node, output, rows_in, None, None)
    outcome.partitioned = True
    return outcome


def _store(
    node_run: NodeRun,
    node: Node,
    output: Iterable[Output],
    rows_in: RowCounter,
    rows: int | None,
    on_partition: Callable[[int, Part], None] | None,
) -> Outcome:
    """Store a node's output (per port, whole, or cut in partitions of ``rows`` rows)."""
    run_id = str(node_run.run_id)
    cancelled = CancelProbe(run_id)
    try:
        if per_port(node):
            ports = [port.name for port in node.output_ports()]
            ref, by_port = write_ports(run_id, node_run.node_key, ports, output)
            return Outcome(rows_in.rows, sum(by_port.values()), ref, by_port)
        if rows is None:
            ref, rows_out = write_output(output_name(run_id, node_run.node_key), output)
            return Outcome(rows_in.rows, rows_out, ref)
        parts = write_partitions(run_id, node_run.node_key, output, rows, on_partition)
    except NodeError:
        if cancelled():
            raise RunCancelled() from None  # nodes that check is_cancelled raise NodeError
        raise
    ref = write_manifest(manifest_name(run_id, node_run.node_key), parts)
    return Outcome(rows_in.rows, sum(part.rows_out for part in parts), ref)
