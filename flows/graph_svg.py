"""A flow's graph as an inline SVG picture, laid out server-side by levels (no script, no CDN).

Columns are the DAG's levels (``Graph.levels()``): sources on the left, each node one column
right of its deepest parent. On a run page each node is coloured by its status and labelled
with its rows in and out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from flows.graph import CycleError, Edge, Graph

BOX_W, BOX_H = 180, 58
GAP_X, GAP_Y = 72, 22
PAD = 12

#: status -> (fill, stroke); None is a flow being designed.
COLOURS: dict[str | None, tuple[str, str]] = {
    None: ("#f8fafc", "#475569"),
    "pending": ("#f1f5f9", "#94a3b8"),
    "running": ("#dbeafe", "#2563eb"),
    "succeeded": ("#dcfce7", "#16a34a"),
    "failed": ("#fee2e2", "#dc2626"),
    "skipped": ("#f5f5f4", "#a8a29e"),
    "cancelled": ("#ffedd5", "#ea580c"),
}


@dataclass(frozen=True)
class NodeBox:
    """What one box shows."""

    key: str
    type: str
    status: str | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    #: The counts as the node type names them (flows.counts); default: in and out.
    counts: str = ""


def columns(keys: list[str], edges: list[Edge]) -> list[list[str]]:
    """Levels of the graph; a graph with a cycle is drawn one node per column, in file order."""
    try:
        return Graph(keys, edges).levels()
    except CycleError:
        return [[key] for key in keys]


def render_graph(nodes: list[NodeBox], edges: Iterable[Edge]) -> SafeString:
    """The SVG markup of the graph (edges naming unknown nodes are left out)."""
    by_key = {node.key: node for node in nodes}
    drawn = [e for e in edges if e.source in by_key and e.target in by_key]
    if not nodes:
        return mark_safe('<p class="flow-graph-empty">No nodes yet.</p>')
    levels = columns(list(by_key), drawn)
    tallest = max(len(level) for level in levels)
    height = tallest * BOX_H + (tallest - 1) * GAP_Y + 2 * PAD
    width = len(levels) * BOX_W + (len(levels) - 1) * GAP_X + 2 * PAD
    position: dict[str, tuple[int, int]] = {}
    for column, level in enumerate(levels):
        top = PAD + (height - 2 * PAD - (len(level) * BOX_H + (len(level) - 1) * GAP_Y)) // 2
        for row, key in enumerate(level):
            position[key] = (PAD + column * (BOX_W + GAP_X), top + row * (BOX_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flow-graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Graph of {len(nodes)} nodes and {len(drawn)} edges">',
        '<defs><marker id="flow-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#64748b"/></marker></defs>',
    ]
    parts += [_edge(edge, position) for edge in drawn]
    parts += [_node(by_key[key], *position[key]) for key in by_key]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def _edge(edge: Edge, position: dict[str, tuple[int, int]]) -> str:
    (sx, sy), (tx, ty) = position[edge.source], position[edge.target]
    x1, y1 = sx + BOX_W, sy + BOX_H // 2
    x2, y2 = tx, ty + BOX_H // 2
    bend = max(GAP_X // 2, abs(x2 - x1) // 2)
    path = (
        f'<path class="flow-edge" d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2 - 2},{y2}" '
        f'fill="none" stroke="#64748b" stroke-width="1.6" marker-end="url(#flow-arrow)">'
        f"<title>{escape(edge.source)} → {escape(edge.target)}</title></path>"
    )
    ports = [p for p in (edge.source_port, edge.target_port) if p and p not in ("out", "in")]
    if not ports:
        return path
    label = escape(f"{edge.source_port or 'out'} → {edge.target_port or 'in'}")
    mx, my = (x1 + x2) // 2, (y1 + y2) // 2 - 5
    return path + (
        f'<text x="{mx}" y="{my}" text-anchor="middle" font-size="10" fill="#475569">{label}</text>'
    )


def _node(node: NodeBox, x: int, y: int) -> str:
    fill, stroke = COLOURS.get(node.status, COLOURS[None])
    dash = ' stroke-dasharray="5 3"' if node.status == "skipped" else ""
    status = escape(node.status or "")
    lines = [
        f'<text x="{x + 10}" y="{y + 20}" font-size="13" font-weight="bold" fill="#0f172a">'
        f"{escape(_clip(node.key, 22))}</text>",
        f'<text x="{x + 10}" y="{y + 36}" font-size="11" fill="#475569">'
        f"{escape(_clip(node.type, 26))}</text>",
    ]
    if node.status is not None:
        rows = node.counts or f"in {node.rows_in or 0:,} · out {node.rows_out or 0:,}"
        lines.append(
            f'<text x="{x + 10}" y="{y + 51}" font-size="11" fill="#0f172a">'
            f'<tspan font-weight="bold" fill="{stroke}">{status}</tspan> {escape(rows)}</text>'
        )
    title = escape(f"{node.key} ({node.type})" + (f": {node.status}" if node.status else ""))
    return (
        f'<g class="flow-node{f" status-{status}" if status else ""}" '
        f'data-node="{escape(node.key)}" data-status="{status}"><title>{title}</title>'
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="1.6"{dash}/>' + "".join(lines) + "</g>"
    )


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
