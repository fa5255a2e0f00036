"""A third-party node package as the registry sees one: registered through an entry point."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import Field

from nodes.sdk import (
    Batch,
    ExecutionContext,
    Node,
    NodeConfig,
    NodeError,
    Partitionable,
    Port,
    PortKind,
    RecordSchema,
    RecordStream,
    SlicedSource,
    first_input,
)


class UpperConfig(NodeConfig):
    field: str = Field(description="The string field to upper-case.")


class UpperNode(Partitionable, Node[UpperConfig]):
    """Upper-cases one string field of every record."""

    type = "dummy_upper"
    label = "Upper-case (plugin)"
    description = "Upper-cases one field. Shipped by a plugin package."

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return next(iter(inputs.values()), RecordSchema.unknown())

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        name = self.config.field
        for batch in first_input(inputs):
            yield [{**r, name: str(r.get(name, "")).upper()} for r in batch]


class AuditNode(Node):
    """Counts summaries; its input takes summaries only (to exercise port kinds)."""

    type = "dummy_audit"
    label = "Audit summaries (plugin)"
    inputs = (Port("summaries", PortKind.SUMMARY),)

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        yield [{"summaries": sum(len(b) for b in first_input(inputs))}]


class FlakyConfig(NodeConfig):
    fail_times: int = Field(1, description="Attempts that fail before one succeeds.")
    permanent: bool = Field(False, description="Whether the failures are permanent.")


class FlakyNode(Node[FlakyConfig]):
    """Passes records through, failing its first ``fail_times`` attempts."""

    type = "dummy_flaky"

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        if context.attempt <= self.config.fail_times:
            raise NodeError(
                f"flaky failure on attempt {context.attempt}", permanent=self.config.permanent
            )
        yield from first_input(inputs)


class CrashNode(Node):
    """Kills the process executing it, every time: a poison node."""

    type = "dummy_crash"

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        os.kill(os.getpid(), signal.SIGKILL)
        yield []


class SpinConfig(NodeConfig):
    seconds: float = Field(60, description="How long to compute before yielding one record.")


class SpinNode(Node[SpinConfig]):
    """A source busy in pure Python for ``seconds``, never looking at cancellation."""

    type = "dummy_spin"
    inputs = ()

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        deadline = time.monotonic() + self.config.seconds
        turns = 0
        while time.monotonic() < deadline:
            turns += 1
        yield [{"turns": turns}]


class SlicesConfig(NodeConfig):
    slices: int = Field(3, description="How many slices the source plans.")
    rows: int = Field(10, description="Records per slice.")
    fail_slice: int = Field(-1, description="A slice whose reading fails (-1: none).")
    fail_times: int = Field(0, description="Attempts of that slice that fail.")


class SlicesNode(SlicedSource, Node[SlicesConfig]):
    """A sliced source planning its slices as a list (not a generator): ``{"id": n}`` records,
    ``rows`` per slice; the slice ``fail_slice`` fails its first ``fail_times`` attempts."""

    type = "dummy_slices"
    inputs = ()

    @classmethod
    def partitions_by_default(cls, config: Mapping[str, Any]) -> bool:
        return True

    def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> list[Any]:
        return [{"first": i * self.config.rows, "slice": i} for i in range(self.config.slices)]

    def execute_slice(self, context: ExecutionContext, slice_: Any) -> Iterator[Batch]:
        if slice_["slice"] == self.config.fail_slice and context.attempt <= self.config.fail_times:
            raise NodeError(f"slice {slice_['slice']} failed on attempt {context.attempt}")
        first = slice_["first"]
        yield [{"id": n} for n in range(first, first + self.config.rows)]

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        for slice_ in self.plan_slices(context, self.config.rows):
            yield from self.execute_slice(context, slice_)
