"""Row batches: nodes that take them column by column give exactly what they give record by
record, and every other node still receives lists of dicts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.builtin.casts import keeps_column
from nodes.builtin.filter import FilterNode
from nodes.builtin.map_fields import MapFieldsNode
from nodes.builtin.operators import OPERATORS, column_operator
from nodes.jsonbody import dumps_batch, dumps_bytes
from nodes.sdk import ExecutionContext, Node, NodeError
from nodes.sdk.node import AnyBatch, RowBatch, rebatch

NAMES = ["id", "status", "amount", "at", "note"]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["paid", "pending", "", "3", "2.5", "abc", "2026-01-01"]),
    st.decimals(allow_nan=True, allow_infinity=True, places=2),
    st.sampled_from([Decimal("0"), Decimal("-1.5"), Decimal("NaN"), Decimal("Infinity")]),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC, ZoneInfo("Europe/Paris")])),
    st.dates(),
)
# Columns of one type (what a table gives), with or without nulls, and mixed ones.
one_type = st.sampled_from(
    [
        st.integers(-5, 5),
        st.sampled_from(["paid", "pending", "refunded"]),
        st.decimals(min_value=-10, max_value=10, places=2),
        st.floats(allow_nan=True, allow_infinity=True),
        st.datetimes(timezones=st.just(dt.UTC)),
    ]
)


@st.composite
def row_batches(draw: st.DrawFn) -> RowBatch:
    size = draw(st.integers(0, 12))
    columns = []
    for _name in NAMES:
        kind = draw(st.one_of(one_type, st.just(values)))
        nulls = draw(st.booleans())
        column = [draw(st.one_of(st.none(), kind) if nulls else kind) for _ in range(size)]
        columns.append(column)
    return RowBatch(NAMES, list(zip(*columns, strict=True)) if size else [])


operands = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["paid", "3", "2026-01-01"]),
    st.floats(-3, 3),
    st.booleans(),
)
conditions = st.one_of(
    st.builds(
        lambda field, op, value: {"field": field, "op": op, "value": value},
        st.sampled_from([*NAMES, "missing"]),
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
        operands,
    ),
    st.builds(
        lambda field, value: {"field": field, "op": "in", "value": value},
        st.sampled_from(NAMES),
        st.lists(operands, max_size=3),
    ),
    st.builds(
        lambda field, op: {"field": field, "op": op},
        st.sampled_from(NAMES),
        st.sampled_from(["is_null", "not_null"]),
    ),
    st.just({"field": "status", "op": "regex", "value": "^p"}),
)


def outputs(node: Node, batch: AnyBatch, **context: Any) -> list[AnyBatch]:
    return list(node.run(ExecutionContext(**context), {"in": iter([batch])}))


def records(batches: list[AnyBatch]) -> list[dict[str, Any]]:
    return [record for batch in batches for record in batch]


@settings(max_examples=300, deadline=None)
@given(row_batches(), st.lists(conditions, min_size=1, max_size=3), st.sampled_from(["all", "any"]))
def test_filter_keeps_the_same_rows_from_a_row_batch_as_from_records(
    batch: RowBatch, tests: list[dict[str, Any]], match: str
) -> None:
    node = FilterNode({"conditions": tests, "match": match})
    by_column = outputs(node, batch)
    assert all(type(out) is RowBatch for out in by_column)
    assert records(by_column) == records(outputs(node, batch.records()))


def test_the_filter_of_the_demo_keeps_row_batches_as_rows() -> None:
    batch = RowBatch(
        ["id", "status", "amount"],
        [(1, "paid", Decimal("5")), (2, "pending", Decimal("3")), (3, "paid", Decimal("0"))],
    )
    node = FilterNode(
        {
            "conditions": [
                {"field": "status", "op": "eq", "value": "paid"},
                {"field": "amount", "op": "gt", "value": 0},
            ]
        }
    )
    (out,) = outputs(node, batch)
    assert type(out) is RowBatch
    assert out.rows == [(1, "paid", Decimal("5"))]


MAPPINGS = [
    {
        "order_id": "id",
        "customer.name": "status",
        "customer.info.note": "note",
        "total": {"source": "amount", "cast": "decimal"},
        "paid_at": {"source": "at", "cast": "datetime"},
        "source": {"value": "flowplatform"},
    },
    {
        "n": {"source": "id", "cast": "int", "default": 0},
        "s": {"source": "amount", "cast": "str"},
        "f": {"source": "amount", "cast": "float"},
        "missing": {"source": "nope", "default": "x"},
        "k": {"value": "2.5", "cast": "decimal"},
    },
    {"a.b.c": "id", "a.d": "note", "e": {"source": "status", "cast": "bool"}},
    {"day": {"source": "at", "cast": "date"}, "flag": {"source": "note", "cast": "bool"}},
]


def _mapped(node: Node, batch: AnyBatch) -> list[dict[str, Any]] | str:
    try:
        return records(outputs(node, batch, partition=3))
    except NodeError as exc:
        return f"NodeError: {exc}"


@settings(max_examples=300, deadline=None)
@given(row_batches(), st.sampled_from(MAPPINGS))
def test_map_fields_builds_the_same_records_from_a_row_batch_as_from_records(
    batch: RowBatch, mapping: dict[str, Any]
) -> None:
    node = MapFieldsNode({"mapping": mapping})
    by_column, by_record = _mapped(node, batch), _mapped(node, batch.records())
    assert by_column == by_record
    if isinstance(by_column, list):  # the same keys in the same order, nested ones too
        assert json.dumps(by_column, default=str) == json.dumps(by_record, default=str)


def test_map_fields_reports_the_first_record_that_fails_its_cast_as_records_would() -> None:
    node = MapFieldsNode({"mapping": {"a": {"source": "x", "cast": "int"}, "b": "y"}})
    batch = RowBatch(["x", "y"], [(1, 1), (2, 2), ("two", 3)])
    with pytest.raises(NodeError, match=r"field 'a' of record 2 of partition 3"):
        outputs(node, batch, partition=3)


def test_map_fields_keeps_row_batches_as_rows_with_nested_objects_as_dicts() -> None:
    node = MapFieldsNode({"mapping": MAPPINGS[0]})
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    batch = RowBatch(NAMES, [(7, "paid", Decimal("1.50"), at, None)])
    (out,) = outputs(node, batch)
    assert type(out) is RowBatch
    assert out.names == ["order_id", "customer", "total", "paid_at", "source"]
    assert list(out) == [
        {
            "order_id": 7,
            "customer": {"name": "paid", "info": {"note": None}},
            "total": Decimal("1.50"),
            "paid_at": at,
            "source": "flowplatform",
        }
    ]


class _Plain(Node):
    type = "plain_test"

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Any]
    ) -> Iterator[list[dict[str, Any]]]:
        for batch in inputs["in"]:
            assert type(batch) is list
            assert all(type(record) is dict for record in batch)
            yield batch


def test_a_node_that_does_not_accept_rows_receives_lists_of_dicts() -> None:
    batch = RowBatch(["id"], [(1,), (2,)])
    assert outputs(_Plain({}), batch) == [[{"id": 1}, {"id": 2}]]


@given(st.lists(st.integers(0, 7), max_size=8), st.integers(1, 5), st.booleans())
def test_rebatch_cuts_any_stream_into_full_batches_of_the_size(
    sizes: list[int], size: int, mixed: bool
) -> None:
    counter = iter(range(1000))
    stream: list[AnyBatch] = []
    for index, length in enumerate(sizes):
        rows = [(next(counter),) for _ in range(length)]
        batch = RowBatch(["n"], rows)
        stream.append(batch.records() if mixed and index % 2 else batch)
    cut = list(rebatch(stream, size))
    assert records(cut) == records(stream)
    assert all(len(batch) == size for batch in cut[:-1])
    assert not cut or 0 < len(cut[-1]) <= size
    if not mixed:
        assert all(type(batch) is RowBatch for batch in cut)


ODD = dt.timezone(dt.timedelta(hours=5, minutes=30, seconds=15))


@pytest.mark.parametrize(
    "column",
    [
        [Decimal("12.50"), Decimal("1E+2"), Decimal("-0.001")],
        [Decimal("1.5"), Decimal("NaN"), Decimal("Infinity")],
        [Decimal("1.5"), None],
        [dt.datetime(1, 1, 1, tzinfo=ODD), dt.datetime(2026, 3, 29, 2, 30, 0, 5)],
        [dt.datetime(1, 1, 1), dt.datetime.max.replace(tzinfo=dt.UTC), dt.datetime(999, 1, 2, 3)],
        [dt.datetime(2026, 1, 1, 0, 0, 0, 7, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, fold=1)],
        [dt.datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Kolkata")), None],
        [dt.date(999, 1, 1), dt.date(2026, 2, 28)],
        [dt.time(1, 2, 3, 4), dt.time(23, 59, tzinfo=ODD)],
        [2**70, 1],  # beyond 64 bits: the walk writes it
        [{"nested": Decimal("1.0")}, [1, "x"]],
        ["Zoë 東京", None],
    ],
)
def test_a_row_batch_is_written_as_json_exactly_as_its_records_are(column: list[Any]) -> None:
    batch = RowBatch(["v", "n"], [(value, index) for index, value in enumerate(column)])
    assert dumps_batch(batch) == dumps_bytes(batch.records())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.datetimes(timezones=st.sampled_from([None, dt.UTC])), min_size=1, max_size=20))
def test_utc_and_naive_datetime_columns_are_written_as_isoformat_writes_them(
    column: list[dt.datetime],
) -> None:
    batch = RowBatch(["at"], [(value,) for value in column])
    assert json.loads(dumps_batch(batch)) == [{"at": value.isoformat()} for value in column]


def test_whole_columns_skip_comparisons_and_casts_only_when_nothing_would_change() -> None:
    test, operand = column_operator("gt", [Decimal("1"), Decimal("2")], 0)
    assert test is not OPERATORS["gt"] and type(operand) is Decimal and operand == 0
    assert column_operator("gt", [Decimal("1"), Decimal("NaN")], 0) == (OPERATORS["gt"], 0)
    assert column_operator("eq", ["a", None], "a") == (OPERATORS["eq"], "a")
    assert column_operator("eq", [True, False], True) == (OPERATORS["eq"], True)  # bools coerce
    assert keeps_column("decimal", [Decimal("1.5")])
    assert not keeps_column("decimal", [Decimal("Infinity")])
    assert not keeps_column("int", [True])  # a bool is not an int here
    assert not keeps_column("datetime", [dt.date(2026, 1, 1)])


def test_any_tests_a_condition_only_on_rows_the_earlier_ones_did_not_match() -> None:
    # nan > "3" compares a float NaN with Decimal("3"): never a match, and never an error.
    batch = RowBatch(["id", "score"], [(1, 5.0), (2, float("nan")), (0, float("nan"))])
    node = FilterNode(
        {
            "conditions": [
                {"field": "id", "op": "gte", "value": 1},
                {"field": "score", "op": "gt", "value": "3"},
            ],
            "match": "any",
        }
    )
    assert [record["id"] for record in records(outputs(node, batch))] == [1, 2]
    assert records(outputs(node, batch.records())) == records(outputs(node, batch))


def test_records_without_fields_are_written_as_json_objects() -> None:
    assert dumps_batch(RowBatch([], [(), ()])) == b"[{},{}]"
