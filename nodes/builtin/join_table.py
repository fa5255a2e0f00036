"""The right side of a ``join``: a hash table of its records by key, packed to bound memory.

A million right records held as dicts cost several hundred megabytes in a worker process. Here
each record is kept as one msgpack ``bytes`` of its values (types kept, ``nodes.packing``),
in the order of the field names seen so far, and unpacked only when a left record matches
it: about 150 bytes per record with its key, a third of a dict's cost. The number of records
is bounded (``right_max_rows``); past it the join fails with an error naming the bound rather
than the worker being killed for its memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from nodes.builtin.keys import Key
from nodes.packing import packer, unpack
from nodes.sdk.batches import Batch, Record
from nodes.sdk.errors import NodeError


class RightTable:
    """Records by key; a key with a null part never matches (as in SQL)."""

    def __init__(self, key_of: Callable[[Record], Key], max_rows: int) -> None:
        self.key_of = key_of
        self.max_rows = max_rows
        self.rows = 0
        #: Every field seen on the right, in the order first seen.
        self.names: list[str] = []
        self._position: dict[str, int] = {}
        # key -> the packed values of its one record, or a list of them for several.
        self._table: dict[Key, bytes | list[bytes]] = {}
        self._pack = packer()

    def load(self, batches: Iterable[Batch]) -> RightTable:
        for batch in batches:
            self.rows += len(batch)
            if self.rows > self.max_rows:
                raise NodeError(
                    f"the right side has more than {self.max_rows:,} records "
                    f"(right_max_rows = {self.max_rows:,}): filter or aggregate it before the "
                    "join, or raise right_max_rows if the workers have the memory",
                    permanent=True,
                )
            for record in batch:
                self._add(record)
        return self

    def _add(self, record: Record) -> None:
        key = self.key_of(record)
        if None in key:
            return
        for name in record:
            if name not in self._position:
                self._position[name] = len(self.names)
                self.names.append(name)
        values = [None] * len(self.names)
        for name, value in record.items():
            values[self._position[name]] = value
        packed = self._pack.pack(values)
        try:
            held = self._table.setdefault(key, packed)
        except TypeError:
            raise NodeError(
                f"a right join key is not a value that can be compared: {key!r:.100}",
                permanent=True,
            ) from None
        if held is packed:
            return
        if isinstance(held, bytes):
            self._table[key] = [held, packed]
        else:
            held.append(packed)

    def matches(self, key: Key) -> list[list[Any]]:
        """The values of the right records with this key (in their order of arrival), each as
        long as :attr:`names` (fields a record lacked are null)."""
        if None in key:
            return []
        try:
            held = self._table.get(key)
        except TypeError:
            return []
        if held is None:
            return []
        width = len(self.names)
        packed = [held] if isinstance(held, bytes) else held
        found = []
        for data in packed:
            values: list[Any] = unpack(data)
            if len(values) < width:
                values.extend([None] * (width - len(values)))
            found.append(values)
        return found

    def __contains__(self, key: Key) -> bool:
        if None in key:
            return False
        try:
            return key in self._table
        except TypeError:
            return False
