"""Immutable flow versions: snapshot the current graph, reuse it while it is unchanged."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from django.db import transaction

from flowplatform.audit import context as audit_context
from flowplatform.audit.models import Action
from flowplatform.audit.record import record
from flows import dialect
from flows.definition import FlowSpec, NodePolicy
from flows.models import Flow, FlowEdge, FlowNode, FlowVersion
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
    """sha256 of the definition's text, keys in their order: a mapping's order is part of
    what a version runs (its output fields' order), so reordering it makes a new version."""
    return hashlib.sha256(json.dumps(definition).encode()).hexdigest()


def ensure_current_version(flow: Flow) -> FlowVersion:
    """The version matching the flow's current graph, created if the graph changed.

    Validates first: raises FlowValidationError when the stored graph is invalid. A process
    remembers, per flow, the graph it last resolved and its version: while the stored graph and
    the latest version are those, the version is returned without exporting and validating the
    graph again (one query instead of a dozen, and no validation).
    """
    key, latest_id = _graph_state(flow)
    remembered = _resolved.get(flow.pk)
    if remembered is not None and remembered[0] == key and remembered[1].pk == latest_id:
        return remembered[1]
    version = _resolve_version(flow)
    if _graph_state(flow)[0] == key:  # unchanged while it was resolved
        with _resolved_lock:
            _resolved[flow.pk] = (key, version)
            if len(_resolved) > _RESOLVED_KEPT:
                _resolved.pop(next(iter(_resolved)), None)
    return version


_RESOLVED_KEPT = 1024
_resolved: dict[int, tuple[str, FlowVersion]] = {}
_resolved_lock = threading.Lock()


def _graph_state(flow: Flow) -> tuple[str, int | None]:
    """Everything of the stored graph a version is made of (as one comparable string) and the
    id of the flow's latest version, in one query."""
    rows = dialect.rows(_GRAPH_STATE_SQL, {"flow": flow.pk})
    latest_id = next((row[2] for row in rows if row[0] == 2), None)
    graph = [row for row in rows if row[0] != 2]
    return json.dumps([flow.run_timeout_s, graph], default=str), latest_id


# The flow's node rows, edge rows and latest version, as rows of one shape (part, order, id,
# then text columns). Table names come from model metadata; the flow id is a bound parameter.
_GRAPH_STATE_SQL = f"""
SELECT 0, position, id, key, type, CAST(config AS TEXT), CAST(policy AS TEXT)
FROM {FlowNode._meta.db_table} WHERE flow_id = %(flow)s
UNION ALL
SELECT 1, position, id, CAST(source_id AS TEXT), source_port, CAST(target_id AS TEXT), target_port
FROM {FlowEdge._meta.db_table} WHERE flow_id = %(flow)s
UNION ALL
SELECT 2, number, id, NULL, NULL, NULL, NULL
FROM (SELECT number, id FROM {FlowVersion._meta.db_table} WHERE flow_id = %(flow)s
      ORDER BY number DESC LIMIT 1) AS latest
ORDER BY 1, 2, 3
"""  # noqa: S608


def _resolve_version(flow: Flow) -> FlowVersion:
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
        author, author_name = audit_context.actor()
        version = FlowVersion.objects.create(
            flow=flow,
            number=number,
            definition=definition,
            checksum=digest,
            author=author,
            author_name=author_name[:150],
        )
        record(Action.CHANGE, flow, details={"fields": ["graph"], "version": number})
        return version
