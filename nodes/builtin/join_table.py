"""The right side of a ``join``: its records by key, packed to bound memory.

Each right record is kept as the msgpack of its values (types kept, ``nodes.packing``), in the
order of the field names seen so far, appended to one buffer, and unpacked only when a left
record matches it. How records are found by key depends on the keys:

- **integer keys** (an ``id``, the usual case) are held in two arrays, the keys and their
  records' numbers, sorted by key once the right side is read (stable: records of one key stay
  in their order of arrival) and searched by bisection: about 60 bytes per record in all,
  where a dict of tuples costs about 450 and a dict of packed records about 150;
- **any other key** (text, several fields, a mix) goes in a dict from key to record numbers.

The number of records is bounded (``right_max_rows``); past it the join fails with an error
naming the bound rather than the worker being killed for its memory.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from nodes.packing import packer, unpack
from nodes.sdk.batches import Batch, Record
from nodes.sdk.errors import NodeError

_INT64 = (-(2**63), 2**63 - 1)


class RightTable:
    """Records by key; a key with a null part never matches (as in SQL).

    ``key_of`` gives a record's key: a tuple of its values (``keys.key_reader``), or for a key
    of one field the value alone (``keys.value_reader``, ``composite=False``). Keys match when
    they compare equal (``1``, ``1.0`` and ``Decimal(1)`` do; ``"1"`` does not)."""

    def __init__(
        self, key_of: Callable[[Record], Any], max_rows: int, composite: bool = True
    ) -> None:
        self.key_of = key_of
        self.max_rows = max_rows
        self.composite = composite
        self.rows = 0
        #: Every field seen on the right, in the order first seen.
        self.names: list[str] = []
        self._position: dict[str, int] = {}
        self._pack = packer()
        self._data = bytearray()  # the packed records, one after the other
        self._ends = array("Q")  # where record i ends in _data
        # Integer keys: the keys and record numbers (sorted by key once loaded), until a key
        # of another kind arrives; then a dict from key to record numbers.
        self._int_keys: array[int] | None = None if composite else array("q")
        self._numbers = array("Q")
        self._hashed: dict[Any, int | list[int]] | None = {} if composite else None

    # --- building ---------------------------------------------------------------------------
    def load(self, batches: Iterable[Batch]) -> RightTable:
        for batch in batches:
            if self.rows + len(batch) > self.max_rows:
                raise NodeError(
                    f"the right side has more than {self.max_rows:,} records "
                    f"(right_max_rows = {self.max_rows:,}): filter or aggregate it before the "
                    "join, or raise right_max_rows if the workers have the memory",
                    permanent=True,
                )
            for record in batch:
                self._add(record)
            self.rows += len(batch)
        if self._int_keys is not None:
            self._sort()
        return self

    def _add(self, record: Record) -> None:
        key = self.key_of(record)
        if self.is_null(key):
            return
        for name in record:
            if name not in self._position:
                self._position[name] = len(self.names)
                self.names.append(name)
        values = [None] * len(self.names)
        for name, value in record.items():
            values[self._position[name]] = value
        number = len(self._ends)
        self._data += self._pack.pack(values)
        self._ends.append(len(self._data))
        if self._int_keys is not None:
            if type(key) is int and _INT64[0] <= key <= _INT64[1]:
                self._int_keys.append(key)
                self._numbers.append(number)
                return
            self._to_hashed()
        self._hash(key, number)

    def _hash(self, key: Any, number: int) -> None:
        assert self._hashed is not None
        try:
            held = self._hashed.setdefault(key, number)
        except TypeError:
            raise NodeError(
                f"a right join key is not a value that can be compared: {key!r:.100}",
                permanent=True,
            ) from None
        if held == number and not isinstance(held, list):
            return
        if isinstance(held, list):
            held.append(number)
        else:
            self._hashed[key] = [held, number]

    def _to_hashed(self) -> None:
        """A key that is not an integer arrived: index the records seen so far by a dict."""
        assert self._int_keys is not None
        keys, numbers = self._int_keys, self._numbers
        self._int_keys, self._numbers, self._hashed = None, array("Q"), {}
        for key, number in zip(keys, numbers, strict=True):
            self._hash(key, number)

    def _sort(self) -> None:
        """Sort the integer keys (and their record numbers with them), stably."""
        keys = self._int_keys
        assert keys is not None
        if all(map(int.__le__, keys, keys[1:])):
            return  # read in key order already (a table read by its primary key)
        bits = max(len(keys) - 1, 1).bit_length()
        # One int per record holding both the key and the record number: a sort of plain ints.
        combined = sorted(
            (key << bits) | number for key, number in zip(keys, self._numbers, strict=True)
        )
        mask = (1 << bits) - 1
        self._int_keys = array("q", (value >> bits for value in combined))
        self._numbers = array("Q", (value & mask for value in combined))

    # --- probing ----------------------------------------------------------------------------
    def is_null(self, key: Any) -> bool:
        """Whether a key has a null part (it matches nothing)."""
        return (None in key) if self.composite else key is None

    def _found(self, key: Any) -> list[int]:
        """The numbers of the right records with this key, in their order of arrival."""
        if self.is_null(key):
            return []
        keys = self._int_keys
        if keys is not None:
            wanted = _as_int(key)
            if wanted is None:
                return []
            first = index = bisect_left(keys, wanted)
            while index < len(keys) and keys[index] == wanted:
                index += 1
            return list(self._numbers[first:index])
        assert self._hashed is not None
        try:
            held = self._hashed.get(key)
        except TypeError:
            return []
        if held is None:
            return []
        return held if isinstance(held, list) else [held]

    def matches(self, key: Any) -> list[list[Any]]:
        """The values of the right records with this key (in their order of arrival), each as
        long as :attr:`names` (fields a record lacked are null)."""
        width = len(self.names)
        found = []
        for number in self._found(key):
            start = self._ends[number - 1] if number else 0
            values: list[Any] = unpack(self._data[start : self._ends[number]])
            if len(values) < width:
                values.extend([None] * (width - len(values)))
            found.append(values)
        return found

    def __contains__(self, key: Any) -> bool:
        return bool(self._found(key))


def _as_int(key: Any) -> int | None:
    """The integer a left key equals, if any (``2.0`` and ``Decimal("2")`` equal ``2``; text
    never equals a number)."""
    kind = type(key)
    if kind is int or kind is bool:
        return int(key)
    if kind is float or kind is Decimal:
        try:
            integral = key == int(key)
        except (OverflowError, ValueError):  # infinities, NaN
            return None
        return int(key) if integral else None
    return None
