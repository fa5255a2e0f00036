"""The node catalog: the single source of truth for which node types exist.

Built-in types are listed here by dotted path; third-party packages add theirs through the
entry-point group ``flowplatform.nodes`` (each entry point names a ``Node`` subclass). The
catalog API, admin choices, validation and execution all read this registry. It is loaded
once, lazily, and frozen afterwards.
"""

from __future__ import annotations

import logging
import threading
from importlib import import_module
from importlib.metadata import entry_points

from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "flowplatform.nodes"

BUILTIN_NODES: dict[str, str] = {
    "sql_query": "nodes.builtin.sql_query.SqlQueryNode",
    "filter": "nodes.builtin.filter.FilterNode",
    "map_fields": "nodes.builtin.map_fields.MapFieldsNode",
    "http_post": "nodes.builtin.http_post.HttpPostNode",
    "sql_write": "nodes.builtin.sql_write.node.SqlWriteNode",
    "http_request": "nodes.builtin.http_request.HttpRequestNode",
    "file_read": "nodes.builtin.file_read.FileReadNode",
    "file_write": "nodes.builtin.file_write.FileWriteNode",
    "payload": "nodes.builtin.payload.PayloadNode",
    "branch": "nodes.builtin.branch.BranchNode",
    "join": "nodes.builtin.join.JoinNode",
    "aggregate": "nodes.builtin.aggregate.AggregateNode",
    "dedupe": "nodes.builtin.dedupe.DedupeNode",
}


class RegistryError(Exception):
    """A node type could not be registered (duplicate type, not a Node subclass)."""


class NodeRegistry:
    """Maps node type names to their classes."""

    def __init__(self) -> None:
        self._types: dict[str, type[Node]] = {}
        self._frozen = False
        self._lock = threading.Lock()

    def register(self, cls: type[Node]) -> None:
        if self._frozen:
            raise RegistryError("the node registry is frozen after start-up")
        if not (isinstance(cls, type) and issubclass(cls, Node)) or not getattr(cls, "type", ""):
            raise RegistryError(f"{cls!r} is not a Node subclass with a 'type'")
        if cls.type in self._types and self._types[cls.type] is not cls:
            raise RegistryError(f"node type '{cls.type}' is registered twice")
        self._types[cls.type] = cls

    def load(self) -> None:
        """Register the built-ins and every entry-point plugin, then freeze."""
        with self._lock:
            if self._frozen:
                return
            for path in BUILTIN_NODES.values():
                self.register(_import_class(path))
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    self.register(entry.load())
                except (ImportError, AttributeError, RegistryError) as exc:
                    logger.error("node plugin %s could not be loaded: %s", entry.name, exc)
            self._frozen = True

    def get(self, type_name: str) -> type[Node] | None:
        self.load()
        return self._types.get(type_name)

    def require(self, type_name: str) -> type[Node]:
        """The node class to execute ``type_name``; a permanent ``NodeError`` when this
        process does not have it (a retry on the same worker cannot help)."""
        cls = self.get(type_name)
        if cls is None:
            raise NodeError(
                f"node type '{type_name}' is not installed on this worker", permanent=True
            )
        return cls

    def types(self) -> dict[str, type[Node]]:
        self.load()
        return dict(sorted(self._types.items()))

    def choices(self) -> list[tuple[str, str]]:
        return [(name, cls.label or name) for name, cls in self.types().items()]


def _import_class(path: str) -> type[Node]:
    module_name, _, attr = path.rpartition(".")
    cls: type[Node] = getattr(import_module(module_name), attr)
    return cls


registry = NodeRegistry()
