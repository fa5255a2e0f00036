"""``branch``: send each record to the output port of the route its fields match.

A route is a ``filter`` config with a port name: its conditions are tested exactly as
``filter`` tests them (one definition, :func:`nodes.builtin.filter.matcher`). With ``mode``
``first`` a record leaves by the first route it matches, with ``all`` by every route it
matches; a record no route takes leaves by ``otherwise`` (or is dropped when it is null).

A record's ports depend on that record alone, so ``branch`` is
:class:`~nodes.sdk.capabilities.Partitionable`: run on each partition of its input, each
port's batches of partition after partition are the batches the whole input sends by that port
(an engine keeping a partition's output per port runs it so, ``by_port=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from nodes.builtin.filter import FilterConfig, condition_problems, matcher
from nodes.sdk.batches import Batch, PortBatch, Record, first_input
from nodes.sdk.capabilities import Partitionable
from nodes.sdk.context import ExecutionContext
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import Problem, RecordSchema

#: What a port name may be (it names stored outputs and appears in edges).
PORT_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class Route(FilterConfig):
    """A port and the conditions a record must meet to leave by it."""

    port: str = Field(pattern=PORT_NAME, description="The output port of this route.")


class BranchConfig(NodeConfig):
    """Where each record goes."""

    routes: list[Route] = Field(
        min_length=1,
        max_length=100,
        description="The routes, each a port and filter conditions, in order (at most 100).",
    )
    otherwise: str | None = Field(
        "else",
        pattern=PORT_NAME,
        description="The port of the records no route takes; null drops them.",
    )
    mode: Literal["first", "all"] = Field(
        "first",
        description="'first': a record leaves by the first route it matches; 'all': by every "
        "route it matches.",
    )

    @field_validator("routes")
    @classmethod
    def _ports_differ(cls, routes: list[Route]) -> list[Route]:
        seen: dict[str, int] = {}
        for index, route in enumerate(routes):
            if route.port in seen:
                raise ValueError(
                    f"port '{route.port}' is named by routes[{seen[route.port]}] and "
                    f"routes[{index}]: give each route a port of its own"
                )
            seen[route.port] = index
        return routes

    @field_validator("otherwise")
    @classmethod
    def _otherwise_is_its_own(cls, otherwise: str | None, info: ValidationInfo) -> str | None:
        routes = info.data.get("routes") or []
        if otherwise is not None and any(route.port == otherwise for route in routes):
            raise ValueError(
                f"'{otherwise}' is also a route's port: records no route takes need a port of "
                "their own (or null to drop them)"
            )
        return otherwise


class BranchNode(Partitionable, Node[BranchConfig]):
    """Routes records to output ports; every port carries the input's schema."""

    type = "branch"
    version = 1
    label = "Branch"
    description = "Send each record to the port of the route it matches (routes as filters)."
    category = "transform"
    inputs = (Port("in", description="Records to route."),)
    outputs = ()
    dynamic_outputs = True

    def output_ports(self) -> tuple[Port, ...]:
        ports = [
            Port(route.port, description=f"The records that match routes[{index}].")
            for index, route in enumerate(self.config.routes)
        ]
        if self.config.otherwise is not None:
            ports.append(Port(self.config.otherwise, description="The records no route takes."))
        return tuple(ports)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return inputs.get("in", RecordSchema.unknown())

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        schema = inputs.get("in", RecordSchema.unknown())
        return [
            problem
            for index, route in enumerate(self.config.routes)
            for problem in condition_problems(f"config.routes[{index}]", route, schema)
        ]

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[Batch]]
    ) -> Iterator[PortBatch]:
        ports_of = self._router()
        names = [port.name for port in self.output_ports()]
        for batch in first_input(inputs):
            routed: dict[str, Batch] = {name: [] for name in names}
            for record in batch:
                for port in ports_of(record):
                    routed[port].append(record)
            for name in names:
                if routed[name]:
                    yield PortBatch(name, routed[name])

    def _router(self) -> Callable[[Record], list[str]]:
        """A function giving the ports a record leaves by (none: it is dropped)."""
        routes = [(route.port, matcher(route)) for route in self.config.routes]
        otherwise = [self.config.otherwise] if self.config.otherwise is not None else []

        def first(record: Record) -> list[str]:
            for port, matches in routes:
                if matches(record):
                    return [port]
            return otherwise

        def every(record: Record) -> list[str]:
            taken = [port for port, matches in routes if matches(record)]
            return taken or otherwise

        return first if self.config.mode == "first" else every
