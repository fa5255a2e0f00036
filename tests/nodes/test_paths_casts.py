"""Dotted paths, casts and the JSON body writer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from nodes.builtin.casts import cast, field_type_of, to_bool, to_date, to_datetime, to_int
from nodes.builtin.paths import MISSING, get_path, set_path
from nodes.jsonbody import dumps
from nodes.sdk.schema import FieldType

ORDER = {
    "id": 7,
    "note": None,
    "customer": {"name": "Zoë", "tags": ["vip", {"since": 2019}]},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("id", 7),
        ("note", None),
        ("customer.name", "Zoë"),
        ("customer.tags.0", "vip"),
        ("customer.tags.1.since", 2019),
        ("customer.tags.2", MISSING),
        ("customer.tags.x", MISSING),
        ("customer.name.first", MISSING),
        ("nope", MISSING),
        ("note.inner", MISSING),
    ],
)
def test_get_path_reads_keys_and_indices(path: str, expected: object) -> None:
    assert get_path(ORDER, path) == expected


def test_missing_is_falsy_and_not_none() -> None:
    assert not MISSING
    assert MISSING is not None


def test_set_path_builds_nested_objects_without_touching_shared_ones() -> None:
    shared = {"name": "Zoë"}
    record = {"customer": shared, "id": 1}
    set_path(record, "customer.city", "Madrid")
    set_path(record, "id.value", 2)
    set_path(record, "top", 3)
    assert record == {"customer": {"name": "Zoë", "city": "Madrid"}, "id": {"value": 2}, "top": 3}
    assert shared == {"name": "Zoë"}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("int", "42", 42),
        ("int", 3.0, 3),
        ("int", Decimal("10.00"), 10),
        ("int", True, 1),
        ("float", "2.5", 2.5),
        ("float", Decimal("0.1"), 0.1),
        ("decimal", 0.1, Decimal("0.1")),
        ("decimal", " 12.50 ", Decimal("12.50")),
        ("str", 12, "12"),
        ("str", True, "true"),
        ("str", date(2024, 2, 29), "2024-02-29"),
        ("str", {"a": [1, "é"]}, '{"a":[1,"é"]}'),
        ("bool", "YES", True),
        ("bool", "no", False),
        ("bool", "1", True),
        ("bool", 0, False),
        ("date", "2024-02-29", date(2024, 2, 29)),
        ("date", "2024-02-29T23:00:00+00:00", date(2024, 2, 29)),
        ("date", datetime(2024, 1, 2, 3, 4), date(2024, 1, 2)),
        ("datetime", "2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("datetime", date(2024, 1, 2), datetime(2024, 1, 2)),
    ],
)
def test_casts_convert(name: str, value: object, expected: object) -> None:
    result = cast(name, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("int", "12.5", "cannot cast '12.5' to int: not a whole number"),
        ("int", "abc", "cannot cast 'abc' to int: not a number"),
        ("float", [1], "cannot cast [1] to float: list is not a number"),
        ("decimal", "NaN", "cannot cast 'NaN' to decimal: not a finite number"),
        ("bool", "maybe", "cannot cast 'maybe' to bool: expected true/false, yes/no or 1/0"),
        ("bool", 2, "cannot cast 2 to bool"),
        ("date", "31/12/2024", "cannot cast '31/12/2024' to date: not an ISO 8601"),
        ("datetime", 5, "cannot cast 5 to datetime: int is not a datetime"),
    ],
)
def test_casts_refuse_with_clear_messages(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        cast(name, value)


def test_cast_messages_truncate_long_values() -> None:
    with pytest.raises(ValueError) as caught:
        to_int("x" * 500)
    assert len(str(caught.value)) < 120


def test_helpers_are_consistent() -> None:
    assert to_bool(" True ") is True
    assert to_date("2024-01-02") == date(2024, 1, 2)
    assert to_datetime("2024-01-02").tzinfo is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, FieldType.BOOLEAN),
        (1, FieldType.INTEGER),
        (1.5, FieldType.FLOAT),
        (Decimal("1"), FieldType.DECIMAL),
        ("x", FieldType.STRING),
        (datetime(2024, 1, 1), FieldType.DATETIME),
        (date(2024, 1, 1), FieldType.DATE),
        ({"a": 1}, FieldType.JSON),
        (None, FieldType.ANY),
    ],
)
def test_field_type_of_constants(value: object, expected: FieldType) -> None:
    assert field_type_of(value) == expected


def test_json_body_keeps_decimal_digits_and_writes_dates_as_iso() -> None:
    record = {
        "amount": Decimal("12.50"),
        "huge": Decimal("12345678901234567890.123456789"),
        "tiny": Decimal("1E-7"),
        "day": date(2024, 2, 29),
        "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "id": uuid.UUID(int=1),
        "blob": b"\x00\xff",
        "name": 'Zoë "☕"\n',
        "nested": {"list": [1, 2.5, None, True, ()]},
        "nan": float("nan"),
    }
    text = dumps(record)
    assert '"amount":12.50' in text
    assert '"huge":12345678901234567890.123456789' in text
    assert json.loads(text, parse_float=Decimal) == {
        "amount": Decimal("12.50"),
        "huge": Decimal("12345678901234567890.123456789"),
        "tiny": Decimal("1E-7"),
        "day": "2024-02-29",
        "at": "2024-01-02T03:04:05+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "blob": "AP8=",
        "name": 'Zoë "☕"\n',
        "nested": {"list": [1, Decimal("2.5"), None, True, []]},
        "nan": None,
    }


def test_json_body_refuses_unknown_types() -> None:
    with pytest.raises(TypeError, match="type object cannot be written as JSON"):
        dumps({"x": object()})


def test_a_signalling_nan_is_not_a_bool_and_compares_with_nothing() -> None:
    from nodes.builtin.operators import OPERATORS

    with pytest.raises(ValueError, match="cannot cast Decimal\\('sNaN'\\) to bool"):
        to_bool(Decimal("sNaN"))
    assert not OPERATORS["eq"](Decimal("sNaN"), True)
    assert OPERATORS["ne"](Decimal("sNaN"), True)
