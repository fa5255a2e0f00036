"""Filter operators: plain functions of (record value, condition value) -> bool. No ``eval``.

A missing field arrives as ``None``. Comparisons never raise: a null or an incomparable pair is
simply not a match, so ``eq``/``gt``/``in``/... are False against null, while their negations
``ne`` and ``not_in`` are True (as in pandas, unlike SQL's three-valued logic).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from nodes.builtin.casts import to_bool, to_date, to_datetime, to_decimal
from nodes.sdk.regex import BoundedRegex, compile_regex

Operator = Callable[[Any, Any], bool]

#: Operators that take no ``value``.
UNARY = frozenset({"is_null", "not_null"})
#: Operators whose ``value`` is a list.
LIST_VALUED = frozenset({"in", "not_in"})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _aware(value: datetime) -> datetime:
    # Naive datetimes are read as UTC so they compare with timestamptz values.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _coerce(left: Any, right: Any) -> tuple[Any, Any] | None:
    """The pair made comparable, or ``None`` when it cannot be (nulls, bad strings)."""
    if left is None or right is None:
        return None
    try:
        if isinstance(left, bool) or isinstance(right, bool):
            return to_bool(left), to_bool(right)
        if isinstance(left, datetime) or isinstance(right, datetime):
            return _aware(to_datetime(left)), _aware(to_datetime(right))
        if isinstance(left, date) or isinstance(right, date):
            return to_date(left), to_date(right)
        if isinstance(left, Decimal) or isinstance(right, Decimal):
            return to_decimal(left), to_decimal(right)
        if _is_number(left) and isinstance(right, str):
            return left, to_decimal(right)
        if isinstance(left, str) and _is_number(right):
            return to_decimal(left), right
    except ValueError:
        return None
    return left, right


#: Pairs of one of these types compare as they are (_coerce would return them unchanged).
_PLAIN = frozenset({str, int, float})


def _comparison(compare: Callable[[Any, Any], bool]) -> Operator:
    def op(left: Any, right: Any) -> bool:
        kind, other = type(left), type(right)
        if kind is other and kind in _PLAIN:
            return bool(compare(left, right))  # the common case, without the coercion ladder
        # A finite Decimal and an int compare exactly as they are (what coercion would give).
        if kind is Decimal and other is int and left.is_finite():
            return bool(compare(left, right))
        if kind is int and other is Decimal and right.is_finite():
            return bool(compare(left, right))
        pair = _coerce(left, right)
        if pair is None:
            return False
        try:
            return bool(compare(*pair))
        except (TypeError, ArithmeticError):  # "a" < 1, {} < [], nan < Decimal(3): no match
            return False

    return op


eq = _comparison(operator.eq)


def is_in(left: Any, right: list[Any]) -> bool:
    return any(eq(left, item) for item in right)


def contains(left: Any, right: Any) -> bool:
    """Substring of a string, element of a list, or key of an object."""
    if isinstance(left, str):
        return isinstance(right, str) and right in left
    if isinstance(left, list | tuple):
        return any(eq(item, right) for item in left)
    if isinstance(left, dict):
        return isinstance(right, str) and right in left
    return False


def regex(left: Any, right: str | BoundedRegex) -> bool:
    """``re.search`` on a string value, in time linear in its length (nodes.sdk.regex)."""
    if not isinstance(left, str):
        return False
    pattern = right if isinstance(right, BoundedRegex) else compile_regex(right)
    return pattern.search(left)


#: The comparisons a column of one plain type can run in C, value for value.
_IN_C: dict[str, Operator] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def column_operator(name: str, values: list[Any], value: Any) -> tuple[Operator, Any]:
    """The operator ``name`` for testing every value of a column against ``value``, and the
    operand to give it: the plain comparison (run in C) when it answers what
    :data:`OPERATORS` would for each value, that is when the column and ``value`` are all of
    one type in ``str``/``int``/``float``, or the column is finite decimals and ``value`` an
    int (then compared as the equal decimal); otherwise the operator itself and ``value``."""
    plain = _IN_C.get(name)
    if plain is None or not values:
        return OPERATORS[name], value
    kinds = set(map(type, values))
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind is type(value) and kind in _PLAIN:
            return plain, value
        if kind is Decimal and type(value) is int and all(map(Decimal.is_finite, values)):
            return plain, Decimal(value)
    return OPERATORS[name], value


OPERATORS: dict[str, Operator] = {
    "eq": eq,
    "ne": lambda left, right: not eq(left, right),
    "gt": _comparison(operator.gt),
    "gte": _comparison(operator.ge),
    "lt": _comparison(operator.lt),
    "lte": _comparison(operator.le),
    "in": is_in,
    "not_in": lambda left, right: not is_in(left, right),
    "contains": contains,
    "startswith": lambda left, right: isinstance(left, str) and left.startswith(str(right)),
    "endswith": lambda left, right: isinstance(left, str) and left.endswith(str(right)),
    "is_null": lambda left, right: left is None,
    "not_null": lambda left, right: left is not None,
    "regex": regex,
}
