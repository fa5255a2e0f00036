"""``map_fields``: build new records from fields of the input: rename, pick, cast, constants."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from nodes.builtin.casts import CAST_TYPES, CASTS, CastName, cast, field_type_of, keeps_column
from nodes.builtin.paths import MISSING, get_path, set_path, upstream_problem
from nodes.sdk.batches import AnyBatch, Record, RowBatch, first_input, has_null
from nodes.sdk.capabilities import AcceptsRows, Partitionable, Pure
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import FieldType, Problem, RecordSchema


class FieldMapping(NodeConfig):
    """Where one output field comes from: a ``source`` path (optionally cast) or a ``value``."""

    source: str | None = Field(None, min_length=1, description="Dotted path of the input field.")
    cast: CastName | None = Field(None, description="Convert the value to this type.")
    default: Any = Field(None, description="Used when the source is missing or null.")
    value: Any = Field(None, description="A constant, instead of a source.")

    @model_validator(mode="after")
    def _source_or_value(self) -> FieldMapping:
        constant = "value" in self.model_fields_set
        if constant == (self.source is not None):
            raise ValueError("give either 'source' or 'value'")
        if constant and self.default is not None:
            raise ValueError("a constant 'value' takes no 'default'")
        for given in (self.value, self.default):
            if self.cast and given is not None:
                cast(self.cast, given)  # a constant that cannot be cast fails on save, not at run
        return self


def _mapping_schema(schema: dict[str, Any]) -> None:
    # Mapping values may also be a bare source path; the validator below normalises them.
    spec = schema["properties"]["mapping"]["additionalProperties"]
    path = {"type": "string", "description": "Dotted path of the input field."}
    schema["properties"]["mapping"]["additionalProperties"] = {"anyOf": [path, spec]}


class MapFieldsConfig(NodeConfig):
    """The fields of the output records."""

    model_config = ConfigDict(json_schema_extra=_mapping_schema)

    mapping: dict[str, FieldMapping] = Field(
        min_length=1,
        description="Output field (dotted for nested objects) -> a source path, or "
        "{source, cast, default}, or {value}.",
    )
    keep_unmapped: bool = Field(
        False, description="Also keep the input fields that are not the source of a mapping."
    )

    @field_validator("mapping", mode="before")
    @classmethod
    def _paths_are_sources(cls, mapping: Any) -> Any:
        if not isinstance(mapping, Mapping):
            return mapping
        return {k: {"source": v} if isinstance(v, str) else v for k, v in mapping.items()}

    @field_validator("mapping")
    @classmethod
    def _targets_are_paths(cls, mapping: dict[str, FieldMapping]) -> dict[str, FieldMapping]:
        for target in mapping:
            if "" in target.split("."):
                raise ValueError(f"'{target}' is not a valid field path")
            for other in mapping:
                if other.startswith(f"{target}."):
                    raise ValueError(f"'{target}' and '{other}' overlap")
        return mapping


class MapFieldsNode(Partitionable, Pure, AcceptsRows, Node[MapFieldsConfig]):
    """Maps each input record to an output record described by ``mapping``."""

    type = "map_fields"
    version = 1
    label = "Map fields"
    description = "Rename, pick, cast and add fields; targets may be dotted to nest objects."
    category = "transform"
    inputs = (Port("in", description="Records to reshape."),)
    outputs = (Port("out", description="The reshaped records, one per input record."),)

    @cached_property
    def _sources(self) -> set[str]:
        return {spec.source for spec in self.config.mapping.values() if spec.source}

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        upstream = inputs.get("in", RecordSchema.unknown())
        fields: dict[str, FieldType] = {}
        if self.config.keep_unmapped:
            if upstream.fields is None:
                return RecordSchema.unknown()
            fields = {k: t for k, t in upstream.fields.items() if k not in self._sources}
        for target, spec in self.config.mapping.items():
            head, _, rest = target.partition(".")
            fields[head] = FieldType.JSON if rest else self._type(spec, upstream)
        return RecordSchema(fields)

    @staticmethod
    def _type(spec: FieldMapping, upstream: RecordSchema) -> FieldType:
        if spec.cast:
            return CAST_TYPES[spec.cast]
        if spec.source:
            return upstream.type_of(spec.source)
        return field_type_of(spec.value)

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        schema = inputs.get("in", RecordSchema.unknown())
        found = (
            upstream_problem(f"config.mapping.{target}.source", spec.source, schema)
            for target, spec in self.config.mapping.items()
            if spec.source
        )
        return [problem for problem in found if problem]

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[AnyBatch]:
        index = 0
        steps = self._steps
        by_column = not self.config.keep_unmapped and all(
            step.source is None or step.top_level for step in steps
        )
        for batch in first_input(inputs):
            out: AnyBatch | None = None
            if type(batch) is RowBatch and by_column:
                out = self._map_columns(batch)
            if out is None:
                out = [
                    self._map(record, steps, index + offset, context.partition)
                    for offset, record in enumerate(batch)
                ]
            index += len(batch)
            if out:
                yield out

    def _map_columns(self, batch: RowBatch) -> RowBatch | None:
        """The output built column by column, the records' dicts made in C (top-level sources,
        no ``keep_unmapped``); ``None`` when a value fails its cast, so that the record-by-record
        path raises the error about the first failing record, as it always would."""
        positions = batch.positions()
        size = len(batch)
        columns: list[list[Any]] = []
        for step in self._steps:
            if step.source is None:
                columns.append([step.constant] * size)
                continue
            at = positions.get(step.source)
            values = [None] * size if at is None else batch.column(at)
            if step.default is not None and has_null(values):
                values = [step.default if value is None else value for value in values]
            if step.cast is not None and not keeps_column(step.cast_name, values):
                try:
                    values = [None if value is None else step.cast(value) for value in values]
                except ValueError:
                    return None
            columns.append(values)
        names, rows = self._layout.assemble(columns)
        return RowBatch(names, rows)

    @cached_property
    def _layout(self) -> _Layout:
        return _Layout.of([step.target for step in self._steps])

    @cached_property
    def _steps(self) -> list[_Step]:
        return [_Step.of(target, spec) for target, spec in self.config.mapping.items()]

    def _map(self, record: Record, steps: list[_Step], index: int, partition: int | None) -> Record:
        keep = self.config.keep_unmapped
        sources = self._sources
        result = {k: v for k, v in record.items() if k not in sources} if keep else {}
        plain = type(record) is dict
        for step in steps:
            if step.source is None:
                value = step.value
            elif plain and step.top_level:
                value = record.get(step.source)
            else:
                value = get_path(record, step.source)
            if value is MISSING or value is None:
                value = step.default
            if step.cast is not None and value is not None:
                try:
                    value = step.cast(value)
                except ValueError as exc:
                    where = f"record {index}" + (
                        f" of partition {partition}" if partition is not None else ""
                    )
                    raise NodeError(
                        f"field '{step.target}' of {where}: {exc}", permanent=True
                    ) from None
            if step.parents is None:
                result[step.target] = value
            elif keep:
                set_path(result, step.target, value)  # copies objects shared with the input
            else:
                # Every object on the way was made here (targets never overlap): fill in place.
                current = result
                for part in step.parents:
                    current = current.setdefault(part, {})
                current[step.leaf] = value
        return result


@dataclass(frozen=True)
class _Step:
    """One mapping, prepared once per node run rather than once per record."""

    target: str
    source: str | None
    top_level: bool
    value: Any
    default: Any
    cast: Callable[[Any], Any] | None
    cast_name: str
    parents: tuple[str, ...] | None
    leaf: str

    @cached_property
    def constant(self) -> Any:
        """A constant ``value`` after its cast (checked when the config was saved)."""
        return self.value if self.cast is None or self.value is None else self.cast(self.value)

    @classmethod
    def of(cls, target: str, spec: FieldMapping) -> _Step:
        *parents, leaf = target.split(".")
        return cls(
            target=target,
            source=spec.source,
            top_level=spec.source is not None and "." not in spec.source,
            value=spec.value,
            default=spec.default,
            cast=CASTS[spec.cast] if spec.cast else None,
            cast_name=spec.cast or "",
            parents=tuple(parents) if parents else None,
            leaf=leaf,
        )


@dataclass(frozen=True)
class _Layout:
    """The shape of the output records: top-level names in order, each either one mapping's
    column (its index) or a nested object with a layout of its own."""

    names: list[str]
    parts: list[int | _Layout]

    @classmethod
    def of(cls, targets: list[str]) -> _Layout:
        tree: dict[str, Any] = {}
        for index, target in enumerate(targets):
            *parents, leaf = target.split(".")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = index
        return cls._from_tree(tree)

    @classmethod
    def _from_tree(cls, tree: dict[str, Any]) -> _Layout:
        parts = [cls._from_tree(v) if isinstance(v, dict) else v for v in tree.values()]
        return cls(list(tree), parts)

    def assemble(self, columns: list[list[Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """This level's names and rows; a nested object becomes a column of new dicts."""
        values = [self._column(part, columns) for part in self.parts]
        return self.names, list(zip(*values, strict=True))

    @staticmethod
    def _column(part: int | _Layout, columns: list[list[Any]]) -> list[Any]:
        if isinstance(part, int):
            return columns[part]
        names, rows = part.assemble(columns)
        return list(map(dict, map(zip, repeat(names), rows)))
