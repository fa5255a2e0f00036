"""Static validation: everything that can be known wrong about a flow before it runs.

``validate_flow(data)`` returns a list of problems, each located by a path into the flow
file (``nodes[2].config.conditions[0].op``) and naming the node at fault. The same messages
reach the CLI, the API and the admin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from flows.definition import FlowSpec
from flows.graph import CycleError, Edge, Graph
from nodes.access import connection_names
from nodes.models import Connection
from nodes.registry import registry
from nodes.sdk import Node, Port, RecordSchema, can_connect


@dataclass(frozen=True)
class FlowProblem:
    """One problem with a flow file; ``node`` is the key of the node at fault, if any."""

    path: str
    message: str
    node: str | None = None

    def __str__(self) -> str:
        where = f"{self.path} (node '{self.node}')" if self.node else self.path
        return f"{where}: {self.message}" if where else self.message

    def as_dict(self) -> dict[str, str | None]:
        return {"path": self.path, "node": self.node, "message": self.message}


class FlowValidationError(Exception):
    """A flow file or stored flow failed validation."""

    def __init__(self, problems: Sequence[FlowProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def loc_to_path(loc: Sequence[int | str], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def pydantic_problems(
    exc: ValidationError, prefix: str = "", node: str | None = None
) -> list[FlowProblem]:
    return [
        FlowProblem(loc_to_path(err["loc"], prefix), _message(err), node)
        for err in exc.errors(include_url=False)
    ]


#: Pydantic error types that list the allowed values: their messages quote the bad one.
_CHOICE_ERRORS = frozenset({"enum", "literal_error"})


def _message(err: Any) -> str:
    """Pydantic's message, except that a value outside a set of choices is quoted:
    ``'eqq' is not one of eq, ne, gt, ...``."""
    expected = (err.get("ctx") or {}).get("expected")
    if err.get("type") not in _CHOICE_ERRORS or not isinstance(expected, str):
        return str(err["msg"])
    choices = ", ".join(
        part.strip().strip("'") for part in expected.replace(" or ", ", ").split(",")
    )
    value = err.get("input")
    shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    if len(shown) > 100:
        shown = shown[:97] + "..."
    return f"{shown} is not one of {choices}"


def parse_flow(data: Any) -> tuple[FlowSpec | None, list[FlowProblem]]:
    if not isinstance(data, dict):
        return None, [FlowProblem("", "a flow file must be a JSON object")]
    try:
        return FlowSpec.model_validate(data), []
    except ValidationError as exc:
        return None, pydantic_problems(exc)


def validate_flow(data: Any) -> list[FlowProblem]:
    """All problems of a flow file (empty when it is valid)."""
    spec, problems = parse_flow(data)
    if spec is None:
        return problems
    return validate_spec(spec)


#: Per node key: the record schema on each input port, on each output port (``outputs``; its
#: first, ``output``) and the output ports themselves (``ports``); None: unknown.
PortSchemas = dict[str, dict[str, Any]]


def port_schemas(data: Any) -> PortSchemas:
    """The record schemas the checks compute for every node they reach (what the designer
    offers as fields); nodes past a problem that stops the checks are left out."""
    spec, _ = parse_flow(data)
    schemas: PortSchemas = {}
    if spec is None:
        return schemas
    validate_spec(spec, schemas)
    # A node whose own config is invalid is left out of the checks, yet what reaches it is
    # known: what its upstream nodes give (so its fields can be chosen while it is fixed).
    types = {n.key: registry.get(n.type) for n in spec.nodes}
    partial: PortSchemas = {}
    for edge in spec.edges:
        cls, upstream = types.get(edge.target), schemas.get(edge.source)
        if edge.target in schemas or cls is None or upstream is None:
            continue
        port = edge.target_port or (cls.inputs[0].name if len(cls.inputs) == 1 else "")
        outputs = upstream["outputs"]
        from_port = edge.source_port or (next(iter(outputs)) if len(outputs) == 1 else "")
        if port and from_port in outputs:
            entry = partial.setdefault(
                edge.target, {"inputs": {}, "output": None, "outputs": {}, "ports": []}
            )
            entry["inputs"][port] = outputs[from_port]
    schemas.update(partial)
    return schemas


def validate_for_save(data: Any) -> tuple[FlowSpec | None, list[FlowProblem]]:
    """What saving a flow file checks (the CLI, the API, the admin): every static problem,
    plus the connections it names that do not exist. Reads the connections table."""
    spec, problems = parse_flow(data)
    if spec is None:
        return None, problems
    problems = validate_spec(spec)
    _check_connections(spec, problems)
    return spec, problems


def validate_spec(spec: FlowSpec, schemas: PortSchemas | None = None) -> list[FlowProblem]:
    """The static problems of a parsed flow (no database access), all in one pass: config
    problems do not hide the graph's (edges, sources used as targets, ports, cycles).
    ``schemas`` (if given) receives each node's port schemas."""
    problems: list[FlowProblem] = []
    nodes = _check_nodes(spec, problems)
    edges = _check_edges(spec, nodes, problems)
    edge_problems = any(p.path.startswith("edges") for p in problems)
    order = _check_cycles(spec, problems)
    if edge_problems or order is None:
        return problems  # inputs and schemas are judged along valid edges only
    _check_inputs(spec, nodes, problems)
    graph = Graph([n.key for n in spec.nodes], edges)
    _check_schemas(spec, nodes, graph, graph.topological_order(), problems, schemas)
    return problems


def _check_cycles(spec: FlowSpec, problems: list[FlowProblem]) -> list[str] | None:
    """The nodes in topological order, or None after reporting the cycle: every edge between
    known nodes counts, whatever else is wrong with it."""
    keys = list(dict.fromkeys(n.key for n in spec.nodes))
    takes_input = {n.key for n in spec.nodes if (cls := registry.get(n.type)) and cls.inputs}
    joins = [  # an edge into a source is reported as such, not as part of a cycle
        Edge(e.source, "", e.target, "")
        for e in spec.edges
        if e.source in keys and e.target in takes_input and e.source != e.target
    ]
    try:
        return Graph(keys, joins).topological_order()
    except CycleError as exc:
        cycle = " -> ".join(exc.nodes)
        problems.append(FlowProblem("edges", f"the graph has a cycle: {cycle}"))
        return None


def _check_nodes(spec: FlowSpec, problems: list[FlowProblem]) -> dict[str, Node]:
    """Instantiate every node whose type and config are valid; record the others' problems."""
    instances: dict[str, Node] = {}
    first_index: dict[str, int] = {}
    known = ", ".join(registry.types())
    for index, node in enumerate(spec.nodes):
        path = f"nodes[{index}]"
        if node.key in first_index:
            problems.append(
                FlowProblem(
                    f"{path}.key",
                    f"duplicate key '{node.key}' (also nodes[{first_index[node.key]}])",
                    node.key,
                )
            )
            continue
        first_index[node.key] = index
        cls = registry.get(node.type)
        if cls is None:
            problems.append(
                FlowProblem(
                    f"{path}.type", f"unknown node type '{node.type}' (known: {known})", node.key
                )
            )
            continue
        try:
            instances[node.key] = cls(cls.Config.model_validate(node.config))
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, f"{path}.config", node.key))
    return instances


def _check_connections(spec: FlowSpec, problems: list[FlowProblem]) -> None:
    """Every connection a node names must exist (a missing one would fail only at run time)."""
    named = [
        (index, node.key, name)
        for index, node in enumerate(spec.nodes)
        for name in connection_names(node.config)
    ]
    if not named:
        return
    existing = set(
        Connection.objects.filter(name__in={name for _, _, name in named}).values_list(
            "name", flat=True
        )
    )
    for index, key, name in named:
        if name not in existing:
            problems.append(
                FlowProblem(
                    f"nodes[{index}].config.connection",
                    f"connection '{name[:100]}' does not exist (add it in the admin, with "
                    f"POST /api/v1/connections/ or manage.py addconnection)",
                    key,
                )
            )


def _check_edges(spec: FlowSpec, nodes: dict[str, Node], problems: list[FlowProblem]) -> list[Edge]:
    """Check every edge between nodes of known types (a node whose config is invalid still has
    its ports); returns the valid edges with their ports named."""
    keys = {n.key: n.type for n in spec.nodes}
    types = {key: registry.get(type_name) for key, type_name in keys.items()}
    edges: list[Edge] = []
    seen: dict[Edge, int] = {}
    for index, edge in enumerate(spec.edges):
        path = f"edges[{index}]"
        missing = [
            (end, key)
            for end, key in (("from", edge.source), ("to", edge.target))
            if key not in keys
        ]
        for end, key in missing:
            problems.append(FlowProblem(f"{path}.{end}", f"unknown node '{key}'"))
        source, target = types.get(edge.source), types.get(edge.target)
        if missing or source is None or target is None:
            continue  # unknown nodes, or of unknown types (reported with the node)
        if edge.source == edge.target:
            problems.append(FlowProblem(path, "an edge cannot join a node to itself", edge.target))
            continue
        if not target.inputs:
            problems.append(
                FlowProblem(
                    f"{path}.to",
                    f"node '{edge.target}' is a source ({keys[edge.target]}) and takes no input",
                    edge.target,
                )
            )
            continue
        outputs = output_ports(source, nodes.get(edge.source))
        if outputs is None:
            continue  # ports from a config that is invalid (reported with the node)
        out_port = _port(
            outputs,
            edge.source_port,
            f"{path}.from_port",
            edge.source,
            problems,
            named=source.dynamic_outputs,
        )
        in_port = _port(target.inputs, edge.target_port, f"{path}.to_port", edge.target, problems)
        if out_port is None or in_port is None:
            continue
        if not can_connect(out_port.kind, in_port.kind):
            problems.append(
                FlowProblem(
                    path,
                    f"port kinds do not fit: {edge.source}.{out_port.name} ({out_port.kind}) "
                    f"-> {edge.target}.{in_port.name} ({in_port.kind})",
                    edge.target,
                )
            )
            continue
        resolved = Edge(edge.source, out_port.name, edge.target, in_port.name)
        if resolved in seen:
            problems.append(FlowProblem(path, f"duplicate of edges[{seen[resolved]}]", edge.target))
            continue
        seen[resolved] = index
        if edge.source in nodes and edge.target in nodes:
            edges.append(resolved)  # schemas flow between valid nodes only
    return edges


def resolved_edges(spec: FlowSpec, nodes: dict[str, Node]) -> list[Edge]:
    """The edges of a valid flow with their ports named (an empty port name is the node's
    only port)."""
    return _check_edges(spec, nodes, [])


def output_ports(cls: type[Node], instance: Node | None) -> tuple[Port, ...] | None:
    """The output ports of a node: its instance's when its config is valid, else its type's
    (``None`` when they come from a config that is not valid)."""
    if instance is not None:
        return instance.output_ports()
    return None if cls.dynamic_outputs else cls.outputs


def _port(
    ports: Any,
    name: str,
    path: str,
    node: str,
    problems: list[FlowProblem],
    named: bool = False,
) -> Any:
    """The port ``name`` among ``ports`` (the only one when no name is given, unless the
    ports come from the config: ``named``)."""
    if not name:
        names = ", ".join(p.name for p in ports) or "none"
        if named:
            problems.append(
                FlowProblem(
                    path,
                    f"node '{node}' sends records to the ports of its config ({names}): "
                    "name one in from_port",
                    node,
                )
            )
            return None
        if len(ports) == 1:
            return ports[0]
        problems.append(
            FlowProblem(path, f"node '{node}' has several ports ({names}): name one", node)
        )
        return None
    port = next((p for p in ports if p.name == name), None)
    if port is None:
        names = ", ".join(p.name for p in ports) or "none"
        problems.append(
            FlowProblem(path, f"node '{node}' has no port '{name}' (ports: {names})", node)
        )
    return port


def _check_inputs(spec: FlowSpec, nodes: dict[str, Node], problems: list[FlowProblem]) -> None:
    """Required inputs must have an edge (counting edges already reported as faulty)."""
    for index, node in enumerate(spec.nodes):
        instance = nodes.get(node.key)
        if instance is None:
            continue
        ports = [e.target_port or "*" for e in spec.edges if e.target == node.key]
        for port in instance.inputs:
            if port.required and port.name not in ports and "*" not in ports:
                problems.append(
                    FlowProblem(
                        f"nodes[{index}].inputs.{port.name}",
                        f"required input '{port.name}' is not connected",
                        node.key,
                    )
                )


def _check_schemas(
    spec: FlowSpec,
    nodes: dict[str, Node],
    graph: Graph,
    order: list[str],
    problems: list[FlowProblem],
    found: PortSchemas | None = None,
) -> None:
    """Propagate record schemas (per output port) in topological order and let each node
    check its fields."""
    index_of = {node.key: i for i, node in enumerate(spec.nodes)}
    schemas: OutputSchemas = {}
    for key in order:
        instance = nodes.get(key)
        if instance is None:
            schemas[key] = {}  # every port unknown
            continue
        inputs = input_schemas(graph, key, schemas)
        for problem in instance.check(inputs):
            path = (
                f"nodes[{index_of[key]}].{problem.path}"
                if problem.path
                else f"nodes[{index_of[key]}]"
            )
            problems.append(FlowProblem(path, problem.message, key))
        schemas[key] = instance.output_schemas(inputs)
        if found is not None:
            outputs = {port: schema.as_dict() for port, schema in schemas[key].items()}
            found[key] = {
                "inputs": {port: schema.as_dict() for port, schema in inputs.items()},
                # (the first port's: what a node with one output port gives)
                "output": next(iter(outputs.values()), None),
                "outputs": outputs,
                "ports": [port.as_dict() for port in instance.output_ports()],
            }


#: Per node key: the record schema on each of its output ports (a port missing: unknown).
OutputSchemas = dict[str, dict[str, RecordSchema]]


def input_schemas(graph: Graph, key: str, schemas: OutputSchemas) -> dict[str, RecordSchema]:
    """The schema on each input port, from the output port each edge leaves by; several edges
    into one port merge (unknown wins)."""
    merged: dict[str, RecordSchema] = {}
    for edge in graph.parents[key]:
        incoming = schemas[edge.source].get(edge.source_port, RecordSchema.unknown())
        current = merged.get(edge.target_port)
        if current is None:
            merged[edge.target_port] = incoming
        elif current.fields is None or incoming.fields is None:
            merged[edge.target_port] = RecordSchema.unknown()
        else:
            merged[edge.target_port] = RecordSchema({**current.fields, **incoming.fields})
    return merged
