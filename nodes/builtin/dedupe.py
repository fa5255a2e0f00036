"""``dedupe``: one record per key, the first or the last of those that share it.

``keep: first`` streams: a record goes out as soon as its key is new, and only the keys are
held. ``keep: last`` holds the latest record of every key until the input ends, then gives
them in the order of their positions in the input (as ``pandas.drop_duplicates(keep="last")``).
Either way the state is bounded by ``max_keys``; past it the node fails, naming the bound. Key
values compare as ``join`` and ``aggregate`` compare them; nulls are equal to each other.

As a :class:`~nodes.sdk.capabilities.Combinable` node it also runs per partition: a
partition's partial state is what it keeps of its own part (``first``: the first record of each
of its keys, in order; ``last``: ``[position, record]`` of the last record of each key, in
order of position), and the combine step dedupes those, partition after partition, as if the
whole input had come in one piece.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import count
from operator import itemgetter
from typing import Any, Literal

from pydantic import Field

from nodes.builtin.keys import Key, key_reader
from nodes.builtin.paths import upstream_problem
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, Batch, Record, first_input
from nodes.sdk.capabilities import Combinable
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import Problem, RecordSchema


class DedupeConfig(NodeConfig):
    """What makes two records duplicates, and which one stays."""

    key: list[str] = Field(min_length=1, description="The fields whose values make the key.")
    keep: Literal["first", "last"] = Field(
        "first", description="Keep the first record of each key, or the last."
    )
    max_keys: int = Field(
        1_000_000,
        ge=1,
        le=100_000_000,
        description="The most different keys; past it the node fails.",
    )


class DedupeNode(Combinable, Node[DedupeConfig]):
    """Drops records whose key an earlier (or a later) record has; the schema passes through."""

    type = "dedupe"
    version = 1
    label = "Dedupe"
    description = "Keep one record per key: the first or the last."
    category = "transform"
    inputs = (Port("in", description="Records with duplicates."),)
    outputs = (Port("out", description="One record per key."),)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return inputs.get("in", RecordSchema.unknown())

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        schema = inputs.get("in", RecordSchema.unknown())
        found = (
            upstream_problem(f"config.key[{index}]", path, schema)
            for index, path in enumerate(self.config.key)
        )
        return [problem for problem in found if problem]

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[Batch]]
    ) -> Iterator[Batch]:
        batches = first_input(inputs)
        if self.config.keep == "first":
            return self._first(context, batches)
        return self._last(context, batches)

    def _first(self, context: ExecutionContext, batches: Iterable[Batch]) -> Iterator[Batch]:
        key_of = key_reader(self.config.key)
        seen: set[Key] = set()
        for batch in batches:
            self._check_cancel(context)
            kept = []
            for record in batch:
                key = key_of(record)
                if key not in seen:
                    self._add(seen, key)
                    kept.append(record)
            if kept:
                yield kept

    def _last(self, context: ExecutionContext, batches: Iterable[Batch]) -> Iterator[Batch]:
        arrival = count()
        kept = self._latest(context, ([(next(arrival), r) for r in batch] for batch in batches))
        for start in range(0, len(kept), DEFAULT_BATCH_SIZE):
            yield [record for _, record in kept[start : start + DEFAULT_BATCH_SIZE]]

    def _latest(
        self, context: ExecutionContext, parts: Iterable[Iterable[tuple[Any, Record]]]
    ) -> list[tuple[Any, Record]]:
        """The last record of each key with its place in the input, in order of place, from
        ``(place, record)`` pairs in input order."""
        key_of = key_reader(self.config.key)
        latest: dict[Key, tuple[Any, Record]] = {}
        for part in parts:
            self._check_cancel(context)
            for place, record in part:
                key = key_of(record)
                if key not in latest and len(latest) >= self.config.max_keys:
                    self._too_many()
                latest[key] = (place, record)
        return sorted(latest.values(), key=itemgetter(0))

    # --- per partition, then one combine (Combinable) ---------------------------------------
    def execute_partial(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[Batch]]
    ) -> list[Any]:
        """``first``: the first record of each key of this partition, in order; ``last``:
        ``[position, record]`` of the last record of each key, by position in the partition."""
        batches = first_input(inputs)
        if self.config.keep == "first":
            return [record for batch in self._first(context, batches) for record in batch]
        arrival = count()
        parts = ([(next(arrival), record) for record in batch] for batch in batches)
        return [[position, record] for position, record in self._latest(context, parts)]

    def combine(self, context: ExecutionContext, partials: Iterable[Any]) -> Iterator[Batch]:
        """The partitions' kept records deduped again, partition after partition: a key's
        first (last) record over the whole input is the first (last) of the first (last)
        partition that has the key."""
        if self.config.keep == "first":
            chunks = (
                partial[start : start + DEFAULT_BATCH_SIZE]
                for partial in partials
                for start in range(0, len(partial), DEFAULT_BATCH_SIZE)
            )
            return self._first(context, chunks)
        return self._combined_last(context, partials)

    def _combined_last(self, context: ExecutionContext, partials: Iterable[Any]) -> Iterator[Batch]:
        parts = (
            [((number, position), record) for position, record in partial]
            for number, partial in enumerate(partials)
        )
        kept = self._latest(context, parts)
        for start in range(0, len(kept), DEFAULT_BATCH_SIZE):
            yield [record for _, record in kept[start : start + DEFAULT_BATCH_SIZE]]

    def _add(self, seen: set[Key], key: Key) -> None:
        if len(seen) >= self.config.max_keys:
            self._too_many()
        seen.add(key)

    def _too_many(self) -> None:
        bound = f"{self.config.max_keys:,}"
        raise NodeError(
            f"more than {bound} different keys (max_keys = {bound}): dedupe fewer records, or "
            "raise max_keys if the workers have the memory",
            permanent=True,
        )

    @staticmethod
    def _check_cancel(context: ExecutionContext) -> None:
        if context.is_cancelled():
            raise NodeError("the run was cancelled", permanent=True)
