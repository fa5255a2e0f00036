"""The flow file: the JSON shape of a flow, shared by importflow/exportflow, the API and versions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodeSpec(_Strict):
    key: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="Unique within the flow.")
    type: str = Field(min_length=1, max_length=100, description="A node type from the catalog.")
    config: dict[str, Any] = Field(default_factory=dict)


class EdgeSpec(_Strict):
    source: str = Field(alias="from", min_length=1)
    source_port: str = Field(default="", alias="from_port")
    target: str = Field(alias="to", min_length=1)
    target_port: str = Field(default="", alias="to_port")


class FlowSpec(_Strict):
    slug: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(default_factory=list)
    schedules: list[dict[str, Any]] | None = None


def graph_definition(spec: FlowSpec) -> dict[str, Any]:
    """The versioned part of a flow (no slug, name or schedules) in flow-file form."""
    edges = []
    for edge in spec.edges:
        item: dict[str, str] = {"from": edge.source, "to": edge.target}
        if edge.source_port:
            item["from_port"] = edge.source_port
        if edge.target_port:
            item["to_port"] = edge.target_port
        edges.append(item)
    return {
        "nodes": [{"key": n.key, "type": n.type, "config": n.config} for n in spec.nodes],
        "edges": edges,
    }
