"""The dependency graph of flows (``after`` triggers) as an SVG picture for the admin."""

from __future__ import annotations

from django.utils.safestring import SafeString

from flows.graph import Edge
from flows.graph_svg import NodeBox, render_graph
from scheduling.triggers.models import FlowTrigger, TriggerKind


def dependency_picture(visible: set[str] | None = None) -> SafeString | None:
    """Upstream -> downstream arrows between flows; ``visible``: only these slugs (None: all).
    None when no flow starts after another."""
    edges: list[Edge] = []
    fan_in: set[str] = set()
    rows = FlowTrigger.objects.filter(kind=TriggerKind.AFTER, enabled=True).values_list(
        "flow__slug", "config"
    )
    for slug, config in rows:
        upstreams = config.get("upstreams", [])
        if config.get("wait_for_all") and len(upstreams) > 1:
            fan_in.add(slug)
        edges.extend(Edge(upstream, "", slug, "") for upstream in upstreams)
    if visible is not None:
        edges = [e for e in edges if e.source in visible and e.target in visible]
    if not edges:
        return None
    slugs = sorted({e.source for e in edges} | {e.target for e in edges})
    boxes = [NodeBox(slug, "wait for all" if slug in fan_in else "flow") for slug in slugs]
    return render_graph(boxes, edges)
