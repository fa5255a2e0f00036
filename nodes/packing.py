"""Values in msgpack with their Python types kept: ``Decimal``, ``date``, ``datetime``,
``time``, ``UUID`` and integers beyond 64 bits (an exact sum of large integers) travel as
extension types and come back as themselves.

The hand-off between nodes (``flows.engine.codec``) and a node that keeps records packed in
memory (``join``'s right side) use the same types, so a value reads back identically either way.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import msgpack

DECIMAL, DATE, DATETIME, TIME, UUID, BIGINT = 1, 2, 3, 4, 5, 6


def default(value: Any) -> Any:
    """msgpack's ``default``: an extension type for the types it does not write natively."""
    if isinstance(value, Decimal):
        return msgpack.ExtType(DECIMAL, str(value).encode())
    if isinstance(value, dt.datetime):
        return msgpack.ExtType(DATETIME, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgpack.ExtType(DATE, value.isoformat().encode())
    if isinstance(value, dt.time):
        return msgpack.ExtType(TIME, value.isoformat().encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(UUID, value.bytes)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if type(value) is int:  # msgpack writes 64 bits; it asks here for larger integers
        return msgpack.ExtType(BIGINT, str(value).encode())
    raise TypeError(f"cannot hand off a value of type {type(value).__name__}")


def ext_hook(code: int, data: bytes) -> Any:
    """msgpack's ``ext_hook``: the value an extension type written by :func:`default` stands for."""
    if code == DECIMAL:
        return Decimal(data.decode())
    if code == DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == DATE:
        return dt.date.fromisoformat(data.decode())
    if code == TIME:
        return dt.time.fromisoformat(data.decode())
    if code == UUID:
        return uuid.UUID(bytes=data)
    if code == BIGINT:
        return int(data.decode())
    return msgpack.ExtType(code, data)


def packer() -> msgpack.Packer:
    """A packer writing these types (reuse one: it keeps its buffer)."""
    return msgpack.Packer(default=default, use_bin_type=True, datetime=False)


def unpack(data: bytes | bytearray) -> Any:
    """One value packed by :func:`packer`."""
    return msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)
