"""The node SDK: everything a node type needs, and nothing about flows or Celery.

A node is a pure unit: a validated config, record streams on its input ports and an
:class:`ExecutionContext` go in; a stream of record batches comes out.
"""

from nodes.sdk.context import ConnectionInfo, ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Batch, Node, NodeConfig, Record, RecordStream
from nodes.sdk.ports import Port, PortKind, can_connect
from nodes.sdk.schema import FieldType, Problem, RecordSchema

__all__ = [
    "Batch",
    "ConnectionInfo",
    "ExecutionContext",
    "FieldType",
    "Node",
    "NodeConfig",
    "NodeError",
    "Port",
    "PortKind",
    "Problem",
    "Record",
    "RecordSchema",
    "RecordStream",
    "can_connect",
]
