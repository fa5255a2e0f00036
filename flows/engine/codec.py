"""Record encoding for the hand-off between nodes: msgpack with typed extensions.

Types that JSON would flatten to strings survive the trip: Decimal, date, datetime, time and
UUID come back as themselves, so a filter downstream compares numbers as numbers and dates as
dates. One msgpack object is one batch (a list of records), so a reader streams batch by batch.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any

import msgpack

_DECIMAL, _DATE, _DATETIME, _TIME, _UUID = 1, 2, 3, 4, 5


def _default(value: Any) -> msgpack.ExtType:
    if isinstance(value, Decimal):
        return msgpack.ExtType(_DECIMAL, str(value).encode())
    if isinstance(value, dt.datetime):
        return msgpack.ExtType(_DATETIME, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgpack.ExtType(_DATE, value.isoformat().encode())
    if isinstance(value, dt.time):
        return msgpack.ExtType(_TIME, value.isoformat().encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_UUID, value.bytes)
    if isinstance(value, tuple | set | frozenset):
        return list(value)  # type: ignore[return-value]
    raise TypeError(f"cannot hand off a value of type {type(value).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _DECIMAL:
        return Decimal(data.decode())
    if code == _DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _TIME:
        return dt.time.fromisoformat(data.decode())
    if code == _UUID:
        return uuid.UUID(bytes=data)
    return msgpack.ExtType(code, data)


def packer() -> msgpack.Packer:
    return msgpack.Packer(default=_default, use_bin_type=True, datetime=False)


def encode_batch(batch: list[dict[str, Any]]) -> bytes:
    return packer().pack(batch)


def decode_stream(stream: IO[bytes]) -> Iterator[list[dict[str, Any]]]:
    """Yield the batches of an encoded stream one at a time."""
    unpacker = msgpack.Unpacker(
        stream, ext_hook=_ext_hook, raw=False, strict_map_key=False, max_buffer_size=2**30
    )
    yield from unpacker
