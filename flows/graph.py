"""The DAG of a flow definition: resolved ports, topological order and levels."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Edge:
    source: str
    source_port: str
    target: str
    target_port: str


class CycleError(Exception):
    """The graph has a cycle; ``nodes`` lists it in order, first node repeated at the end."""

    def __init__(self, nodes: list[str]) -> None:
        super().__init__(" -> ".join(nodes))
        self.nodes = nodes


class Graph:
    """Node keys (in file order) and resolved edges of a definition."""

    def __init__(self, keys: list[str], edges: list[Edge]) -> None:
        self.keys = keys
        self.edges = edges
        self.parents: dict[str, list[Edge]] = defaultdict(list)
        self.children: dict[str, list[Edge]] = defaultdict(list)
        for edge in edges:
            self.parents[edge.target].append(edge)
            self.children[edge.source].append(edge)

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> Graph:
        """Build from a definition whose edges have explicit ports (see ``resolve_ports``)."""
        keys = [node["key"] for node in definition["nodes"]]
        edges = [
            Edge(e["from"], e.get("from_port", "out"), e["to"], e.get("to_port", "in"))
            for e in definition["edges"]
        ]
        return cls(keys, edges)

    def topological_order(self) -> list[str]:
        """Keys in dependency order (file order among equals); raises CycleError."""
        state: dict[str, int] = {}  # 1 = visiting, 2 = done
        order: list[str] = []
        stack_path: list[str] = []

        def visit(key: str) -> None:
            state[key] = 1
            stack_path.append(key)
            for edge in self.parents[key]:
                if state.get(edge.source) == 1:
                    start = stack_path.index(edge.source)
                    raise CycleError([*stack_path[start:], edge.source][::-1])
                if edge.source not in state:
                    visit(edge.source)
            stack_path.pop()
            state[key] = 2
            order.append(key)

        for key in self.keys:
            if key not in state:
                visit(key)
        return order

    def levels(self) -> list[list[str]]:
        """Groups of nodes that can run at once: level n depends only on levels < n."""
        depth: dict[str, int] = {}
        for key in self.topological_order():
            depth[key] = max((depth[e.source] + 1 for e in self.parents[key]), default=0)
        grouped: dict[int, list[str]] = defaultdict(list)
        for key in self.keys:
            grouped[depth[key]].append(key)
        return [grouped[level] for level in sorted(grouped)]

    def descendants(self, key: str) -> set[str]:
        seen: set[str] = set()
        pending = [key]
        while pending:
            for edge in self.children[pending.pop()]:
                if edge.target not in seen:
                    seen.add(edge.target)
                    pending.append(edge.target)
        return seen
