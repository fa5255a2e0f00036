"""The node SDK: everything a node type needs, and nothing about flows or Celery.

A node is a pure unit: a validated config, record streams on its input ports and an
:class:`ExecutionContext` go in; a stream of record batches comes out. The contract is
:class:`Node`; what a node may do beyond it for speed are the optional capabilities
(:class:`Partitionable`, :class:`Pure`, :class:`AcceptsRows`, :class:`SlicedSource`,
:class:`Combinable`).
"""

from nodes.sdk.batches import (
    DEFAULT_BATCH_SIZE,
    AnyBatch,
    Batch,
    Output,
    PortBatch,
    Record,
    RecordStream,
    RowBatch,
    as_records,
    first_input,
    rebatch,
)
from nodes.sdk.capabilities import AcceptsRows, Combinable, Partitionable, Pure, SlicedSource
from nodes.sdk.context import ConnectionInfo, ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port, PortKind, can_connect
from nodes.sdk.schema import FieldType, Problem, RecordSchema

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AcceptsRows",
    "AnyBatch",
    "Batch",
    "Combinable",
    "ConnectionInfo",
    "ExecutionContext",
    "FieldType",
    "Node",
    "NodeConfig",
    "NodeError",
    "Output",
    "Partitionable",
    "Port",
    "PortBatch",
    "PortKind",
    "Problem",
    "Pure",
    "Record",
    "RecordSchema",
    "RecordStream",
    "RowBatch",
    "SlicedSource",
    "as_records",
    "can_connect",
    "first_input",
    "rebatch",
]
