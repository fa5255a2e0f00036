"""Execute one node of a run: wire its inputs from upstream outputs, stream, store the output."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flows import transitions
from flows.engine.handoff import flow_data_storage, output_name, read_batches, write_batches
from flows.models import FlowRun, NodeRun, NodeStatus, RunStatus
from nodes.models import lookup_connection
from nodes.registry import registry
from nodes.sdk import ExecutionContext, NodeError
from nodes.sdk.node import Batch

logger = logging.getLogger("flowplatform.engine")

PROGRESS_EVERY_S = 2.0


class RunCancelled(Exception):
    """The run was cancelled while this node was executing."""


@dataclass
class Outcome:
    rows_in: int
    rows_out: int
    output_ref: str


class RowCounter:
    """Counts the rows that pass through wrapped streams."""

    def __init__(self) -> None:
        self.rows = 0

    def wrap(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        for batch in batches:
            self.rows += len(batch)
            yield batch


class Progress:
    """Heartbeats and live row counts, written at most every ``PROGRESS_EVERY_S`` seconds."""

    def __init__(
        self, node_run_id: int, rows_in: RowCounter, cancelled: CancelProbe | None = None
    ) -> None:
        self.node_run_id = node_run_id
        self.rows_in = rows_in
        self.rows_out = 0
        self.cancelled = cancelled
        self._last = time.monotonic()

    def wrap(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        for batch in batches:
            if self.cancelled is not None and self.cancelled():
                raise RunCancelled()
            self.rows_out += len(batch)
            now = time.monotonic()
            if now - self._last >= PROGRESS_EVERY_S:
                self._last = now
                transitions.heartbeat(
                    self.node_run_id, rows_in=self.rows_in.rows, rows_out=self.rows_out
                )
            yield batch


class CancelProbe:
    """Answers "was the run cancelled?" from the database, at most once a second."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._checked = 0.0
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= 1.0:
            self._checked = now
            status = FlowRun.objects.filter(id=self.run_id).values_list("status", flat=True).first()
            self._cancelled = status == RunStatus.CANCELLED
        return self._cancelled


def node_spec(definition: dict[str, Any], key: str) -> dict[str, Any]:
    return next(node for node in definition["nodes"] if node["key"] == key)


def upstream_streams(node_run: NodeRun, definition: dict[str, Any]) -> dict[str, Iterator[Batch]]:
    """One stream per input port: the outputs of every upstream node feeding it, in edge order."""
    refs: dict[str, list[str]] = {}
    outputs = dict(
        NodeRun.objects.filter(run_id=node_run.run_id, status=NodeStatus.SUCCEEDED).values_list(
            "node_key", "output_ref"
        )
    )
    for edge in definition["edges"]:
        if edge["to"] != node_run.node_key:
            continue
        if edge["from"] not in outputs:
            raise NodeError(f"upstream node '{edge['from']}' has no output", permanent=True)
        refs.setdefault(edge["to_port"], []).append(outputs[edge["from"]])
    storage = flow_data_storage()
    return {port: _concat(names, storage) for port, names in refs.items()}


def _concat(names: list[str], storage: Any) -> Iterator[Batch]:
    for name in names:
        yield from read_batches(name, storage)


def execute_node(node_run: NodeRun) -> Outcome:
    """Run ``node_run``'s node to completion and store its output; raises NodeError on failure."""
    run = node_run.run
    definition = run.version.definition
    spec = node_spec(definition, node_run.node_key)
    cls = registry.get(spec["type"])
    if cls is None:
        raise NodeError(
            f"node type '{spec['type']}' is not installed on this worker", permanent=True
        )
    node = cls(spec["config"])
    rows_in = RowCounter()
    inputs = {
        port: rows_in.wrap(stream)
        for port, stream in upstream_streams(node_run, definition).items()
    }
    cancelled = CancelProbe(str(run.id))
    context = ExecutionContext(
        run_id=str(run.id),
        node_key=node_run.node_key,
        params=dict(run.params),
        interval_start=run.interval_start,
        interval_end=run.interval_end,
        attempt=node_run.attempts,
        logger=logging.getLogger(f"flowplatform.node.{spec['type']}"),
        connection_lookup=lookup_connection,
        storage=flow_data_storage(),
        is_cancelled=cancelled,
        checkpoint=node_run.checkpoint,
        save_checkpoint=lambda value: transitions.save_checkpoint(node_run.pk, value),
    )
    progress = Progress(node_run.pk, rows_in, cancelled)
    name = output_name(str(run.id), node_run.node_key)
    try:
        rows_out = write_batches(name, progress.wrap(node.execute(context, inputs)))
    except NodeError:
        if cancelled():
            raise RunCancelled() from None  # nodes that check is_cancelled raise NodeError
        raise
    return Outcome(rows_in=rows_in.rows, rows_out=rows_out, output_ref=name)
