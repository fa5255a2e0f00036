"""The aggregate functions of ``aggregate``, as mergeable partial results.

Each accumulator takes values one by one (``add``), merges another's partial result
(``merge``) and gives its value (``result``). Merging the partials of consecutive parts of the
input, in order, gives exactly what adding the whole input gives, whatever the cut: that is what
lets each partition aggregate its part and one step combine them.

- Nulls are ignored, as SQL does: ``count(field)`` counts non-null values, ``sum``/``avg``/
  ``min``/``max`` of no value is null, ``count`` (no field) counts records.
- Sums are exact: integers as integers, ``Decimal`` values at unlimited precision (never
  rounded to 28 digits), floats as exact partial sums (Shewchuk's algorithm, the one behind
  ``math.fsum``), rounded once at the end — so the order of the additions never changes the
  result. A sum with floats is a float; else with decimals a ``Decimal``; else an integer.
- ``count_distinct`` keeps a set, bounded: past ``limit`` values it fails, naming the bound.

Each partial result can also leave the process: ``state()`` gives it as a value of the
platform's types (what ``nodes.packing`` writes, Decimals exact, integers of any size, floats
bit for bit) and ``load(state)`` sets a new accumulator to it, so that a partition's partial
result is stored and merged by another process exactly as if it had never left.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from nodes.builtin.keys import hashable

#: Adds decimals without ever rounding.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
#: Divides for ``avg`` (the usual 28 significant digits).
AVERAGE = Context()


class AggregateError(ValueError):
    """A value an aggregate function cannot take (text to sum, values that do not compare)."""


class Accumulator(ABC):
    @abstractmethod
    def add(self, value: Any) -> None: ...

    @abstractmethod
    def merge(self, other: Any) -> None: ...

    @abstractmethod
    def result(self) -> Any: ...

    @abstractmethod
    def state(self) -> Any:
        """The partial result as a storable value (see the module's docstring)."""

    @abstractmethod
    def load(self, state: Any) -> None:
        """Become the partial result ``state()`` gave (on a new accumulator)."""


class Count(Accumulator):
    """Non-null values (every record when ``rows``)."""

    __slots__ = ("n", "rows")

    def __init__(self, rows: bool = False) -> None:
        self.n = 0
        self.rows = rows

    def add(self, value: Any) -> None:
        if self.rows or value is not None:
            self.n += 1

    def merge(self, other: Count) -> None:
        self.n += other.n

    def result(self) -> int:
        return self.n

    def state(self) -> int:
        return self.n

    def load(self, state: Any) -> None:
        self.n = int(state)


class Sum(Accumulator):
    """The exact sum of numbers (see the module's docstring)."""

    __slots__ = ("decimal", "floats", "ints", "nonfinite", "seen")

    def __init__(self) -> None:
        self.seen = False
        self.ints = 0
        self.decimal: Decimal | None = None
        self.floats: list[float] = []  # non-overlapping partial sums, increasing magnitude
        self.nonfinite: float | None = None

    def add(self, value: Any) -> None:
        if value is None:
            return
        kind = type(value)
        if kind is int:
            self.ints += value
        elif kind is Decimal:
            self.decimal = value if self.decimal is None else EXACT.add(self.decimal, value)
        elif kind is float:
            self._add_float(value)
        else:
            raise AggregateError(f"{_shown(value)} is not a number")
        self.seen = True

    def _add_float(self, value: float) -> None:
        if not math.isfinite(value):
            self.nonfinite = value if self.nonfinite is None else self.nonfinite + value
            return
        partials, kept = self.floats, 0
        for partial in partials:
            if abs(value) < abs(partial):
                value, partial = partial, value
            high = value + partial
            low = partial - (high - value)
            if low:
                partials[kept] = low
                kept += 1
            value = high
        partials[kept:] = [value]

    def merge(self, other: Sum) -> None:
        if not other.seen:
            return
        self.seen = True
        self.ints += other.ints
        if other.decimal is not None:
            self.add(other.decimal)
        for partial in other.floats:
            self._add_float(partial)
        if other.nonfinite is not None:
            self._add_float(other.nonfinite)

    def state(self) -> list[Any] | None:
        if not self.seen:
            return None
        return [self.ints, self.decimal, list(self.floats), self.nonfinite]

    def load(self, state: Any) -> None:
        if state is None:
            return
        self.seen = True
        self.ints, self.decimal, floats, self.nonfinite = state
        self.floats = [float(partial) for partial in floats]

    def result(self) -> int | Decimal | float | None:
        if not self.seen:
            return None
        if self.floats or self.nonfinite is not None:
            exact = [*self.floats, float(self.ints), float(self.decimal or 0)]
            total = math.fsum(exact)
            return total if self.nonfinite is None else total + self.nonfinite
        if self.decimal is not None:
            return EXACT.add(self.decimal, Decimal(self.ints))
        return self.ints


class Avg(Accumulator):
    """The mean of the non-null numbers: their exact sum divided once by their count."""

    __slots__ = ("count", "sum")

    def __init__(self) -> None:
        self.sum = Sum()
        self.count = 0

    def add(self, value: Any) -> None:
        if value is not None:
            self.sum.add(value)
            self.count += 1

    def merge(self, other: Avg) -> None:
        self.sum.merge(other.sum)
        self.count += other.count

    def state(self) -> list[Any]:
        return [self.sum.state(), self.count]

    def load(self, state: Any) -> None:
        self.sum.load(state[0])
        self.count = int(state[1])

    def result(self) -> Decimal | float | None:
        total = self.sum.result()
        if total is None:
            return None
        if isinstance(total, Decimal):
            return AVERAGE.divide(total, Decimal(self.count))
        return total / self.count


class _Extreme(Accumulator):
    """The least (``Min``) or greatest (``Max``) non-null value; the first of equals is kept.
    A NaN is skipped as a null is (it compares with nothing, so it would depend on order)."""

    __slots__ = ("best", "seen")
    greater = False

    def __init__(self) -> None:
        self.seen = False
        self.best: Any = None

    def add(self, value: Any) -> None:
        if value is None or value != value:  # NaN: the value unequal to itself
            return
        if not self.seen:
            self.best, self.seen = value, True
            return
        try:
            better = value > self.best if self.greater else value < self.best
        except TypeError:
            raise AggregateError(
                f"{_shown(value)} does not compare with {_shown(self.best)}"
            ) from None
        if better:
            self.best = value

    def merge(self, other: _Extreme) -> None:
        if other.seen:
            self.add(other.best)

    def result(self) -> Any:
        return self.best

    def state(self) -> Any:
        return self.best  # null: no value seen (nulls are never kept)

    def load(self, state: Any) -> None:
        self.best, self.seen = state, state is not None


class Min(_Extreme):
    __slots__ = ()


class Max(_Extreme):
    __slots__ = ()
    greater = True


class First(Accumulator):
    """The first non-null value, in input order."""

    __slots__ = ("seen", "value")

    def __init__(self) -> None:
        self.seen = False
        self.value: Any = None

    def add(self, value: Any) -> None:
        if value is not None and not self.seen:
            self.value, self.seen = value, True

    def merge(self, other: First) -> None:
        if other.seen:
            self.add(other.value)

    def result(self) -> Any:
        return self.value

    def state(self) -> Any:
        return self.value  # null: no value seen (nulls are never kept)

    def load(self, state: Any) -> None:
        self.value, self.seen = state, state is not None


class Last(First):
    """The last non-null value, in input order."""

    __slots__ = ()

    def add(self, value: Any) -> None:
        if value is not None:
            self.value, self.seen = value, True


class CountDistinct(Accumulator):
    """How many different non-null values, from a set of at most ``limit`` values."""

    __slots__ = ("limit", "values")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: set[Any] = set()

    def add(self, value: Any) -> None:
        if value is None:
            return
        self.values.add(hashable(value))
        if len(self.values) > self.limit:
            self._too_many()

    def merge(self, other: CountDistinct) -> None:
        self.values |= other.values
        if len(self.values) > self.limit:
            self._too_many()

    def _too_many(self) -> None:
        raise AggregateError(
            f"more than {self.limit:,} different values to count (max_groups = "
            f"{self.limit:,}): count fewer, or raise max_groups if the workers have the memory"
        )

    def result(self) -> int:
        return len(self.values)

    def state(self) -> list[Any]:
        return list(self.values)

    def load(self, state: Any) -> None:
        # The values are kept as keys.hashable() made them: scalars and tuples, which a
        # stored state gives back as lists.
        self.values = {_refrozen(value) for value in state}
        if len(self.values) > self.limit:
            self._too_many()


def accumulator(op: str, counts_rows: bool, limit: int) -> Accumulator:
    """A new accumulator for the aggregate function ``op``."""
    if op == "count":
        return Count(rows=counts_rows)
    if op == "count_distinct":
        return CountDistinct(limit)
    made: Accumulator = _SIMPLE[op]()
    return made


_SIMPLE: dict[str, type[Accumulator]] = {
    "sum": Sum,
    "avg": Avg,
    "min": Min,
    "max": Max,
    "first": First,
    "last": Last,
}


def _refrozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(map(_refrozen, value))
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:40]}... ({type(value).__name__})" if len(text) > 40 else text
