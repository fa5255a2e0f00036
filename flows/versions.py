"""Immutable flow versions: snapshot the current graph, reuse it while it is unchanged."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction

from flows.definition import FlowSpec, NodePolicy
from flows.models import Flow, FlowVersion
from flows.validation import FlowValidationError, validate_spec
from nodes.registry import registry


def current_spec(flow: Flow) -> FlowSpec:
    from flows.flowfile import export_flow

    data = export_flow(flow)
    return FlowSpec.model_validate(data)


def resolved_definition(spec: FlowSpec) -> dict[str, Any]:
    """The graph with every edge's ports made explicit (what the engine executes)."""
    types = {n.key: registry.get(n.type) for n in spec.nodes}
    edges = []
    for e in spec.edges:
        source, target = types[e.source], types[e.target]
        assert source is not None and target is not None  # validated before
        edges.append(
            {
                "from": e.source,
                "from_port": e.source_port or source.outputs[0].name,
                "to": e.target,
                "to_port": e.target_port or target.inputs[0].name,
            }
        )
    return {
        "nodes": [
            {
                "key": n.key,
                "type": n.type,
                "config": n.config,
                "policy": (n.policy or NodePolicy()).model_dump(),
            }
            for n in spec.nodes
        ],
        "edges": edges,
        "run_timeout_s": spec.run_timeout_s,
    }


def checksum(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def ensure_current_version(flow: Flow) -> FlowVersion:
    """The version matching the flow's current graph, created if the graph changed.

    Validates first: raises FlowValidationError when the stored graph is invalid.
    """
    spec = current_spec(flow)
    problems = validate_spec(spec)
    if problems:
        raise FlowValidationError(problems)
    definition = resolved_definition(spec)
    digest = checksum(definition)
    with transaction.atomic():
        Flow.objects.select_for_update().filter(pk=flow.pk).first()
        latest = flow.versions.order_by("-number").first()
        if latest is not None and latest.checksum == digest:
            return latest
        number = (latest.number if latest else 0) + 1
        return FlowVersion.objects.create(
            flow=flow, number=number, definition=definition, checksum=digest
        )
