"""Optional capabilities of a node type: what it may declare so that the engine runs it faster.

The contract of every node is small (:class:`~nodes.sdk.node.Node`: ports, config,
``execute``). A node type that can do more says so by mixing in one of these classes, before
``Node`` in its bases (decision 0031)::

    class FilterNode(Partitionable, Pure, AcceptsRows, Node[FilterConfig]): ...

- :class:`Partitionable`: record by record, it may run once per partition of a partitioned
  source's output, in parallel (``filter``, ``map_fields``, ``http_post``, ``sql_write``, and
  ``branch``, whose output is then kept per partition and per port);
- :class:`Pure`: its output depends only on its config and input records, so inside a
  partitioned stretch it is recomputed when read instead of stored (``filter``, ``map_fields``);
- :class:`AcceptsRows`: it takes :class:`~nodes.sdk.batches.RowBatch` batches as they come
  instead of lists of dicts (``filter``, ``map_fields``, ``http_post``, ``sql_write``);
- :class:`SlicedSource`: a source that reads its output in independent slices, each in a task
  of its own (``sql_query`` with ``partition_column``, ``file_read`` per file);
- :class:`Rereadable`: a sliced source whose slices can be read again later, exactly as the
  run read them or not at all, so that its partitions need not be stored (``file_read``);
- :class:`Combinable`: a whole-input node whose output can be computed from one partial state
  per partition, merged by one combine step (``aggregate``, ``dedupe``).

The engine asks through the functions at the end of this module (``partitionable_with(cls,
config)``, ``plan_slices(node, ...)``, ``run_partial(node, ...)``, ...), never through
``Node``. They read each capability by its attribute name, as a protocol: a node type written
before the mixins existed, that sets ``partitionable = True`` (``pure``, ``accepts_rows``) on
its class or defines ``plan_slices``, keeps working unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nodes.packing import packer, unpack
from nodes.sdk.batches import AnyBatch, RecordStream, as_records
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError


class Partitionable:
    """A record-by-record node: after a partitioned source it runs once per partition, in
    parallel across workers (``context.partition`` tells which), instead of once on the whole
    output. Whatever it keeps between records must be per partition.

    A node with several output ports (``branch``) may be partitionable too: each partition's
    :class:`~nodes.sdk.batches.PortBatch` es are kept per partition and per port, and port
    ``p``'s output is its partitions' ``p`` batches in partition order — exactly what the node
    run on the whole input gives on ``p``. The engine says that it keeps outputs so by asking
    ``partitionable_with(cls, config, by_port=True)``; an engine asking without ``by_port``
    never runs such a node per partition."""

    partitionable: ClassVar[bool] = True

    @classmethod
    def partitionable_with(cls, config: Mapping[str, Any]) -> bool:
        """Whether a node of this type with this (raw) config may run per partition; override
        when a mode of the node cannot (``sql_write``'s replace swaps the whole table once)."""
        return cls.partitionable


class Pure:
    """The output depends only on the config and the input records: no I/O, no clock, no
    randomness. Inside a partitioned stretch such a node's output is not stored: it is
    recomputed when read (``filter`` and ``map_fields`` are pure; a node that calls out is not).
    """

    pure: ClassVar[bool] = True


class AcceptsRows:
    """The node takes :class:`~nodes.sdk.batches.RowBatch` batches as they come, and lists of
    dicts too: its ``execute`` reads ``Mapping[str, Iterable[AnyBatch]]``. Any other node
    receives every batch as a list of dicts (``Node.run`` converts them, in C)."""

    accepts_rows: ClassVar[bool] = True


#: The version of the envelope :func:`pack_partial` writes around a partial state.
PARTIAL_FORMAT = 1


class Combinable(ABC):
    """A node that needs its whole input (``aggregate``, ``dedupe``) but whose output can be
    computed in two steps: each partition of the input gives a *partial state*
    (:meth:`execute_partial`, run where the partition is, in parallel), and one *combine* step
    (:meth:`combine`) merges the partial states of every partition into exactly the batches
    that ``execute`` gives on the whole input.

    - **Order.** The partitions are consecutive parts of the input: partition ``i`` holds rows
      that come before partition ``i + 1``'s. ``combine`` receives one partial state per
      partition, in partition order (a partition with no rows gives the partial state of no
      rows; leaving it out changes nothing). Whatever depends on order — ``aggregate``'s
      ``first``/``last`` and the order of its groups, ``dedupe``'s kept record — is defined by
      partition order, then row order within a partition: the order of the whole input.
    - **Format.** A partial state is a value made of ``None``, ``bool``, ``int`` (any size),
      ``float``, ``str``, ``bytes``, ``Decimal``, ``date``, ``datetime``, ``time``, ``UUID``,
      lists and dicts: what :func:`pack_partial` writes (msgpack with the hand-off's types,
      ``nodes.packing``) and :func:`unpack_partial` reads back equal, Decimals exact. Tuples
      come back as lists, and an aware datetime at the fixed offset it had.
    - **Bounds.** A partial state is bounded by the node's own bound (``max_groups``,
      ``max_keys``); merging may pass it, and ``combine`` then fails with the error naming
      it, as ``execute`` would.
    """

    combinable: ClassVar[bool] = True

    @classmethod
    def combinable_with(cls, config: Mapping[str, Any]) -> bool:
        """Whether a node of this type with this (raw) config may run as partials and one
        combine; override when a mode of the node cannot."""
        return cls.combinable

    @abstractmethod
    def execute_partial(self, context: ExecutionContext, inputs: Mapping[str, RecordStream]) -> Any:
        """The partial state of one partition's input (``context.partition`` tells which),
        in the format described on the class. Its inputs are what ``execute`` would get (row
        batches only for a node that accepts rows)."""

    @abstractmethod
    def combine(self, context: ExecutionContext, partials: Iterable[Any]) -> Iterator[AnyBatch]:
        """The node's output from the partial states of every partition, in partition order:
        exactly the batches ``execute`` gives on the whole input (a node with several output
        ports yields ``PortBatch`` es, as its ``execute`` does)."""


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


class SlicedSource(ABC):
    """A source whose output can be read in independent slices, each read by a task of its own,
    in parallel across workers, as soon as it is planned."""

    @classmethod
    def partitions_by_default(cls, config: Mapping[str, Any]) -> bool:
        """Whether a source with this (raw) config may partition its output without
        ``partition_rows``, so that the partitionable nodes after it run once per partition, in
        parallel (``file_read``: one slice per file; ``sql_query``: when its query is large).
        Decided without I/O; :meth:`partition_rows_for_run` decides for each run. Without
        partitionable nodes after it, such a source runs whole, as any other."""
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

    @abstractmethod
    def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> Iterable[Any] | None:
        """One JSON-able description per slice of about ``rows_per_slice`` rows, in output order,
        produced lazily; ``None`` when this config cannot be sliced (the output is then read
        once and cut). Checks that can fail at once belong before the first slice."""

    @abstractmethod
    def execute_slice(self, context: ExecutionContext, slice_: Any) -> Iterator[AnyBatch]:
        """The batches of one slice planned by :meth:`plan_slices`."""


class Rereadable(ABC):
    """A sliced source (:class:`SlicedSource`) whose slices can be read again after the run,
    giving exactly the records the run read, or failing: inside a partitioned stretch its
    partitions are not stored, only each slice and the *pins* of the data it read (decision
    0044). Whatever reads the source's output later (a preview of the run's output, a rerun
    that reuses it, a node after the stretch) reads the slices again."""

    rereadable: ClassVar[bool] = True

    @abstractmethod
    def read_pinned(
        self, context: ExecutionContext, slice_: Any, pins: dict[str, str]
    ) -> Iterator[AnyBatch]:
        """The batches of one slice, as :meth:`SlicedSource.execute_slice` gives them. For each
        piece of data read (a file), ``pins`` says which version to read: when it names the
        piece, only that version is read, and a permanent ``NodeError`` says so when it is
        gone or changed; otherwise the version read is added to ``pins`` (a JSON-able string),
        as soon as it is opened."""


# --- what the engine asks ---------------------------------------------------------------------


def is_partitionable(node_type: type) -> bool:
    """Whether the type may run per partition in some config (the catalog shows it)."""
    return getattr(node_type, "partitionable", False) is True


def partitionable_with(
    node_type: type, config: Mapping[str, Any], *, by_port: bool = False
) -> bool:
    """Whether a node of ``node_type`` with this raw config may run once per partition.

    A node with several output ports (ports from its config, or more than one declared) is
    run per partition only by an engine that keeps each partition's output per port: it
    passes ``by_port=True``."""
    if not by_port and several_ports(node_type):
        return False
    decide = getattr(node_type, "partitionable_with", None)
    if callable(decide):
        return bool(decide(config))
    return is_partitionable(node_type)


def several_ports(node_type: type) -> bool:
    """Whether the type's output is kept port by port (``PortBatch`` es): its ports come from
    its config, or it declares more than one."""
    return getattr(node_type, "dynamic_outputs", False) is True or (
        len(getattr(node_type, "outputs", ())) > 1
    )


def is_combinable(node_type: type) -> bool:
    """Whether the type may run as partials and one combine in some config."""
    return getattr(node_type, "combinable", False) is True


def combinable_with(node_type: type, config: Mapping[str, Any]) -> bool:
    """Whether a node of ``node_type`` with this raw config may run as one partial state per
    partition (:func:`run_partial`) and one combine step (:func:`run_combine`)."""
    decide = getattr(node_type, "combinable_with", None)
    if callable(decide):
        return bool(decide(config))
    return is_combinable(node_type)


def run_partial(
    node: Combinable, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
) -> bytes:
    """One partition's partial state, packed (:func:`pack_partial`): what the engine stores
    for the partition. Row batches reach the node as lists of dicts unless it accepts rows,
    as in ``Node.run``."""
    converted: Mapping[str, RecordStream]
    if accepts_rows(type(node)):
        converted = inputs  # type: ignore[assignment]  # the node reads AnyBatch
    else:
        converted = {port: map(as_records, stream) for port, stream in inputs.items()}
    return pack_partial(node.execute_partial(context, converted))


def run_combine(
    node: Combinable, context: ExecutionContext, partials: Iterable[bytes]
) -> Iterator[AnyBatch]:
    """The node's output from the packed partial states of every partition, in partition
    order (each unpacked as it is reached)."""
    return node.combine(context, map(unpack_partial, partials))


def pack_partial(state: Any) -> bytes:
    """A partial state as bytes: msgpack of ``{"format": 1, "state": state}`` with the platform's
    value types (``nodes.packing``)."""
    try:
        return bytes(packer().pack({"format": PARTIAL_FORMAT, "state": state}))
    except (TypeError, ValueError) as exc:
        raise NodeError(f"a partial state cannot be stored: {exc}", permanent=True) from None


def unpack_partial(data: bytes) -> Any:
    """The partial state :func:`pack_partial` wrote."""
    try:
        envelope = unpack(data)
    except ValueError:  # not msgpack, cut short, or with bytes after it
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("format") != PARTIAL_FORMAT:
        raise NodeError(
            "a stored partial state is not in a format this version reads", permanent=True
        )
    return envelope["state"]


def is_pure(node_type: type) -> bool:
    """Whether the type's output may be recomputed when read instead of stored."""
    return getattr(node_type, "pure", False) is True


def is_rereadable(node_type: type) -> bool:
    """Whether a sliced source's partitions may be read again instead of stored."""
    return getattr(node_type, "rereadable", False) is True


def accepts_rows(node_type: type) -> bool:
    """Whether the type takes row batches as they come (else it gets lists of dicts)."""
    return getattr(node_type, "accepts_rows", False) is True


def partitions_by_default(node_type: type, config: Mapping[str, Any]) -> bool:
    """Whether a source with this raw config plans slices without ``partition_rows``."""
    decide = getattr(node_type, "partitions_by_default", None)
    return callable(decide) and bool(decide(config))


def plan_slices(
    node: object, context: ExecutionContext, rows_per_slice: int
) -> Iterable[Any] | None:
    """The node's slices (see :class:`SlicedSource`), or ``None`` when it does not plan any:
    its output is then read once and cut."""
    plan = getattr(node, "plan_slices", None)
    if not callable(plan):
        return None
    slices: Iterable[Any] | None = plan(context, rows_per_slice)
    return slices


def partition_rows_for_run(
    node: object, context: ExecutionContext, policy: PartitionPolicy
) -> int | None:
    """Rows per partition of this run of a source that partitions by default (see
    :meth:`SlicedSource.partition_rows_for_run`); always the policy's for a source that does
    not decide."""
    decide = getattr(node, "partition_rows_for_run", None)
    if not callable(decide):
        return policy.rows_per_partition
    rows: int | None = decide(context, policy)
    return rows


__all__ = [
    "PARTIAL_FORMAT",
    "AcceptsRows",
    "Combinable",
    "PartitionPolicy",
    "Partitionable",
    "Pure",
    "Rereadable",
    "SlicedSource",
    "accepts_rows",
    "combinable_with",
    "is_combinable",
    "is_partitionable",
    "is_pure",
    "is_rereadable",
    "pack_partial",
    "partition_rows_for_run",
    "partitionable_with",
    "partitions_by_default",
    "plan_slices",
    "run_combine",
    "run_partial",
    "several_ports",
    "unpack_partial",
]
