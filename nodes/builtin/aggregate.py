"""``aggregate``: one record per group of input records (``group_by`` fields and an optional
time bucket) with the aggregate functions of its records.

The groups are kept as mergeable partial results (:class:`Groups`, over the accumulators of
:mod:`nodes.builtin.accumulators`): the part of the input one partition saw aggregates on its
own, and merging the parts in order gives exactly the whole input's result; as a
:class:`~nodes.sdk.capabilities.Combinable` node, each partition's groups are a storable
partial state (:meth:`Groups.state`) and one combine step merges them. Groups come out in
the order they first appear; with no ``group_by`` and no time bucket there is exactly one
record, even for no input (``count`` 0, the others null, as SQL's ``GROUP BY ()``). The number
of groups is bounded (``max_groups``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from nodes.builtin.accumulators import Accumulator, AggregateError, accumulator
from nodes.builtin.keys import Key, hashable, key_reader
from nodes.builtin.paths import MISSING, get_path, set_path, upstream_problem
from nodes.builtin.time_buckets import bucketer, check_every, check_zone
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, Batch, Record, first_input
from nodes.sdk.capabilities import Combinable
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import FieldType, Problem, RecordSchema

Op = Literal["count", "sum", "min", "max", "avg", "count_distinct", "first", "last"]

#: Field types each function accepts (any function accepts ``any``).
_NUMERIC = frozenset({FieldType.INTEGER, FieldType.FLOAT, FieldType.DECIMAL, FieldType.ANY})
_ORDERED = _NUMERIC | {FieldType.STRING, FieldType.DATE, FieldType.DATETIME, FieldType.BOOLEAN}
_ACCEPTS: dict[str, frozenset[FieldType]] = {
    "sum": _NUMERIC,
    "avg": _NUMERIC,
    "min": _ORDERED,
    "max": _ORDERED,
}
_INSTANTS = frozenset({FieldType.DATE, FieldType.DATETIME, FieldType.STRING, FieldType.ANY})


class Aggregation(NodeConfig):
    """One aggregate function of one field, and the output field it is written to."""

    op: Op = Field(description="The function.")
    field: str | None = Field(
        None,
        min_length=1,
        description="Dotted path of the input field (count without one counts records).",
    )
    as_: str | None = Field(
        None,
        alias="as",
        min_length=1,
        description="The output field (default: op_field, or count).",
    )

    @model_validator(mode="after")
    def _field_given(self) -> Aggregation:
        if self.field is None and self.op != "count":
            raise ValueError(f"'{self.op}' needs a field")
        return self

    @property
    def output(self) -> str:
        if self.as_ is not None:
            return self.as_
        return self.op if self.field is None else f"{self.op}_{self.field.replace('.', '_')}"


class TimeBucket(NodeConfig):
    """Group by the time interval a date-time field falls in, on a zone's wall clock."""

    field: str = Field(min_length=1, description="Dotted path of a date-time (or date) field.")
    every: str = Field(description="The bucket length: 15m, 1h, 1d (minutes, hours, one day).")
    timezone: str = Field("UTC", description="IANA time zone whose wall clock cuts the buckets.")
    as_: str | None = Field(
        None, alias="as", min_length=1, description="The output field (default: the field)."
    )

    @field_validator("every")
    @classmethod
    def _every(cls, every: str) -> str:
        return check_every(every)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, timezone: str) -> str:
        return check_zone(timezone)

    @property
    def output(self) -> str:
        return self.as_ if self.as_ is not None else self.field


class AggregateConfig(NodeConfig):
    """The groups and what is computed for each."""

    group_by: list[str] = Field(
        default_factory=list, description="Fields whose values make a group (none: one total)."
    )
    aggregations: list[Aggregation] = Field(min_length=1, description="What each group gets.")
    time_bucket: TimeBucket | None = Field(None, description="Also group by time interval.")
    max_groups: int = Field(
        1_000_000,
        ge=1,
        le=100_000_000,
        description="The most groups (and values per count_distinct); past it the node fails.",
    )

    @model_validator(mode="after")
    def _outputs_differ(self) -> AggregateConfig:
        names = [*self.group_by]
        if self.time_bucket is not None:
            names.append(self.time_bucket.output)
        names += [aggregation.output for aggregation in self.aggregations]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"output field {', '.join(repr(n) for n in repeated)} is written twice: give "
                "each aggregation (and the time bucket) its own 'as'"
            )
        return self


class Groups:
    """The partial result of aggregating some records: accumulators per group, in the order the
    groups first appeared. ``merge`` adds a later part's partial result."""

    def __init__(self, config: AggregateConfig) -> None:
        self.config = config
        self.key_of = key_reader(config.group_by)
        bucket = config.time_bucket
        self.bucket_of = bucketer(bucket.every, bucket.timezone) if bucket else None
        self.readers = [_reader(a.field) for a in config.aggregations]
        #: group key -> (the group's output values, its accumulators)
        self.groups: dict[Key, tuple[list[Any], list[Accumulator]]] = {}
        if not config.group_by and bucket is None:
            self._group(())  # one total, even of nothing

    def add(self, records: Iterable[Record]) -> None:
        aggregations = self.config.aggregations
        for record in records:
            key, shown = self._key(record)
            held = self.groups.get(key)
            accumulators = (held or self._group(key, shown))[1]
            for index, (acc, read) in enumerate(zip(accumulators, self.readers, strict=True)):
                try:
                    acc.add(read(record))
                except AggregateError as exc:
                    raise _failure(index, aggregations[index], exc) from None

    def merge(self, other: Groups) -> None:
        for key, (shown, accumulators) in other.groups.items():
            mine = (self.groups.get(key) or self._group(key, shown))[1]
            for index, (acc, theirs) in enumerate(zip(mine, accumulators, strict=True)):
                try:
                    acc.merge(theirs)
                except AggregateError as exc:
                    raise _failure(index, self.config.aggregations[index], exc) from None

    def state(self) -> list[list[Any]]:
        """These groups as a storable partial state: ``[[values, [accumulator state, ...]],
        ...]``, one entry per group in the order the groups first appeared, ``values`` being
        the group's ``group_by`` values then its bucket's start (see :meth:`load`)."""
        return [
            [shown, [acc.state() for acc in accumulators]]
            for shown, accumulators in self.groups.values()
        ]

    @classmethod
    def load(cls, config: AggregateConfig, state: Iterable[Any]) -> Groups:
        """The groups a partial :meth:`state` describes (written by a node with the same
        config). Each group's key is worked out from its values again, exactly as from a record:
        the values of a key, made hashable, and the bucket's instant."""
        groups = cls(config)
        width = len(config.group_by)
        zone = ZoneInfo(config.time_bucket.timezone) if config.time_bucket else None
        for shown, states in state:
            if zone is not None and shown[width] is not None:
                shown[width] = shown[width].astimezone(zone)  # stored at its fixed offset
            key: Key = tuple(hashable(value) for value in shown[:width])
            if zone is not None:
                start = shown[width]
                key = (*key, None if start is None else start.astimezone(UTC))
            held = groups.groups.get(key)
            if held is not None and key != ():
                raise NodeError("a partial state repeats a group", permanent=True)
            accumulators = (held or groups._group(key, shown))[1]
            for index, (acc, acc_state) in enumerate(zip(accumulators, states, strict=True)):
                try:
                    acc.load(acc_state)
                except AggregateError as exc:
                    raise _failure(index, config.aggregations[index], exc) from None
                except (TypeError, ValueError):
                    raise NodeError(
                        f"a partial state does not match aggregations[{index}]: it was written "
                        "with another config",
                        permanent=True,
                    ) from None
        return groups

    def records(self) -> Iterator[Record]:
        paths = list(self.config.group_by)
        if self.config.time_bucket is not None:
            paths.append(self.config.time_bucket.output)
        for shown, accumulators in self.groups.values():
            record: Record = {}
            for path, value in zip(paths, shown, strict=True):
                set_path(record, path, value)
            for aggregation, acc in zip(self.config.aggregations, accumulators, strict=True):
                record[aggregation.output] = acc.result()
            yield record

    def _key(self, record: Record) -> tuple[Key, list[Any]]:
        key = self.key_of(record)
        shown = [_value(record, path) for path in self.config.group_by]
        if self.bucket_of is not None:
            assert self.config.time_bucket is not None
            field = self.config.time_bucket.field
            try:
                start = self.bucket_of(_value(record, field))
            except ValueError as exc:
                raise NodeError(f"time_bucket.field '{field}': {exc}", permanent=True) from None
            # Keyed by the instant: two datetimes of one zone compare by their wall clock,
            # which would merge the two 02:00 hours of the night the clocks go back.
            instant = None if start is None else start.astimezone(UTC)
            key, shown = (*key, instant), [*shown, start]
        return key, shown

    def _group(
        self, key: Key, shown: list[Any] | None = None
    ) -> tuple[list[Any], list[Accumulator]]:
        if len(self.groups) >= self.config.max_groups:
            raise NodeError(
                f"more than {self.config.max_groups:,} groups (max_groups = "
                f"{self.config.max_groups:,}): group by fewer values, or raise max_groups if the "
                "workers have the memory",
                permanent=True,
            )
        limit = self.config.max_groups
        accumulators = [accumulator(a.op, a.field is None, limit) for a in self.config.aggregations]
        try:
            entry = self.groups[key] = (shown or [], accumulators)
        except TypeError:
            raise NodeError(f"a group key is not a value to group by: {key!r:.100}") from None
        return entry


def _reader(path: str | None) -> Callable[[Record], Any]:
    if path is None:
        return lambda record: None
    if "." not in path:
        return lambda record: record.get(path)
    return lambda record: _value(record, path)


def _value(record: Record, path: str) -> Any:
    found = get_path(record, path) if "." in path else record.get(path)
    return None if found is MISSING else found


def _failure(index: int, aggregation: Aggregation, exc: AggregateError) -> NodeError:
    what = f"{aggregation.op} of '{aggregation.field}'" if aggregation.field else aggregation.op
    return NodeError(f"aggregations[{index}] ({what}): {exc}", permanent=True)


class AggregateNode(Combinable, Node[AggregateConfig]):
    """Group records and compute counts, exact sums, averages, extremes per group."""

    type = "aggregate"
    version = 1
    label = "Aggregate"
    description = "One record per group (fields, time bucket): count, sum, avg, min, max..."
    category = "transform"
    inputs = (Port("in", description="Records to aggregate."),)
    outputs = (Port("out", description="One record per group."),)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        schema = inputs.get("in", RecordSchema.unknown())
        fields: dict[str, FieldType] = {}
        for path in self.config.group_by:
            head = path.split(".", 1)[0]
            fields[head] = schema.type_of(path) if head == path else FieldType.JSON
        if self.config.time_bucket is not None:
            fields[self.config.time_bucket.output] = FieldType.DATETIME
        for aggregation in self.config.aggregations:
            fields[aggregation.output] = _result_type(aggregation, schema)
        return RecordSchema(fields)

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        schema = inputs.get("in", RecordSchema.unknown())
        problems = [
            upstream_problem(f"config.group_by[{index}]", path, schema)
            for index, path in enumerate(self.config.group_by)
        ]
        bucket = self.config.time_bucket
        if bucket is not None:
            problems.append(upstream_problem("config.time_bucket.field", bucket.field, schema))
            kind = schema.type_of(bucket.field)
            if schema.has_path(bucket.field) and kind not in _INSTANTS:
                problems.append(
                    Problem(
                        "config.time_bucket.field",
                        f"'{bucket.field}' is a {kind} field: a time bucket needs a datetime or "
                        "date field",
                    )
                )
        for index, aggregation in enumerate(self.config.aggregations):
            if aggregation.field is None:
                continue
            location = f"config.aggregations[{index}].field"
            missing = upstream_problem(location, aggregation.field, schema)
            if missing is not None:
                problems.append(missing)
                continue
            kind = schema.type_of(aggregation.field)
            accepted = _ACCEPTS.get(aggregation.op)
            if accepted is not None and kind not in accepted:
                needs = "integer, float or decimal" if accepted is _NUMERIC else "comparable"
                problems.append(
                    Problem(
                        location,
                        f"cannot {aggregation.op} '{aggregation.field}', a {kind} field "
                        f"({aggregation.op} needs {needs} values)",
                    )
                )
        return [problem for problem in problems if problem]

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[Batch]]
    ) -> Iterator[Batch]:
        return _batched(self._aggregated(context, inputs).records())

    # --- per partition, then one combine (Combinable) ---------------------------------------
    def execute_partial(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[Batch]]
    ) -> list[list[Any]]:
        """This partition's groups (:meth:`Groups.state`)."""
        return self._aggregated(context, inputs).state()

    def combine(self, context: ExecutionContext, partials: Iterable[Any]) -> Iterator[Batch]:
        """The partitions' groups merged in partition order: the whole input's groups, in the
        order they first appear in it, ``first``/``last`` as over the whole input."""
        groups = Groups(self.config)
        for partial in partials:
            _check_cancel(context)
            groups.merge(Groups.load(self.config, partial))
        return _batched(groups.records())

    def _aggregated(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[Batch]]
    ) -> Groups:
        groups = Groups(self.config)
        for batch in first_input(inputs):
            _check_cancel(context)
            groups.add(batch)
        return groups


def _check_cancel(context: ExecutionContext) -> None:
    if context.is_cancelled():
        raise NodeError("the run was cancelled", permanent=True)


def _batched(records: Iterable[Record]) -> Iterator[Batch]:
    out: Batch = []
    for record in records:
        out.append(record)
        if len(out) >= DEFAULT_BATCH_SIZE:
            yield out
            out = []
    if out:
        yield out


def _result_type(aggregation: Aggregation, schema: RecordSchema) -> FieldType:
    if aggregation.op in ("count", "count_distinct"):
        return FieldType.INTEGER
    kind = schema.type_of(aggregation.field or "")
    if aggregation.op == "avg":
        return {FieldType.INTEGER: FieldType.FLOAT}.get(kind, kind)
    return kind
