"""Flows as code: apply a flow file to the database, and write a flow back out as one."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from flows.definition import FlowSpec
from flows.models import Flow, FlowEdge, FlowNode
from flows.sections import sections
from flows.validation import FlowValidationError, parse_flow, validate_spec
from flows.versions import ensure_current_version


def apply_flow_file(data: Any) -> tuple[Flow, bool]:
    """Create or update the flow described by ``data``; all or nothing.

    Raises FlowValidationError listing every problem; nothing is written then.
    Returns the flow and whether it was created.
    """
    spec, problems = parse_flow(data)
    if spec is not None:
        problems = validate_spec(spec)
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
    entry: dict[str, Any] = {"key": node.key, "type": node.type, "config": node.config}
    if node.policy:
        entry["policy"] = node.policy
    return entry


def export_flow(flow: Flow) -> dict[str, Any]:
    """The flow as a flow file. Connections are referred to by name: no secret is ever included."""
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
        item = {"from": edge.source.key, "to": edge.target.key}
        if edge.source_port:
            item["from_port"] = edge.source_port
        if edge.target_port:
            item["to_port"] = edge.target_port
        edges.append(item)
    data["edges"] = edges
    for section in sections():
        value = section.export(flow)
        if value is not None:
            data[section.key] = value
    return data
