"""Data preview: run one node and the nodes upstream of it on a sample, in this process.

``plan(document, node)`` picks the node and its ancestors out of a flow document (saved or
not) and checks that part as ``importflow`` would; ``run(plan, ...)`` executes it in
topological order with ``ExecutionContext.sample_limit`` set, so that sources read at most
``limit`` records, and returns each node's first records and output schema.

Nothing is stored and nothing changes outside: a node with side effects runs only its own
``preview`` hook (showing what it would send or write) and is skipped without one. The whole
preview is bounded in time (``FLOWPLATFORM_PREVIEW_TIMEOUT_S``: the nodes' ``is_cancelled``,
``deadline`` and statement timeouts) and in size (``FLOWPLATFORM_PREVIEW_MAX_BYTES`` of records
in the answer).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from flows.graph import Graph
from flows.validation import (
    FlowProblem,
    input_schemas,
    parse_flow,
    resolved_edges,
    validate_for_save,
)
from nodes.jsonbody import dumps_bytes
from nodes.models import lookup_connection
from nodes.redaction import Redactor
from nodes.registry import registry
from nodes.sdk import ExecutionContext, Node, NodeError, PortBatch, RecordSchema
from nodes.sdk.node import AnyBatch, Record, as_records, per_port

logger = logging.getLogger("flowplatform.preview")

#: The most records a preview may ask for per node.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50

#: What a node's entry in a preview says happened to it.
OK, DRY_RUN, SKIPPED, FAILED, TIMED_OUT, NOT_RUN = (
    "ok",
    "dry_run",
    "skipped",
    "failed",
    "timed_out",
    "not_run",
)


class PreviewInvalid(Exception):
    """The part of the flow to preview has problems (reported like a validation)."""

    def __init__(self, problems: list[FlowProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass
class Plan:
    """The node to preview, its ancestors, and the order to run them in."""

    node: str
    order: list[str]
    nodes: dict[str, Node]
    specs: dict[str, dict[str, Any]]
    #: node key -> input port -> upstream outputs (node key, output port), in edge order.
    inputs: dict[str, dict[str, list[tuple[str, str]]]]
    #: node key -> output port -> declared schema.
    schemas: dict[str, dict[str, RecordSchema]] = field(default_factory=dict)


_INDEXED = re.compile(r"^(nodes|edges)\[(\d+)\]")


def plan(document: Any, node: str) -> Plan:
    """The plan to preview ``node`` of ``document`` (a flow file); raises PreviewInvalid."""
    spec, problems = parse_flow(document)
    if spec is None:
        raise PreviewInvalid(problems)
    keys = [n.key for n in spec.nodes]
    if node not in keys:
        raise PreviewInvalid(
            [FlowProblem("node", f"no node '{node[:100]}' in the flow (nodes: {', '.join(keys)})")]
        )
    # The node and its ancestors; edges from or to unknown nodes are validation's to report.
    parents: dict[str, list[str]] = {}
    for edge in spec.edges:
        parents.setdefault(edge.target, []).append(edge.source)
    wanted, todo = {node}, [node]
    while todo:
        for parent in parents.get(todo.pop(), []):
            if parent in keys and parent not in wanted:
                wanted.add(parent)
                todo.append(parent)
    raw_nodes, raw_edges = document["nodes"], document.get("edges") or []
    node_index = [i for i, n in enumerate(spec.nodes) if n.key in wanted]
    edge_index = [i for i, e in enumerate(spec.edges) if e.source in wanted and e.target in wanted]
    part = {
        **{k: v for k, v in document.items() if k in ("slug", "name", "description")},
        "nodes": [raw_nodes[i] for i in node_index],
        "edges": [raw_edges[i] for i in edge_index],
    }
    index_maps = {"nodes": node_index, "edges": edge_index}

    def located(problem: FlowProblem) -> FlowProblem:
        def original(match: re.Match[str]) -> str:
            return f"{match[1]}[{index_maps[match[1]][int(match[2])]}]"

        return FlowProblem(_INDEXED.sub(original, problem.path), problem.message, problem.node)

    problems = validate_for_save(part)[1]
    if problems:
        raise PreviewInvalid([located(p) for p in problems])
    part_spec, _ = parse_flow(part)
    assert part_spec is not None
    instances: dict[str, Node] = {}
    for n in part_spec.nodes:
        cls = registry.get(n.type)
        assert cls is not None  # validated
        instances[n.key] = cls(n.config)
    edges = resolved_edges(part_spec, instances)
    graph = Graph(list(instances), edges)
    order = graph.topological_order()
    inputs: dict[str, dict[str, list[tuple[str, str]]]] = {key: {} for key in order}
    for edge in edges:
        inputs[edge.target].setdefault(edge.target_port, []).append((edge.source, edge.source_port))
    schemas: dict[str, dict[str, RecordSchema]] = {}
    for key in order:
        schemas[key] = instances[key].output_schemas(input_schemas(graph, key, schemas))
    specs = {n["key"]: n for n in part["nodes"]}
    return Plan(node, order, instances, specs, inputs, schemas)


def connection_lookup(name: str) -> Any:
    """How a preview finds connections (the same table a run reads)."""
    return lookup_connection(name)


@dataclass
class _Budget:
    """What is left of the answer's size and time."""

    deadline: float
    bytes_left: int
    timeout_s: float

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def spent(self) -> bool:
        """Expired, or so nearly that a statement timeout cut to the time left fired."""
        return time.monotonic() > self.deadline - 0.1


def run(
    the_plan: Plan,
    *,
    limit: int = DEFAULT_LIMIT,
    params: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Execute the plan on a sample; the preview's answer (see docs/api.md, "Data preview")."""
    timeout = float(timeout_s if timeout_s is not None else settings.FLOWPLATFORM_PREVIEW_TIMEOUT_S)
    budget = _Budget(
        deadline=time.monotonic() + timeout,
        bytes_left=max_bytes if max_bytes is not None else settings.FLOWPLATFORM_PREVIEW_MAX_BYTES,
        timeout_s=timeout,
    )
    started = time.monotonic()
    redactor = Redactor()
    outputs: dict[tuple[str, str], list[Record]] = {}
    entries = []
    for key in the_plan.order:
        entry = _run_node(the_plan, key, limit, params or {}, budget, redactor, outputs)
        entries.append(entry)
    return {
        "node": the_plan.node,
        "limit": limit,
        "timed_out": any(e["status"] == TIMED_OUT for e in entries),
        "elapsed_ms": round((time.monotonic() - started) * 1000),
        "nodes": entries,
    }


def _run_node(
    the_plan: Plan,
    key: str,
    limit: int,
    params: dict[str, Any],
    budget: _Budget,
    redactor: Redactor,
    outputs: dict[tuple[str, str], list[Record]],
) -> dict[str, Any]:
    node = the_plan.nodes[key]
    declared = next(iter(the_plan.schemas[key].values()), RecordSchema.unknown()).as_dict()
    several = per_port(node)
    entry: dict[str, Any] = {
        "key": key,
        "type": node.type,
        "status": OK,
        "message": "",
        "inputs": {
            port: [_source_name(the_plan, source) for source in sources]
            for port, sources in the_plan.inputs[key].items()
        },
        "records": [],
        "count": 0,
        "limit_reached": False,
        "cut_for_size": False,
        "schema": declared,
        "sample_schema": None,
    }
    missing = [
        source for sources in the_plan.inputs[key].values() for source in sources
        if source not in outputs
    ]  # fmt: skip
    if missing:
        return {
            **entry,
            "status": NOT_RUN,
            "message": f"upstream node '{missing[0][0]}' gave no records to read (it failed, "
            "did not run, or only showed what it would do)",
        }
    if budget.expired():
        return {**entry, "status": NOT_RUN, "message": "the preview ran out of time before it"}
    if not node.can_preview():
        return {
            **entry,
            "status": SKIPPED,
            "message": f"not executed: a {node.type} node acts outside the run and has no "
            "preview of what it would do",
        }
    context = ExecutionContext(
        run_id="preview",
        node_key=key,
        params=dict(params),
        logger=logging.getLogger(f"flowplatform.node.{node.type}"),
        connection_lookup=connection_lookup,
        is_cancelled=budget.expired,
        redactor=redactor,
        sample_limit=limit,
        deadline=budget.deadline,
    )
    inputs = {
        port: _stream([outputs[source] for source in sources])
        for port, sources in the_plan.inputs[key].items()
    }
    ports = [port.name for port in node.output_ports()]
    by_port: dict[str, list[Record]] = {port: [] for port in ports}
    records: list[Record] = []
    stream = node.run_preview(context, inputs)
    try:
        for item in stream:
            port, batch = (
                (item.port, item.batch) if isinstance(item, PortBatch) else (ports[0], item)
            )
            taken = as_records(batch)[: limit - len(records)]
            records.extend(taken)
            by_port[port].extend(taken)
            if len(records) >= limit:
                entry["limit_reached"] = True
                break
            if budget.expired():
                raise NodeError("cancelled", permanent=True)
    except NodeError as exc:
        status = TIMED_OUT if budget.spent() else FAILED
        message = (
            f"the preview's time limit ({budget.timeout_s:g} s) was reached"
            if status == TIMED_OUT
            else redactor.cut(str(exc), 500)
        )
        return {**entry, "status": status, "message": message}
    except Exception as exc:
        logger.exception("preview of node '%s' (%s) failed", key, node.type)
        return {**entry, "status": FAILED, "message": f"the node failed: {type(exc).__name__}"}
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # ends a source's cursor or request early
    if not node.has_side_effects():  # what a sink would do is no output to read further down
        outputs.update({(key, port): port_records for port, port_records in by_port.items()})
    if several:  # grouped by port, in port order; ``ports`` says how many each has
        records = [record for port in ports for record in by_port[port]]
        entry["ports"] = {port: len(by_port[port]) for port in ports}
    shown, cut = _within(records, budget)
    return {
        **entry,
        "status": DRY_RUN if node.has_side_effects() else OK,
        "message": (
            "nothing was sent or written: these are the records it would send or write"
            if node.has_side_effects()
            else ""
        ),
        "records": shown,
        "count": len(records),
        "cut_for_size": cut,
        "sample_schema": sample_schema(records),
    }


def _source_name(the_plan: Plan, source: tuple[str, str]) -> str:
    """An upstream output as the answer names it: the node's key, ``key.port`` for a port of a
    node with several."""
    key, port = source
    return f"{key}.{port}" if per_port(the_plan.nodes[key]) else key


def _stream(outputs: list[list[Record]]) -> Iterator[AnyBatch]:
    for records in outputs:
        if records:
            yield list(records)


def _within(records: list[Record], budget: _Budget) -> tuple[list[Any], bool]:
    """The records as JSON values, as many as fit in the answer's size left."""
    shown = []
    for record in records:
        encoded = dumps_bytes(record)
        if len(encoded) > budget.bytes_left:
            budget.bytes_left = 0
            return shown, True
        budget.bytes_left -= len(encoded)
        shown.append(json.loads(encoded))
    return shown, False


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict | list):
        return "json"
    return "any"


def sample_schema(records: list[Record]) -> dict[str, str]:
    """The fields seen in ``records`` and their types (``any`` when the types differ; a field
    only ever null is ``null``)."""
    seen: dict[str, str] = {}
    for record in records:
        for name, value in record.items():
            kind = _type_of(value)
            before = seen.get(name)
            if before is None or before == "null":
                seen[name] = kind
            elif kind not in (before, "null"):
                seen[name] = "any"
    return seen
