"""Value casts for ``map_fields``: each turns a value into one type or raises ``ValueError``.

``None`` is never passed to a cast: a null stays null (or takes the mapping's default).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from nodes.jsonbody import dumps
from nodes.sdk.schema import FieldType

CastName = Literal["int", "float", "str", "bool", "date", "datetime", "decimal"]

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _show(value: Any) -> str:
    """A short, safe rendering of a value for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(value: Any, name: str, reason: str) -> ValueError:
    return ValueError(f"cannot cast {_show(value)} to {name}: {reason}")


def _number(value: Any, name: str) -> Decimal:
    """An exact decimal; floats go through their shortest repr (``0.1`` -> ``Decimal('0.1')``)."""
    if isinstance(value, Decimal | int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise _fail(value, name, "not a number") from None
    else:
        raise _fail(value, name, f"{type(value).__name__} is not a number")
    if not result.is_finite():
        raise _fail(value, name, "not a finite number")
    return result


def to_decimal(value: Any) -> Decimal:
    """An exact decimal from a number or a numeric string."""
    if type(value) is Decimal and value.is_finite():
        return value  # immutable: already what we would build
    return _number(value, "decimal")


def to_int(value: Any) -> int:
    """A whole number; fractional values are refused rather than silently truncated."""
    number = _number(value, "int")
    if number != number.to_integral_value():
        raise _fail(value, "int", "not a whole number")
    return int(number)


def to_float(value: Any) -> float:
    """A float from a number or a numeric string."""
    return float(_number(value, "float"))


def to_str(value: Any) -> str:
    """Text; dates become ISO 8601, booleans ``true``/``false``, objects and arrays JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return dumps(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def to_bool(value: Any) -> bool:
    """A boolean from a bool, 0/1, or the strings true/false/1/0/yes/no (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal) and value.is_snan():
        raise _fail(value, "bool", "not a number")  # comparing it would raise, not answer
    if isinstance(value, int | float | Decimal) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(value, "bool", "expected true/false, yes/no or 1/0")


def to_date(value: Any) -> date:
    """A date from a date, a datetime (its date part) or an ISO 8601 string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return _parse_datetime(value, "date").date()


def to_datetime(value: Any) -> datetime:
    """A datetime from a datetime, a date (midnight) or an ISO 8601 string."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    return _parse_datetime(value, "datetime")


def _parse_datetime(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise _fail(value, name, f"{type(value).__name__} is not a {name}")
    try:
        # Python 3.11 reads full ISO 8601, date-only strings included (as midnight).
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise _fail(value, name, "not an ISO 8601 date or datetime") from None


CASTS: dict[str, Callable[[Any], Any]] = {
    "int": to_int,
    "float": to_float,
    "str": to_str,
    "bool": to_bool,
    "date": to_date,
    "datetime": to_datetime,
    "decimal": to_decimal,
}

CAST_TYPES: dict[str, FieldType] = {
    "int": FieldType.INTEGER,
    "float": FieldType.FLOAT,
    "str": FieldType.STRING,
    "bool": FieldType.BOOLEAN,
    "date": FieldType.DATE,
    "datetime": FieldType.DATETIME,
    "decimal": FieldType.DECIMAL,
}


#: Per cast, the one type whose values it returns as they are (an equal value).
_KEPT_AS_IS: dict[str, type] = {
    "int": int,
    "str": str,
    "bool": bool,
    "date": date,
    "datetime": datetime,
    "decimal": Decimal,
}


def keeps_column(name: str, values: list[Any]) -> bool:
    """Whether the cast ``name`` would leave every value of a column as it is (so a whole
    column can skip it): all of the one type it returns unchanged, finite for decimals."""
    kind = _KEPT_AS_IS.get(name)
    if kind is None or set(map(type, values)) != {kind}:
        return False
    return kind is not Decimal or all(map(Decimal.is_finite, values))


def cast(name: str, value: Any) -> Any:
    """Cast ``value`` with the cast called ``name``; raises ``ValueError`` when it cannot."""
    return CASTS[name](value)


def field_type_of(value: Any) -> FieldType:
    """The schema type of a constant value."""
    for kind, field_type in _VALUE_TYPES:
        if isinstance(value, kind):
            return field_type
    return FieldType.ANY


# Order matters: bool before int (a subclass), datetime before date.
_VALUE_TYPES: tuple[tuple[type | tuple[type, ...], FieldType], ...] = (
    (bool, FieldType.BOOLEAN),
    (int, FieldType.INTEGER),
    (float, FieldType.FLOAT),
    (Decimal, FieldType.DECIMAL),
    (str, FieldType.STRING),
    (datetime, FieldType.DATETIME),
    (date, FieldType.DATE),
    ((dict, list), FieldType.JSON),
)
