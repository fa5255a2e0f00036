"""Record encoding for the hand-off between nodes: msgpack, column by column, types kept.

One msgpack object is one batch, so a reader streams batch by batch. A batch whose records all
have the same keys in the same order (what a SQL source, a filter or a mapping produces) is
written by column: ``{"k": keys, "t": kinds, "c": columns}``. A column whose values are all of
one type (or null) is converted in one pass, in C where possible (``map(str, ...)``,
``map(Decimal, ...)``), instead of one Python callback per value; that is what makes this codec
several times faster than a record-by-record one (figures in ``docs/benchmarks.md``).

Other batches are written as a list of records with msgpack extension types. Either way
``Decimal``, ``date``, ``datetime``, ``time`` and ``UUID`` come back as themselves, so a filter
downstream compares numbers as numbers and dates as dates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from operator import attrgetter, itemgetter
from typing import IO, Any
from zoneinfo import ZoneInfo

import msgpack

from nodes.packing import ext_hook as _ext_hook
from nodes.packing import packer
from nodes.sdk.node import AnyBatch, RowBatch, has_null
from nodes.timezones import UTC_NAMES

#: Types msgpack writes natively and reads back as themselves.
_NATIVE = frozenset({type(None), bool, int, float, str, bytes})

# Column kinds: how a column of one Python type travels, and how it comes back.
_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    Decimal: ("decimal", str),
    dt.datetime: ("datetime", dt.datetime.isoformat),
    dt.date: ("date", dt.date.isoformat),
    dt.time: ("time", dt.time.isoformat),
    uuid.UUID: ("uuid", lambda value: value.bytes),
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "decimal": Decimal,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": lambda data: uuid.UUID(bytes=data),
}


def _column_kind(values: Sequence[Any]) -> str:
    """How a column travels: as is, converted as one type, or value by value ("any")."""
    types = set(map(type, values))
    if types <= _NATIVE:
        return "native"
    types.discard(type(None))
    if types == {dt.datetime} and (zone := _one_zone(values)) is not None:
        return f"{_TIMESTAMP}{zone}"
    if len(types) == 1 and (found := _ENCODERS.get(types.pop())) is not None:
        return found[0]
    return "any"  # nested or mixed values: msgpack extension types, value by value


# Aware datetimes in UTC (what PostgreSQL gives for timestamptz on a UTC server) travel as
# msgpack timestamps, converted in C (a few times cheaper than ``isoformat``); the zone's name
# is kept in the kind: "timestamp:<zone>". Workers older than this format cannot read it.
_TIMESTAMP = "timestamp:"
_timestamps = msgpack.Packer(datetime=True)


def _one_zone(values: Sequence[Any]) -> str | None:
    """The name of the one UTC zone of a column of aware datetimes (``None``: naive, mixed,
    or another zone, which travel as text)."""
    if has_null(values):
        zones = set(map(_tzinfo, values))
        zones.discard(_NULL)
    else:
        zones = set(map(attrgetter("tzinfo"), values))
    if len(zones) != 1:
        return None
    zone = zones.pop()
    # Only UTC: a zone with daylight saving would move a wall time that Python arithmetic put
    # in a gap, and a fixed offset would overflow near the first and last representable years.
    if isinstance(zone, ZoneInfo) and zone.key in UTC_NAMES and ZoneInfo(zone.key) is zone:
        return zone.key
    if zone is dt.UTC:
        return "+0"
    return None


_NULL = object()


def _tzinfo(value: Any) -> Any:
    return _NULL if value is None else value.tzinfo  # a naive datetime: None


def _zone(name: str) -> dt.tzinfo:
    if name[:1] in "+-":
        return dt.timezone(dt.timedelta(seconds=int(name)))
    return ZoneInfo(name)


_ENCODE_BY_KIND = dict(_ENCODERS.values())


def _encode_column(kind: str, values: Sequence[Any]) -> Any:
    if kind.startswith(_TIMESTAMP):
        return _timestamps.pack(values)
    encode = _ENCODE_BY_KIND.get(kind)
    return values if encode is None else _convert(encode, values)


def _decode_column(kind: str, values: Any) -> list[Any]:
    if kind.startswith(_TIMESTAMP):
        utc = msgpack.unpackb(values, timestamp=3)
        zone = _zone(kind[len(_TIMESTAMP) :])
        if zone.utcoffset(None) == dt.timedelta(0) and isinstance(zone, dt.timezone):
            return utc  # type: ignore[no-any-return]
        return [None if value is None else value.astimezone(zone) for value in utc]
    decode = _DECODERS.get(kind)
    return values if decode is None else _convert(decode, values)


def _convert(convert: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """Every value of a column converted, nulls kept (in one pass in C when there are none)."""
    if has_null(values):
        return [None if value is None else convert(value) for value in values]
    return list(map(convert, values))


def to_wire(batch: AnyBatch) -> Any:
    """The msgpack-ready form of a batch: by column when its records share their keys."""
    if not batch:
        return []
    if type(batch) is RowBatch:
        if not batch.names:
            return batch.records()  # records without fields: only their count to keep
        return _columns_to_wire(batch.names, list(zip(*batch.rows, strict=True)))
    keys = tuple(batch[0])
    # Every record a plain dict with the same keys in the same order (checked in C).
    if not keys or set(map(type, batch)) != {dict} or not all(map(keys.__eq__, map(tuple, batch))):
        return batch
    if len(keys) == 1:
        columns: list[Any] = [[record[keys[0]] for record in batch]]
    else:
        columns = list(zip(*map(itemgetter(*keys), batch), strict=True))  # tuples pack as arrays
    return _columns_to_wire(list(keys), columns)


def _columns_to_wire(keys: list[str], columns: list[Any]) -> dict[str, Any]:
    kinds = []
    for index, column in enumerate(columns):
        kinds.append(kind := _column_kind(column))
        columns[index] = _encode_column(kind, column)
    return {"k": keys, "t": kinds, "c": columns}


def from_wire(data: Any) -> AnyBatch:
    """The batch written by :func:`to_wire`: a :class:`RowBatch` when it went by column (no
    dict per record until a node asks for one), else its list of records."""
    if isinstance(data, list):
        return data
    columns = [
        _decode_column(kind, column) for kind, column in zip(data["t"], data["c"], strict=True)
    ]
    return RowBatch(data["k"], list(zip(*columns, strict=True)))  # rows built in C


def encode_batch(batch: AnyBatch, pack: msgpack.Packer | None = None) -> bytes:
    return (pack or packer()).pack(to_wire(batch))


def decode_stream(stream: IO[bytes]) -> Iterator[AnyBatch]:
    """Yield the batches of an encoded stream one at a time."""
    unpacker = msgpack.Unpacker(
        stream, ext_hook=_ext_hook, raw=False, strict_map_key=False, max_buffer_size=2**30
    )
    for data in unpacker:
        yield from_wire(data)
