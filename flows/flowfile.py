"""Flows as code: apply a flow file to the database, and write a flow back out as one."""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from django.db import transaction
from pydantic import BaseModel

from flows.definition import FlowSpec, NodePolicy
from flows.models import Flow, FlowEdge, FlowNode
from flows.sections import sections
from flows.validation import FlowValidationError, validate_for_save
from flows.versions import ensure_current_version
from nodes.registry import registry


def apply_flow_file(data: Any) -> tuple[Flow, bool]:
    """Create or update the flow described by ``data``; all or nothing.

    Raises FlowValidationError listing every problem; nothing is written then.
    Returns the flow and whether it was created.
    """
    spec, problems = validate_for_save(data)
    if spec is not None:
        for section in sections():
            if data.get(section.key) is not None:
                problems.extend(section.validate(data[section.key]))
    if problems or spec is None:
        raise FlowValidationError(problems)
    with transaction.atomic():
        flow, created = Flow.objects.select_for_update().get_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "description": spec.description,
                "run_timeout_s": spec.run_timeout_s,
                **routing(spec),
            },
        )
        if not created:
            flow.name, flow.description = spec.name, spec.description
            flow.run_timeout_s = spec.run_timeout_s
            for name, value in routing(spec).items():
                setattr(flow, name, value)
            fields = ["name", "description", "run_timeout_s", *ROUTING_FIELDS, "updated_at"]
            flow.save(update_fields=fields)
        replace_graph(flow, spec)
        ensure_current_version(flow)
        for section in sections():
            section.apply(flow, data.get(section.key))
    return flow, created


#: Where a flow's runs execute and how many at once (docs/triggers.md#routing-and-limits).
ROUTING_FIELDS = ("queue", "priority", "max_active_runs")


def routing(spec: FlowSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in ROUTING_FIELDS}


def replace_graph(flow: Flow, spec: FlowSpec) -> None:
    """Replace the flow's nodes and edges with those of ``spec``."""
    flow.edges.all().delete()
    flow.nodes.all().delete()
    rows = FlowNode.objects.bulk_create(
        FlowNode(
            flow=flow,
            key=n.key,
            type=n.type,
            config=n.config,
            policy=n.policy.model_dump(exclude_defaults=True) if n.policy else {},
            ui=n.ui.model_dump() if n.ui else {},
            position=i,
        )
        for i, n in enumerate(spec.nodes)
    )
    by_key = {row.key: row for row in rows}
    FlowEdge.objects.bulk_create(
        FlowEdge(
            flow=flow,
            source=by_key[e.source],
            source_port=e.source_port,
            target=by_key[e.target],
            target_port=e.target_port,
            position=i,
        )
        for i, e in enumerate(spec.edges)
    )


def node_entry(node: FlowNode) -> dict[str, Any]:
    """A node as a flow file writes it: keys in the documented order, its config's fields in
    its type's order (the order of the node's reference in docs/nodes.md)."""
    cls = registry.get(node.type)
    config = in_model_order(cls.Config, node.config) if cls is not None else node.config
    entry: dict[str, Any] = {"key": node.key, "type": node.type, "config": config}
    if node.policy:
        entry["policy"] = in_model_order(NodePolicy, node.policy)
    if node.ui:
        entry["ui"] = node.ui
    return entry


def in_model_order(model: type[BaseModel], value: Any) -> Any:
    """``value`` (JSON read back from the database, whose key order may differ) with the keys of
    ``model``'s fields in declaration order, nested models likewise; unknown keys follow in the
    order they come. Objects whose keys are data (a mapping's targets) keep their order."""
    if not isinstance(value, dict):
        return value
    fields = model.model_fields
    names = {(info.alias or name): name for name, info in fields.items()}
    ordered = {key: value[key] for key in names if key in value}
    ordered.update((key, item) for key, item in value.items() if key not in ordered)
    for key, item in ordered.items():
        if key in names:
            ordered[key] = _nested(fields[names[key]].annotation, item)
    return ordered


def _nested(annotation: Any, value: Any) -> Any:
    """``value`` ordered by what ``annotation`` says it holds (models, lists, dicts, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return in_model_order(annotation, value)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple) and isinstance(value, list) and args:
        return [_nested(args[0], item) for item in value]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {key: _nested(args[1], item) for key, item in value.items()}
    if origin in (Union, UnionType):
        for arg in args:
            if _fits(arg, value):
                return _nested(arg, value)
    return value


def _fits(annotation: Any, value: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return isinstance(value, dict)
    origin = get_origin(annotation)
    return (origin in (list, tuple) and isinstance(value, list)) or (
        origin is dict and isinstance(value, dict)
    )


def export_flow(flow: Flow) -> dict[str, Any]:
    """The flow as a flow file, keys in the documented order (README, "Flow files"): a file
    imported and exported comes back with the same text, except the order of keys inside
    objects whose keys are data (mappings, params, headers), which PostgreSQL does not keep.
    Connections are referred to by name: no secret is ever included."""
    data: dict[str, Any] = {"slug": flow.slug, "name": flow.name}
    if flow.description:
        data["description"] = flow.description
    if flow.run_timeout_s:
        data["run_timeout_s"] = flow.run_timeout_s
    for name in ROUTING_FIELDS:
        if getattr(flow, name):
            data[name] = getattr(flow, name)
    data["nodes"] = [node_entry(n) for n in flow.nodes.order_by("position")]
    edges = []
    for edge in flow.edges.select_related("source", "target").order_by("position"):
        item = {"from": edge.source.key}
        if edge.source_port:
            item["from_port"] = edge.source_port
        item["to"] = edge.target.key
        if edge.target_port:
            item["to_port"] = edge.target_port
        edges.append(item)
    data["edges"] = edges
    for section in sections():
        value = section.export(flow)
        if value is not None:
            data[section.key] = value
    return data
