"""Small display helpers shared by the flow and run admins: badges, durations, pictures."""

from __future__ import annotations

from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString

from flows.counts import counts_text
from flows.graph import Edge
from flows.graph_svg import NodeBox, render_graph
from flows.models import Flow, FlowRun
from nodes.registry import registry


def status_badge(status: str | None) -> SafeString | str:
    if not status:
        return "—"
    return format_html('<span class="fp-badge fp-status-{0}">{0}</span>', status)


def duration(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s`` or ``2 min 05 s``; an em dash when unknown."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def type_label(node_type: str) -> str:
    cls = registry.get(node_type)
    return cls.label if cls is not None and cls.label else node_type


def definition_picture(definition: dict[str, Any]) -> SafeString:
    """The picture of a flow file's graph (nodes and edges as written)."""
    nodes = [
        NodeBox(str(n.get("key", "")), type_label(str(n.get("type", ""))))
        for n in definition.get("nodes", [])
        if n.get("key")
    ]
    return render_graph(nodes, _edges(definition))


def flow_picture(flow: Flow) -> SafeString:
    from flows.flowfile import export_flow

    return definition_picture(export_flow(flow))


def run_picture(run: FlowRun) -> SafeString:
    """The run's version, each node coloured by its status and labelled with its rows."""
    node_runs = {n.node_key: n for n in run.node_runs.all()}
    nodes = []
    for node in run.version.definition["nodes"]:
        node_run = node_runs.get(node["key"])
        nodes.append(
            NodeBox(
                node["key"],
                type_label(node["type"]),
                node_run.status if node_run else "pending",
                node_run.rows_in if node_run else 0,
                node_run.rows_out if node_run else 0,
                counts_text(
                    node["type"],
                    node_run.rows_in if node_run else 0,
                    node_run.rows_out if node_run else 0,
                ),
            )
        )
    return render_graph(nodes, _edges(run.version.definition))


def _edges(definition: dict[str, Any]) -> list[Edge]:
    return [
        Edge(str(e["from"]), str(e.get("from_port", "")), str(e["to"]), str(e.get("to_port", "")))
        for e in definition.get("edges", [])
        if e.get("from") and e.get("to")
    ]
