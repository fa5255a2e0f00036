"""The Node base class: the contract every node type fulfils."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import is_, itemgetter
from typing import Any, ClassVar, TypeVar, overload

from pydantic import BaseModel, ConfigDict

from nodes.sdk.context import ExecutionContext
from nodes.sdk.ports import Port, PortKind
from nodes.sdk.schema import Problem, RecordSchema

Record = dict[str, Any]
Batch = list[Record]
RecordStream = Iterable[Batch]

DEFAULT_BATCH_SIZE = 1000


class NodeConfig(BaseModel):
    """Base of node config models: strict about unknown keys, immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Node:
    """A node type.

    Subclasses declare, as class attributes, what the platform inspects before anything runs:
    ``type``, ``version``, ``label``, ``description``, ``category``, the ``inputs`` and
    ``outputs`` ports and the ``Config`` model. They implement:

    - ``output_schema(inputs)`` -> the record schema of the output, given the schemas arriving
      on each input port (defaults to unknown);
    - ``check(inputs)`` -> problems found against those schemas (e.g. a field that is missing);
    - ``execute(context, inputs)`` -> an iterator of record batches. It must stream: read input
      batches lazily and yield bounded batches, never a whole dataset.

    ``execute`` raises :class:`~nodes.sdk.errors.NodeError` for failures users can act on;
    any other exception is treated as a bug in the node and may be retried.

    A data preview calls ``preview(context, inputs)`` instead of ``execute``, with
    ``context.sample_limit`` set (see :meth:`preview`).
    """

    type: ClassVar[str]
    version: ClassVar[int] = 1
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    category: ClassVar[str] = "transform"
    inputs: ClassVar[tuple[Port, ...]] = (Port("in"),)
    outputs: ClassVar[tuple[Port, ...]] = (Port("out"),)
    Config: ClassVar[builtins.type[NodeConfig]] = NodeConfig
    #: Record-by-record nodes may run once per partition of their input.
    partitionable: ClassVar[bool] = False
    #: The output depends only on the config and the input records (no I/O, no clock, no
    #: randomness): inside a partitioned stretch it need not be stored, it is recomputed when
    #: read (filter and map_fields are; a node that calls out is not).
    pure: ClassVar[bool] = False
    #: The node takes :class:`RowBatch` batches as they come (and plain lists too); any other
    #: node receives every batch as a list of dicts.
    accepts_rows: ClassVar[bool] = False
    #: The node acts outside the run (sends, writes, deletes). A data preview never calls its
    #: ``execute``: only a ``preview`` of its own, if it has one. ``None``: a node of category
    #: ``destination`` has side effects, any other has none.
    side_effects: ClassVar[bool | None] = None
    #: What the run's two counts mean for this node, as users read them: the records it
    #: took in and the records it put out (``None``: "rows in", "rows out"). A sink whose
    #: output is one summary per request says so: ``("records sent", "requests")``.
    counts: ClassVar[tuple[str, str] | None] = None

    def __init__(self, config: NodeConfig | Mapping[str, Any]) -> None:
        if not isinstance(config, NodeConfig):
            config = self.Config.model_validate(dict(config))
        self.config = config

    @classmethod
    def partitionable_with(cls, config: Mapping[str, Any]) -> bool:
        """Whether a node of this type with this (raw) config may run once per partition
        (:attr:`partitionable` unless a mode of the node cannot, e.g. ``sql_write``'s replace)."""
        return cls.partitionable

    @classmethod
    def partitions_by_default(cls, config: Mapping[str, Any]) -> bool:
        """Whether a source with this (raw) config may partition its output without
        ``partition_rows``, so that the partitionable nodes after it run once per partition, in
        parallel (``file_read``: one slice per file; ``sql_query``: when its query is large).
        Decided without I/O; :meth:`partition_rows_for_run` decides for each run. Without a
        stretch after it, such a source runs and stores its output whole, as any other."""
        return False

    def partition_rows_for_run(
        self, context: ExecutionContext, policy: PartitionPolicy
    ) -> int | None:
        """For a source that partitions by default: the rows per partition of this run, or
        ``None`` to run it whole, unpartitioned. Called as the run reaches the source, before
        anything is read or any node after it is claimed; it may ask the source cheap questions
        (a planner's row estimate), and must not fail the run for want of an answer (``None``).
        The partitions are then planned by :meth:`plan_slices` with that many rows per slice,
        or, when it plans none, cut from the output as it streams. The default: always
        (``policy.rows_per_partition``)."""
        return policy.rows_per_partition

    @property
    def is_source(self) -> bool:
        return not self.inputs

    @classmethod
    def input_port(cls, name: str) -> Port | None:
        return next((p for p in cls.inputs if p.name == name), None)

    @classmethod
    def output_port(cls, name: str) -> Port | None:
        return next((p for p in cls.outputs if p.name == name), None)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The catalog entry: what the API and admin show about this type."""
        return {
            "type": cls.type,
            "version": cls.version,
            "label": cls.label or cls.type,
            "description": cls.description,
            "category": cls.category,
            "inputs": [p.as_dict() for p in cls.inputs],
            "outputs": [p.as_dict() for p in cls.outputs],
            "partitionable": cls.partitionable,
            "config_schema": cls.Config.model_json_schema(),
        }

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return RecordSchema.unknown()

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        return []

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        raise NotImplementedError

    def run(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[AnyBatch]:
        """What the engine calls: :meth:`execute`, with row batches turned into lists of dicts
        on the way in unless the node ``accepts_rows``."""
        if not self.accepts_rows:
            inputs = {port: map(as_records, stream) for port, stream in inputs.items()}
        return self.execute(context, inputs)  # type: ignore[arg-type]

    @classmethod
    def has_side_effects(cls) -> bool:
        if cls.side_effects is None:
            return cls.category == "destination"
        return cls.side_effects

    @classmethod
    def can_preview(cls) -> bool:
        """Whether a data preview can run this node: it has no side effects, or it overrides
        :meth:`preview` to show what it would do without doing it."""
        return not cls.has_side_effects() or cls.preview is not Node.preview

    def preview(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        """The batches a data preview shows for this node, on a sample.

        ``context.sample_limit`` is set: read at most that many records (a source pushes it
        down to where it reads: ``LIMIT`` in SQL, the first page of an API, the first file's
        first rows); the preview stops reading after that many anyway. Bound blocking waits by
        ``context.time_left(...)``. Nothing may change outside the run: a node with side
        effects overrides this to return what it *would* send or write (its secrets redacted
        with ``context.redactor``), and is not executed at all when it does not.

        The default runs :meth:`execute` (nodes without side effects only).
        """
        if self.has_side_effects():
            raise NotImplementedError(f"node type '{self.type}' has no preview")
        return self.execute(context, inputs)

    def run_preview(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[AnyBatch]:
        """What a data preview calls: :meth:`preview`, with inputs converted as in :meth:`run`."""
        if not self.accepts_rows:
            inputs = {port: map(as_records, stream) for port, stream in inputs.items()}
        return self.preview(context, inputs)  # type: ignore[arg-type]

    def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> Iterable[Any] | None:
        """For a source whose output can be read in independent slices: one JSON-able
        description per slice of about ``rows_per_slice`` rows, in output order, produced
        lazily (``None``: it cannot; it is then read once and cut). Each slice is read by
        :meth:`execute_slice` in a task of its own, started as soon as it is produced, in
        parallel across workers. Checks that can fail at once belong before the first one."""
        return None

    def execute_slice(self, context: ExecutionContext, slice_: Any) -> Iterator[AnyBatch]:
        """The batches of one slice planned by :meth:`plan_slices`."""
        raise NotImplementedError


@dataclass(frozen=True)
class PartitionPolicy:
    """The platform's settings for sources that partition on their own when large
    (``FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS``, ``FLOWPLATFORM_AUTO_PARTITION_ROWS``)."""

    #: Partition only a source expected to produce at least this many rows (0: never).
    min_rows: int
    #: Aim for partitions of this many rows.
    rows_per_partition: int
    #: At most this many partitions: a larger source gets larger partitions.
    max_partitions: int

    def rows_for(self, estimate: int | None) -> int | None:
        """Rows per partition for a source expected to produce ``estimate`` rows (``None``:
        unknown), or ``None`` when it is better read whole."""
        if estimate is None or self.min_rows <= 0 or estimate < self.min_rows:
            return None
        return max(self.rows_per_partition, -(-estimate // self.max_partitions))


class RowBatch(Sequence[Record]):
    """A batch of records held as rows: value tuples in ``names`` order.

    Reading a table gives rows, not dicts, and building a dict per row is most of what a
    record-by-record node would cost. A node that declares ``accepts_rows`` may receive row
    batches and work on them column by column (``filter``, ``map_fields`` do); every other node
    receives plain lists of dicts, built from the rows in C when it needs them
    (:func:`as_records`). The hand-off encoder writes the columns without any dict.

    As a sequence it reads as its records: iterating or indexing builds dicts (a new one each
    time), and it equals a list of equal records. A name given twice keeps its last value,
    as ``dict`` would.
    """

    __slots__ = ("names", "rows")

    def __init__(self, names: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.names = list(names)
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Record]:
        return map(dict, map(zip, repeat(self.names), self.rows))

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> RowBatch: ...

    def __getitem__(self, index: int | slice) -> Record | RowBatch:
        if isinstance(index, slice):
            return RowBatch(self.names, self.rows[index])
        return dict(zip(self.names, self.rows[index], strict=False))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowBatch | list):
            return self.records() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowBatch({self.names!r}, {len(self.rows)} rows)"

    def records(self) -> Batch:
        """The rows as a list of dicts (built in C, no Python frame per row)."""
        return list(self)

    def positions(self) -> dict[str, int]:
        """Each name's column index (a repeated name: its last, as ``dict`` keeps it)."""
        return {name: index for index, name in enumerate(self.names)}

    def column(self, index: int) -> list[Any]:
        """The values of one column, in row order."""
        return list(map(itemgetter(index), self.rows))


AnyBatch = Batch | RowBatch
_B = TypeVar("_B", Batch, AnyBatch)


def has_null(values: Sequence[Any]) -> bool:
    """Whether a column holds a null, by identity in C (``None in values`` would call each
    value's ``__eq__``)."""
    return any(map(is_, values, repeat(None)))


def as_records(batch: AnyBatch) -> Batch:
    """A batch as a list of dicts, whatever form it travels in."""
    return batch.records() if type(batch) is RowBatch else batch  # type: ignore[return-value]


def first_input(inputs: Mapping[str, Iterable[_B]]) -> Iterable[_B]:
    """The single input stream of a one-input node (empty when nothing is connected)."""
    return next(iter(inputs.values()), ())


def rebatch(batches: Iterable[_B], size: int) -> Iterator[_B]:
    """Re-cut a stream of batches into batches of at most ``size`` records, by slices; row
    batches stay row batches unless a cut joins pieces of different columns."""
    pieces: list[Any] = []  # the start of the next batch, joined once it is full
    held = 0
    for batch in batches:
        start = 0
        if pieces:
            start = size - held
            pieces.append(batch[:start])
            held += len(pieces[-1])
            if held < size:
                continue
            yield _joined(pieces)
            pieces, held = [], 0
        while len(batch) - start >= size:
            yield batch[start : start + size]
            start += size
        if start < len(batch):
            pieces, held = [batch[start:]], len(batch) - start
    if pieces:
        yield _joined(pieces)


def _joined(pieces: list[Any]) -> Any:
    first = pieces[0]
    if all(type(piece) is RowBatch and piece.names == first.names for piece in pieces):
        return RowBatch(first.names, list(chain.from_iterable(p.rows for p in pieces)))
    return list(chain.from_iterable(map(as_records, pieces)))


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AnyBatch",
    "Node",
    "NodeConfig",
    "PartitionPolicy",
    "PortKind",
    "RowBatch",
    "as_records",
    "first_input",
    "rebatch",
]
