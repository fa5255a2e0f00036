"""Records to JSON text, for request bodies.

The standard encoder cannot write a ``Decimal`` as a number without going through ``float``
(which rounds), so this module walks the value itself. Conversions:

- ``Decimal`` -> a JSON number with exactly its digits (``Decimal("12.50")`` -> ``12.50``);
- ``datetime``/``date``/``time`` -> ISO 8601 strings; ``UUID`` -> its string;
- ``bytes`` -> a base64 string; tuples -> arrays;
- NaN and infinities (float or Decimal) -> ``null``, as JavaScript's ``JSON.stringify`` does,
  since JSON has no way to write them.

Anything else raises ``TypeError`` naming the type.

orjson writes the common case (about 20 times faster than the walk below); whatever it cannot
write exactly as described (non-string keys, integers beyond 64 bits...) goes through the walk.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from itertools import repeat
from operator import attrgetter
from typing import Any
from uuid import UUID

import orjson

from nodes.sdk.batches import RowBatch

_encode_str = json.JSONEncoder(ensure_ascii=False).encode
_NULL = orjson.Fragment(b"null")
# Dates and dataclasses go through _orjson_default, so they come out exactly as the walk writes them.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (non-ASCII characters kept as is)."""
    return dumps_bytes(value).decode()


def dumps_bytes(value: Any) -> bytes:
    """``value`` as compact JSON, UTF-8 encoded."""
    try:
        return orjson.dumps(value, default=_orjson_default, option=_ORJSON_OPTIONS)
    except TypeError:
        parts: list[str] = []
        _write(value, parts.append)
        return "".join(parts).encode()


def dumps_batch(batch: list[dict[str, Any]] | RowBatch) -> bytes:
    """A batch of records as a compact JSON array, exactly as :func:`dumps_bytes` writes it.

    A row batch's columns of finite decimals, dates, datetimes or times are converted first,
    a whole column at a time in C, to what :func:`_orjson_default` would make of each value:
    one Python call per value saved."""
    if type(batch) is not RowBatch:
        return dumps_bytes(batch)
    if not batch.names:
        return dumps_bytes(batch.records())  # records without fields: only their count
    columns = [_json_column(column) for column in zip(*batch.rows, strict=True)]
    records = list(map(dict, map(zip, repeat(batch.names), zip(*columns, strict=True))))
    try:
        return orjson.dumps(records, default=_orjson_default, option=_ORJSON_OPTIONS)
    except TypeError:
        return dumps_bytes(batch.records())  # the walk, from the values as they were


_ISOFORMAT: dict[type, Callable[[Any], str]] = {
    datetime: datetime.isoformat,
    date: date.isoformat,
    time: time.isoformat,
}


_tzinfo = attrgetter("tzinfo")
_UTC_OR_NAIVE = frozenset({None, UTC})


def _json_column(values: tuple[Any, ...]) -> Sequence[Any]:
    kinds = set(map(type, values))
    if len(kinds) != 1:
        return values  # nulls or mixed types: value by value, through _orjson_default
    kind = kinds.pop()
    if kind is Decimal and all(map(Decimal.is_finite, values)):
        return list(map(orjson.Fragment, map(str, values)))
    if kind is datetime and set(map(_tzinfo, values)) <= _UTC_OR_NAIVE:
        # orjson writes these exactly as isoformat() does (tested), several times faster;
        # it would not for other zones (it rounds offsets such as +05:30:15 to minutes).
        return orjson.loads(orjson.dumps(values))  # type: ignore[no-any-return]
    isoformat = _ISOFORMAT.get(kind)
    return values if isoformat is None else list(map(isoformat, values))


def _orjson_default(value: Any) -> Any:
    if type(value) is Decimal:  # the common case first, without the ABC machinery
        return orjson.Fragment(str(value)) if value.is_finite() else _NULL
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value)) if value.is_finite() else _NULL
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(type(value).__name__)


def _write(value: Any, emit: Callable[[str], object]) -> None:
    if isinstance(value, dict):
        emit("{")
        for index, (key, item) in enumerate(value.items()):
            emit(',"' if index else '"')
            emit(_encode_str(str(key))[1:])
            emit(":")
            _write(item, emit)
        emit("}")
    elif isinstance(value, list | tuple):
        emit("[")
        for index, item in enumerate(value):
            if index:
                emit(",")
            _write(item, emit)
        emit("]")
    else:
        emit(_scalar(value))


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, bool | int | str):
        return _encode_str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, Decimal):
        # str() of a finite Decimal is always a valid JSON number (e.g. 12.50, 1E+2, -0.001).
        return str(value) if value.is_finite() else "null"
    if isinstance(value, date | time):
        return f'"{value.isoformat()}"'
    if isinstance(value, UUID):
        return f'"{value}"'
    if isinstance(value, bytes | bytearray | memoryview):
        return f'"{base64.b64encode(value).decode("ascii")}"'
    raise TypeError(f"a value of type {type(value).__name__} cannot be written as JSON")
