"""The Node base class: the contract every node type fulfils."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import Any, ClassVar

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

    def __init__(self, config: NodeConfig | Mapping[str, Any]) -> None:
        if not isinstance(config, NodeConfig):
            config = self.Config.model_validate(dict(config))
        self.config = config

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
    ) -> Iterator[Batch]:
        raise NotImplementedError

    def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> Iterable[Any] | None:
        """For a source whose output can be read in independent slices: one JSON-able
        description per slice of about ``rows_per_slice`` rows, in output order, produced
        lazily (``None``: it cannot; it is then read once and cut). Each slice is read by
        :meth:`execute_slice` in a task of its own, started as soon as it is produced, in
        parallel across workers. Checks that can fail at once belong before the first one."""
        return None

    def execute_slice(self, context: ExecutionContext, slice_: Any) -> Iterator[Batch]:
        """The batches of one slice planned by :meth:`plan_slices`."""
        raise NotImplementedError


class RowBatch(list[Record]):
    """A batch of records built from rows (value tuples in ``names`` order), which it keeps
    until :meth:`take_rows`: an encoder can then take the columns without walking the dicts.

    Only the first taker gets the rows (the source's own output, written as it is yielded);
    a node downstream that changed the records and yields the same list is encoded from them.
    """

    __slots__ = ("_rows", "names")

    def __init__(self, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        super().__init__(map(dict, map(zip, repeat(names), rows)))
        self.names = names
        self._rows: list[tuple[Any, ...]] | None = rows

    def take_rows(self) -> list[tuple[Any, ...]] | None:
        rows, self._rows = self._rows, None
        return rows if rows is not None and len(rows) == len(self) else None


def first_input(inputs: Mapping[str, RecordStream]) -> RecordStream:
    """The single input stream of a one-input node (empty when nothing is connected)."""
    return next(iter(inputs.values()), ())


def rebatch(batches: Iterable[Batch], size: int) -> Iterator[Batch]:
    """Re-cut a stream of batches into batches of at most ``size`` records."""
    pending: Batch = []
    for batch in batches:
        for record in batch:
            pending.append(record)
            if len(pending) >= size:
                yield pending
                pending = []
    if pending:
        yield pending


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Node",
    "NodeConfig",
    "PortKind",
    "RowBatch",
    "first_input",
    "rebatch",
]
