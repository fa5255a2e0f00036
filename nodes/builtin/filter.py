"""``filter``: keep the records that match conditions on their fields."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import compress, repeat
from operator import itemgetter
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from nodes.builtin.operators import LIST_VALUED, OPERATORS, UNARY, column_operator
from nodes.builtin.paths import MISSING, get_path, upstream_problem
from nodes.sdk.batches import AnyBatch, Record, RowBatch, first_input
from nodes.sdk.capabilities import AcceptsRows, Partitionable, Pure
from nodes.sdk.context import ExecutionContext
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.regex import RegexError, compile_regex
from nodes.sdk.schema import Problem, RecordSchema

OperatorName = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in",
    "contains", "startswith", "endswith", "is_null", "not_null", "regex",
]  # fmt: skip


class Condition(NodeConfig):
    """One test on one field of a record."""

    field: str = Field(min_length=1, description="Dotted path of the field, e.g. 'customer.id'.")
    op: OperatorName = Field(description="The comparison operator.")
    value: Any = Field(
        None,
        validate_default=True,
        description="What to compare with: a list for in/not_in, a regular expression for "
        "regex (Python syntax, matched in linear time: no backreferences or lookaround), "
        "nothing for is_null/not_null.",
    )

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None or op in UNARY:
            return value
        if value is None:
            raise ValueError(f"a value is required for '{op}' (use is_null to match nulls)")
        if op in LIST_VALUED and not isinstance(value, list):
            raise ValueError(f"'{op}' needs a list of values")
        if op == "regex":
            if not isinstance(value, str):
                raise ValueError("'regex' needs a regular expression string")
            try:
                compile_regex(value)
            except RegexError as exc:
                raise ValueError(str(exc)) from None
        return value

    def _operand(self) -> Any:
        return compile_regex(self.value) if self.op == "regex" else self.value

    def column_matches(self, values: list[Any]) -> list[bool]:
        """The test of each value of a column (this condition's top-level field) in one pass;
        the same answers as :meth:`predicate` gives record by record."""
        test, value = column_operator(self.op, values, self._operand())
        return list(map(test, values, repeat(value)))

    def predicate(self) -> Callable[[Record], bool]:
        """A test of one record against this condition; a missing field counts as null."""
        test = OPERATORS[self.op]
        value = self._operand()

        field = self.field
        if "." not in field:
            # A top-level field of a plain dict: one lookup instead of a path walk.
            def matches_field(record: Record) -> bool:
                if type(record) is dict:
                    return test(record.get(field), value)
                found = get_path(record, field)
                return test(None if found is MISSING else found, value)

            return matches_field

        def matches(record: Record) -> bool:
            found = get_path(record, field)
            return test(None if found is MISSING else found, value)

        return matches


class FilterConfig(NodeConfig):
    """Which records to keep."""

    conditions: list[Condition] = Field(min_length=1, description="The conditions to test.")
    match: Literal["all", "any"] = Field(
        "all", description="'all': every condition must hold; 'any': at least one."
    )


class FilterNode(Partitionable, Pure, AcceptsRows, Node[FilterConfig]):
    """Keeps the records matching all (or any) of the conditions; the schema passes through."""

    type = "filter"
    version = 1
    label = "Filter"
    description = "Keep the records whose fields match conditions (eq, gt, in, regex, ...)."
    category = "transform"
    inputs = (Port("in", description="Records to filter."),)
    outputs = (Port("out", description="The records that match."),)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return inputs.get("in", RecordSchema.unknown())

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        return condition_problems("config", self.config, inputs.get("in", RecordSchema.unknown()))

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[AnyBatch]:
        keep = matcher(self.config)
        by_column = all("." not in condition.field for condition in self.config.conditions)
        for batch in first_input(inputs):
            if type(batch) is RowBatch and by_column:
                rows = self._kept_rows(batch)
                if rows:
                    yield RowBatch(batch.names, rows)
                continue
            kept = list(filter(keep, batch))
            if kept:
                yield kept

    def _kept_rows(self, batch: RowBatch) -> list[tuple[Any, ...]]:
        """The rows that match, tested column by column (top-level fields only). Each
        condition tests only the rows still undecided, as record by record: with ``all`` the
        rows the earlier conditions kept, with ``any`` those they did not match."""
        positions = batch.positions()
        every = self.config.match == "all"
        rows, numbers = batch.rows, list(range(len(batch)))
        matched: list[int] = []
        for condition in self.config.conditions:
            index = positions.get(condition.field)
            # A missing field counts as null, in every row.
            values = [None] * len(rows) if index is None else list(map(itemgetter(index), rows))
            mask = condition.column_matches(values)
            if every:
                rows = list(compress(rows, mask))
            else:
                matched += compress(numbers, mask)
                undecided = list(map(operator.not_, mask))
                rows, numbers = list(compress(rows, undecided)), list(compress(numbers, undecided))
            if not rows:
                break
        if every:
            return rows
        return list(map(batch.rows.__getitem__, sorted(matched)))


def matcher(config: FilterConfig) -> Callable[[Record], bool]:
    """One test of a record against every condition of ``config`` (all or any of them,
    short-circuiting, no generators): what ``filter`` keeps and a ``branch`` route takes."""
    tests = [condition.predicate() for condition in config.conditions]
    if len(tests) == 1:
        return tests[0]

    # Plain loops rather than all()/any() over a generator: no generator per record.
    def every(record: Record) -> bool:
        for test in tests:  # noqa: SIM110
            if not test(record):
                return False
        return True

    def some(record: Record) -> bool:
        for test in tests:  # noqa: SIM110
            if test(record):
                return True
        return False

    return every if config.match == "all" else some


def condition_problems(prefix: str, config: FilterConfig, schema: RecordSchema) -> list[Problem]:
    """The conditions of ``config`` naming a field the (known) upstream ``schema`` lacks, located
    under ``prefix`` (``config``, ``config.routes[1]``)."""
    found = (
        upstream_problem(f"{prefix}.conditions[{i}].field", condition.field, schema)
        for i, condition in enumerate(config.conditions)
    )
    return [problem for problem in found if problem]
