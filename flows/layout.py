"""Where the designer draws the nodes of a flow that has no positions yet: left to right by level.

A node's level is the length of the longest path reaching it from a node without inputs, so
every edge points right. Within a level, nodes sit in the order of their parents (the mean
position of the parents, then the file's order), which keeps chains straight and crossings
few. The box sizes are those the canvas draws (``NODE_BOX`` is handed to the page), so the
boxes laid out here never overlap there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from nodes.registry import registry

#: The geometry of a node on the canvas, in pixels (shared with the page's script).
NODE_BOX: dict[str, int] = {
    "width": 180,
    "header": 34,
    "port_row": 22,
    "padding": 10,
    "gap_x": 60,
    "gap_y": 34,
    "margin": 40,
}


def node_height(inputs: int, outputs: int) -> int:
    """The height of a node box with this many input and output ports."""
    rows = max(inputs, outputs, 1)
    return NODE_BOX["header"] + rows * NODE_BOX["port_row"] + NODE_BOX["padding"]


def catalog_ports(node_type: str, config: Any = None) -> tuple[int, int]:
    """How many input and output ports a node type has (1 and 1 for an unknown type); for a
    type whose output ports come from the config, those of ``config`` (1 when it is invalid)."""
    cls = registry.get(node_type)
    if cls is None:
        return 1, 1
    if not cls.dynamic_outputs:
        return len(cls.inputs), len(cls.outputs)
    try:
        return len(cls.inputs), len(cls(config if isinstance(config, dict) else {}).output_ports())
    except ValidationError:
        return len(cls.inputs), 1


def levels(keys: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """The level of each node: its longest distance from a root. Edges to unknown nodes are
    ignored; on a cycle (an invalid flow, still drawn) the levels stop growing after one pass
    per node."""
    known = set(keys)
    links = [(a, b) for a, b in edges if a in known and b in known and a != b]
    level = dict.fromkeys(keys, 0)
    for _ in range(len(keys)):
        changed = False
        for source, target in links:
            if level[target] < level[source] + 1:
                level[target] = level[source] + 1
                changed = True
        if not changed:
            break
    return level


def auto_layout(
    nodes: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    ports: Callable[[str, Any], tuple[int, int]] = catalog_ports,
) -> dict[str, dict[str, float]]:
    """Positions ``{key: {"x", "y"}}`` for every node of a flow file's ``nodes``/``edges``."""
    keys = [str(n.get("key", "")) for n in nodes]
    heights = {
        str(n.get("key", "")): node_height(*ports(str(n.get("type", "")), n.get("config")))
        for n in nodes
    }
    links = [(str(e.get("from", "")), str(e.get("to", ""))) for e in edges]
    level = levels(keys, links)
    parents: dict[str, list[str]] = {key: [] for key in keys}
    for source, target in links:
        if source in level and target in parents and source != target:
            parents[target].append(source)
    columns: dict[int, list[str]] = {}
    for key in keys:
        columns.setdefault(level[key], []).append(key)
    rank: dict[str, float] = {}
    for number in sorted(columns):
        column = columns[number]
        file_order = {key: i for i, key in enumerate(column)}

        def weight(key: str, file_order: dict[str, int] = file_order) -> tuple[float, int]:
            placed = [rank[p] for p in parents[key] if p in rank]
            mean = sum(placed) / len(placed) if placed else float(file_order[key])
            return mean, file_order[key]

        column.sort(key=weight)
        for i, key in enumerate(column):
            rank[key] = float(i)
    gap_y, margin = NODE_BOX["gap_y"], NODE_BOX["margin"]
    extent = {
        number: sum(heights[k] for k in column) + gap_y * (len(column) - 1)
        for number, column in columns.items()
    }
    tallest = max(extent.values(), default=0)
    step_x = NODE_BOX["width"] + NODE_BOX["gap_x"]
    positions: dict[str, dict[str, float]] = {}
    for number, column in columns.items():
        y = margin + (tallest - extent[number]) / 2
        for key in column:
            positions[key] = {"x": float(margin + number * step_x), "y": float(y)}
            y += heights[key] + gap_y
    return positions


def with_positions(data: dict[str, Any]) -> dict[str, Any]:
    """The flow file with a ``ui`` position on every node: nodes that have one keep it; the
    others are laid out (below the positioned ones, so they never cover them)."""
    nodes = [n for n in data.get("nodes") or [] if isinstance(n, dict)]
    missing = [n for n in nodes if not isinstance(n.get("ui"), dict)]
    if not missing:
        return data
    placed = [n for n in nodes if isinstance(n.get("ui"), dict)]
    keys = {str(n.get("key", "")) for n in missing}
    edges = [
        e
        for e in data.get("edges") or []
        if isinstance(e, dict) and e.get("from") in keys and e.get("to") in keys
    ]
    layout = auto_layout(missing, edges)
    below = 0.0
    for node in placed:
        height = node_height(*catalog_ports(str(node.get("type", "")), node.get("config")))
        below = max(below, float(node["ui"].get("y", 0)) + height + NODE_BOX["gap_y"])
    out = dict(data)
    out["nodes"] = []
    for node in nodes:
        if not isinstance(node.get("ui"), dict):
            spot = layout[str(node.get("key", ""))]
            node = {**node, "ui": {"x": spot["x"], "y": spot["y"] + below}}
        out["nodes"].append(node)
    return out
