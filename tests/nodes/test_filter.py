"""The ``filter`` node: every operator, match all/any, validation, check and schema."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from nodes.builtin.filter import FilterNode
from nodes.sdk import ExecutionContext, FieldType, RecordSchema

ORDERS: list[dict[str, Any]] = [
    {"id": 1, "status": "paid", "amount": Decimal("10.50"), "day": date(2024, 1, 1),
     "at": datetime(2024, 1, 1, 9, tzinfo=UTC), "customer": {"name": "Zoë", "tier": "gold"},
     "tags": ["vip", "eu"], "note": "Café ☕ order"},
    {"id": 2, "status": "refunded", "amount": Decimal("99.99"), "day": date(2024, 2, 1),
     "at": datetime(2024, 2, 1, 9, tzinfo=UTC), "customer": {"name": "東京", "tier": None},
     "tags": [], "note": None},
    {"id": 3, "status": None, "amount": None, "day": None, "at": None, "customer": None,
     "tags": None},
]  # fmt: skip


def run(config: dict[str, Any], batches: list[list[dict[str, Any]]] | None = None) -> list[Any]:
    node = FilterNode(config)
    out = list(node.execute(ExecutionContext(), {"in": iter(batches or [ORDERS])}))
    return [record["id"] for batch in out for record in batch]


def ids(field: str, op: str, value: Any = None) -> list[Any]:
    condition = {"field": field, "op": op}
    if op not in ("is_null", "not_null"):
        condition["value"] = value
    return run({"conditions": [condition]})


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("status", "eq", "paid", [1]),
        ("status", "ne", "paid", [2, 3]),  # null is "not paid", as in pandas
        ("amount", "gt", 10.5, [2]),
        ("amount", "gte", 10.5, [1, 2]),
        ("amount", "lt", "99.99", [1]),
        ("amount", "lte", 99.99, [1, 2]),
        ("status", "in", ["paid", "refunded"], [1, 2]),
        ("status", "not_in", ["paid"], [2, 3]),
        ("note", "contains", "☕", [1]),
        ("tags", "contains", "vip", [1]),
        ("customer", "contains", "tier", [1, 2]),
        ("customer.name", "startswith", "東", [2]),
        ("note", "endswith", "order", [1]),
        ("customer.tier", "is_null", None, [2, 3]),
        ("customer.tier", "not_null", None, [1]),
        ("customer.name", "regex", r"^Z.ë$", [1]),
    ],
)
def test_every_operator(field: str, op: str, value: Any, expected: list[int]) -> None:
    assert ids(field, op, value) == expected


def test_decimal_compares_exactly_with_floats() -> None:
    # 0.1 + 0.2 as a float is 0.30000000000000004; the Decimal 0.3 must not equal it.
    batch = [{"id": 1, "x": Decimal("0.3")}, {"id": 2, "x": Decimal("0.30000000000000004")}]
    condition = {"field": "x", "op": "eq", "value": 0.1 + 0.2}
    assert run({"conditions": [condition]}, [batch]) == [2]
    assert run({"conditions": [{"field": "x", "op": "eq", "value": 0.3}]}, [batch]) == [1]


def test_dates_and_datetimes_compare_with_iso_strings() -> None:
    assert ids("day", "gte", "2024-01-15") == [2]
    assert ids("at", "lt", "2024-01-15T00:00:00Z") == [1]
    assert ids("at", "gt", "2024-01-15") == [2]  # a naive string is read as UTC
    assert ids("day", "eq", "not a date") == []


def test_numbers_and_numeric_strings_compare_as_numbers() -> None:
    batch = [{"id": 1, "n": 9}, {"id": 2, "n": "10"}, {"id": 3, "n": "ten"}]
    assert run({"conditions": [{"field": "n", "op": "lt", "value": "10"}]}, [batch]) == [1]
    assert run({"conditions": [{"field": "n", "op": "gte", "value": 10}]}, [batch]) == [2]


def test_incomparable_values_never_match_and_never_raise() -> None:
    assert ids("customer", "gt", 5) == []
    assert ids("tags", "lt", "a") == []
    assert ids("status", "gt", True) == []


def test_missing_field_behaves_as_null() -> None:
    assert ids("nope", "is_null") == [1, 2, 3]
    assert ids("customer.zip", "eq", "x") == []
    assert ids("customer.zip", "ne", "x") == [1, 2, 3]


def test_booleans_compare_with_boolean_strings() -> None:
    batch = [{"id": 1, "ok": True}, {"id": 2, "ok": False}, {"id": 3, "ok": None}]
    assert run({"conditions": [{"field": "ok", "op": "eq", "value": "true"}]}, [batch]) == [1]
    assert run({"conditions": [{"field": "ok", "op": "eq", "value": False}]}, [batch]) == [2]


def test_nested_json_equality_and_list_index_paths() -> None:
    assert ids("customer", "eq", {"name": "Zoë", "tier": "gold"}) == [1]
    assert ids("tags.1", "eq", "eu") == [1]


def test_match_all_needs_every_condition() -> None:
    conditions = [
        {"field": "status", "op": "eq", "value": "paid"},
        {"field": "amount", "op": "gt", "value": 50},
    ]
    assert run({"conditions": conditions}) == []
    assert run({"conditions": conditions, "match": "any"}) == [1, 2]


def test_streams_batch_by_batch_and_skips_empty_batches() -> None:
    node = FilterNode({"conditions": [{"field": "id", "op": "gt", "value": 1}]})
    consumed: list[int] = []

    def source() -> Any:
        for number in range(4):
            consumed.append(number)
            yield [{"id": number}]

    out = node.execute(ExecutionContext(), {"in": source()})
    assert next(out) == [{"id": 2}]
    assert consumed == [0, 1, 2]  # lazily: nothing read beyond what was needed
    assert list(out) == [[{"id": 3}]]


def test_empty_input_yields_nothing() -> None:
    assert run({"conditions": [{"field": "id", "op": "eq", "value": 1}]}, [[], []]) == []
    node = FilterNode({"conditions": [{"field": "id", "op": "eq", "value": 1}]})
    assert list(node.execute(ExecutionContext(), {})) == []


@pytest.mark.parametrize(
    ("config", "loc", "message"),
    [
        ({"conditions": []}, ("conditions",), "at least 1 item"),
        ({"conditions": [{"field": "a", "op": "eqq", "value": 1}]}, ("conditions", 0, "op"), "'eq'"),
        ({"conditions": [{"field": "a", "op": "eq"}]}, ("conditions", 0, "value"), "required"),
        ({"conditions": [{"field": "a", "op": "gt", "value": None}]}, ("conditions", 0, "value"),
         "use is_null"),
        ({"conditions": [{"field": "a", "op": "in", "value": "x"}]}, ("conditions", 0, "value"),
         "needs a list"),
        ({"conditions": [{"field": "a", "op": "eq", "value": 1},
                         {"field": "b", "op": "regex", "value": "(unclosed"}]},
         ("conditions", 1, "value"), "invalid regular expression"),
        ({"conditions": [{"field": "", "op": "is_null"}]}, ("conditions", 0, "field"), "at least 1"),
        ({"conditions": [{"field": "a", "op": "is_null", "extra": 1}]}, ("conditions", 0, "extra"),
         "Extra inputs"),
        ({"conditions": [{"field": "a", "op": "is_null"}], "match": "some"}, ("match",), "'all'"),
    ],
)  # fmt: skip
def test_config_validation_errors(
    config: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        FilterNode(config)
    error = caught.value.errors()[0]
    assert error["loc"] == loc
    assert message in error["msg"]


def test_check_names_conditions_on_missing_upstream_fields() -> None:
    node = FilterNode(
        {
            "conditions": [
                {"field": "status", "op": "eq", "value": "paid"},
                {"field": "amount", "op": "gt", "value": 1},
                {"field": "meta.source", "op": "eq", "value": "web"},
            ]
        }
    )
    upstream = RecordSchema({"id": FieldType.INTEGER, "status": FieldType.STRING})
    problems = node.check({"in": upstream})
    assert [(p.path, p.message) for p in problems] == [
        (
            "config.conditions[1].field",
            "field 'amount' does not exist upstream (known fields: id, status)",
        ),
        (
            "config.conditions[2].field",
            "field 'meta.source' does not exist upstream (known fields: id, status)",
        ),
    ]


def test_check_accepts_unknown_schemas_and_paths_below_json() -> None:
    node = FilterNode({"conditions": [{"field": "meta.source", "op": "eq", "value": "web"}]})
    assert node.check({"in": RecordSchema.unknown()}) == []
    assert node.check({}) == []
    assert node.check({"in": RecordSchema({"meta": FieldType.JSON})}) == []


def test_output_schema_is_the_input_schema() -> None:
    node = FilterNode({"conditions": [{"field": "id", "op": "not_null"}]})
    upstream = RecordSchema({"id": FieldType.INTEGER})
    assert node.output_schema({"in": upstream}) == upstream
    assert not node.output_schema({}).known


def test_catalog_entry_describes_every_config_field() -> None:
    entry = FilterNode.describe()
    assert entry["type"] == "filter"
    assert entry["partitionable"] is True
    condition = entry["config_schema"]["$defs"]["Condition"]["properties"]
    assert all(prop.get("description") for prop in condition.values())
    assert "regex" in condition["op"]["enum"]
