"""Keys made of record fields: what ``join`` matches on, ``aggregate`` groups by and ``dedupe``
compares. One definition, so that the three agree on what "the same key" is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nodes.builtin.paths import MISSING, get_path
from nodes.sdk.batches import Record

Key = tuple[Any, ...]


def hashable(value: Any) -> Any:
    """``value`` as a hashable key part: lists become tuples and objects sorted pairs, so that
    two equal JSON values make equal keys. A missing field is null."""
    if value is MISSING:
        return None
    if isinstance(value, list | tuple):
        return ("[]", *map(hashable, value))
    if isinstance(value, dict):
        return ("{}", *sorted((str(k), hashable(v)) for k, v in value.items()))
    return value


def key_reader(paths: Sequence[str]) -> Callable[[Record], Key]:
    """A function giving a record's key: the values at ``paths``, in order (dotted paths reach
    nested values; a missing field counts as null)."""
    flat = all("." not in path for path in paths)
    names = tuple(paths)
    if flat:

        def top_level(record: Record) -> Key:
            return tuple(_plain(record.get(name)) for name in names)

        return top_level

    def nested(record: Record) -> Key:
        return tuple(hashable(get_path(record, path)) for path in names)

    return nested


def _plain(value: Any) -> Any:
    # The common case (a scalar) without a call to hashable().
    return hashable(value) if isinstance(value, list | tuple | dict) else value


def value_reader(path: str) -> Callable[[Record], Any]:
    """A function giving the (hashable) value at ``path``: a key of one field, without the
    tuple around it (a join's table of a million keys saves the tuples' memory)."""
    if "." not in path:
        return lambda record: _plain(record.get(path))
    return lambda record: hashable(get_path(record, path))
