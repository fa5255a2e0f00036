"""The Node base class: the contract every node type fulfils (ports, config, ``execute``).

What a node type may do beyond it, for speed, are optional capabilities
(:mod:`nodes.sdk.capabilities`); the records and batches it reads and yields are in
:mod:`nodes.sdk.batches`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Generic, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from nodes.sdk.batches import (
    DEFAULT_BATCH_SIZE,
    AnyBatch,
    Batch,
    Output,
    PortBatch,
    Record,
    RecordStream,
    RowBatch,
    as_records,
    first_input,
    has_null,
    rebatch,
)
from nodes.sdk.capabilities import accepts_rows, is_partitionable
from nodes.sdk.context import ExecutionContext
from nodes.sdk.ports import Port, PortKind
from nodes.sdk.schema import Problem, RecordSchema


class NodeConfig(BaseModel):
    """Base of node config models: strict about unknown keys, immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The config model of a node type: ``class UpperNode(Node[UpperConfig])`` types
#: ``self.config`` as an ``UpperConfig``.
ConfigT = TypeVar("ConfigT", bound=NodeConfig, default=NodeConfig, covariant=True)


class Node(Generic[ConfigT]):
    """A node type, parameterised by its config model: ``class UpperNode(Node[UpperConfig])``.

    Subclasses declare, as class attributes, what the platform inspects before anything runs:
    ``type``, ``version``, ``label``, ``description``, ``category``, the ``inputs`` and
    ``outputs`` ports; the config model is the type argument (published as ``Config``). They
    implement:

    - ``output_schema(inputs)`` -> the record schema of the output, given the schemas arriving
      on each input port (defaults to unknown);
    - ``check(inputs)`` -> problems found against those schemas (e.g. a field that is missing);
    - ``execute(context, inputs)`` -> an iterator of record batches. It must stream: read input
      batches lazily and yield bounded batches, never a whole dataset.

    A node whose output ports depend on its config (``branch``: one per route) sets
    ``dynamic_outputs`` and overrides ``output_ports()``; a node with several output ports
    yields each batch as a :class:`~nodes.sdk.batches.PortBatch` naming its port, and may give
    each port its own schema (``output_schemas(inputs)``).

    ``execute`` raises :class:`~nodes.sdk.errors.NodeError` for failures users can act on;
    any other exception is treated as a bug in the node and may be retried.

    A data preview calls ``preview(context, inputs)`` instead of ``execute``, with
    ``context.sample_limit`` set (see :meth:`preview`). What a node may do for speed (run per
    partition, take row batches, read in slices) it declares with the mixins of
    :mod:`nodes.sdk.capabilities`.
    """

    type: ClassVar[str]
    version: ClassVar[int] = 1
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    category: ClassVar[str] = "transform"
    inputs: ClassVar[tuple[Port, ...]] = (Port("in"),)
    outputs: ClassVar[tuple[Port, ...]] = (Port("out"),)
    #: The output ports come from the config (``output_ports()``), not from ``outputs``: an
    #: edge from such a node always names its ``from_port``.
    dynamic_outputs: ClassVar[bool] = False
    #: The config model: the class's type argument (``Node[UpperConfig]``). Setting it by hand
    #: is the older spelling, still read; given both ways, they must agree.
    Config: ClassVar[builtins.type[NodeConfig]] = NodeConfig
    #: The node acts outside the run (sends, writes, deletes). A data preview never calls its
    #: ``execute``: only a ``preview`` of its own, if it has one. ``None``: a node of category
    #: ``destination`` has side effects, any other has none.
    side_effects: ClassVar[bool | None] = None
    #: What the run's two counts mean for this node, as users read them: the records it
    #: took in and the records it put out (``None``: "rows in", "rows out"). A sink whose
    #: output is one summary per request says so: ``("records sent", "requests")``.
    counts: ClassVar[tuple[str, str] | None] = None

    config: ConfigT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = _config_argument(cls)
        if model is None:
            return
        given = cls.__dict__.get("Config")
        if given is not None and given is not model:
            raise TypeError(
                f"{cls.__name__}: Config is {given.__name__} but the class is "
                f"Node[{model.__name__}]; give the config model once, as the type argument"
            )
        cls.Config = model

    def __init__(self, config: NodeConfig | Mapping[str, Any]) -> None:
        if not isinstance(config, NodeConfig):
            config = self.Config.model_validate(dict(config))
        self.config = cast(ConfigT, config)

    @property
    def is_source(self) -> bool:
        return not self.inputs

    @classmethod
    def input_port(cls, name: str) -> Port | None:
        return next((p for p in cls.inputs if p.name == name), None)

    @classmethod
    def output_port(cls, name: str) -> Port | None:
        return next((p for p in cls.outputs if p.name == name), None)

    def output_ports(self) -> tuple[Port, ...]:
        """The output ports of this node with its config: the class's ``outputs``, unless the
        node declares ``dynamic_outputs`` and derives them from its config."""
        return self.outputs

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The catalog entry: what the API and admin show about this type."""
        return {
            "type": cls.type,
            "version": cls.version,
            "label": cls.label or cls.type,
            "description": cls.description,
            "category": cls.category,
            "inputs": [p.as_dict() for p in cls.inputs],
            "outputs": [p.as_dict() for p in cls.outputs],
            "dynamic_outputs": cls.dynamic_outputs,
            "partitionable": is_partitionable(cls),
            "config_schema": cls.Config.model_json_schema(),
        }

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return RecordSchema.unknown()

    def output_schemas(self, inputs: Mapping[str, RecordSchema]) -> dict[str, RecordSchema]:
        """The record schema on each output port (by default ``output_schema`` on every one)."""
        schema = self.output_schema(inputs)
        return {port.name: schema for port in self.output_ports()}

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        return []

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Output]:
        raise NotImplementedError

    def run(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[Output]:
        """What the engine calls: :meth:`execute`, with row batches turned into lists of dicts
        on the way in unless the node accepts rows (:class:`~nodes.sdk.capabilities.AcceptsRows`)."""
        return self.execute(context, self._converted(inputs))

    @classmethod
    def has_side_effects(cls) -> bool:
        if cls.side_effects is None:
            return cls.category == "destination"
        return cls.side_effects

    @classmethod
    def can_preview(cls) -> bool:
        """Whether a data preview can run this node: it has no side effects, or it overrides
        :meth:`preview` to show what it would do without doing it."""
        return not cls.has_side_effects() or cls.preview is not Node.preview

    def preview(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Output]:
        """The batches a data preview shows for this node, on a sample.

        ``context.sample_limit`` is set: read at most that many records (a source pushes it
        down to where it reads: ``LIMIT`` in SQL, the first page of an API, the first file's
        first rows); the preview stops reading after that many anyway. Bound blocking waits by
        ``context.time_left(...)``. Nothing may change outside the run: a node with side
        effects overrides this to return what it *would* send or write (its secrets redacted
        with ``context.redactor``), and is not executed at all when it does not.

        The default runs :meth:`execute` (nodes without side effects only).
        """
        if self.has_side_effects():
            raise NotImplementedError(f"node type '{self.type}' has no preview")
        return self.execute(context, inputs)

    def run_preview(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[Output]:
        """What a data preview calls: :meth:`preview`, with inputs converted as in :meth:`run`."""
        return self.preview(context, self._converted(inputs))

    def _converted(self, inputs: Mapping[str, Iterable[AnyBatch]]) -> Mapping[str, RecordStream]:
        if accepts_rows(type(self)):
            # The node reads AnyBatch (AcceptsRows); its execute is typed so.
            return inputs  # type: ignore[return-value]
        return {port: map(as_records, stream) for port, stream in inputs.items()}


def per_port(node: Node) -> bool:
    """Whether the node's output is kept port by port: it has several output ports, or ports
    from its config. Its batches are then :class:`PortBatch` es, and every edge from it names
    its port."""
    return type(node).dynamic_outputs or len(node.output_ports()) > 1


def _config_argument(cls: builtins.type[Any]) -> builtins.type[NodeConfig] | None:
    """The config model given as the type argument of ``Node`` in ``cls``'s own bases."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, builtins.type) and issubclass(origin, Node):
            model = next(iter(get_args(base)), None)
            if isinstance(model, builtins.type) and issubclass(model, NodeConfig):
                return model
    return None


# Batches and their helpers live in nodes.sdk.batches; importing them from here still works.
__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AnyBatch",
    "Batch",
    "ConfigT",
    "Node",
    "NodeConfig",
    "Output",
    "PortBatch",
    "PortKind",
    "Record",
    "RecordStream",
    "RowBatch",
    "as_records",
    "first_input",
    "has_null",
    "per_port",
    "rebatch",
]
