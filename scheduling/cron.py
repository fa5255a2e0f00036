"""Five-field cron expressions: parsing with field-level errors, and date matching.

Pure: no Django, no clock. ``parse_cron("*/5 * * * *")`` returns a ``CronExpression``;
a bad expression raises ``CronError`` naming the field (``cron.minute: 61 is out of range
0-59``). Day-of-month and day-of-week combine the way Vixie cron does: when both are
restricted (neither starts with ``*``) a date matching either fires; otherwise both must match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

FIELDS = ("minute", "hour", "day_of_month", "month", "day_of_week")
_RANGES = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day_of_month": (1, 31),
    "month": (1, 12),
    "day_of_week": (0, 7),  # 0 and 7 are both Sunday
}
_NAMES = {
    "month": {
        name: number
        for number, name in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
            start=1,
        )
    },
    "day_of_week": {
        name: number
        for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
    },
}
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A cron expression is invalid; ``field`` is the offending field (or "" for the whole)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"cron.{field}: {message}" if field else f"cron: {message}")


@dataclass(frozen=True)
class CronExpression:
    """A parsed expression: the sorted values of each field (day_of_week 0 = Sunday)."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: True when day-of-month and day-of-week are both restricted (OR instead of AND).
    either_day: bool

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    def matches_date(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.either_day else (dom and dow)

    def fields(self) -> dict[str, str]:
        """Each field as a compact numeric list (``1-5,10``): what celery's crontab accepts."""
        return {
            "minute": _compact(self.minutes, 0, 59),
            "hour": _compact(self.hours, 0, 23),
            "day_of_month": _compact(sorted(self.days), 1, 31),
            "month": _compact(sorted(self.months), 1, 12),
            "day_of_week": _compact(sorted(self.weekdays), 0, 6),
        }


def parse_cron(text: str) -> CronExpression:
    """Parse a five-field expression or a macro (``@daily``); raise CronError when invalid."""
    if not isinstance(text, str) or not text.strip():
        raise CronError("", "an expression is required, e.g. '*/5 * * * *'")
    normalized = " ".join(text.split())
    expanded = MACROS.get(normalized.lower(), normalized)
    if expanded.startswith("@"):
        raise CronError("", f"unknown macro '{normalized}' (known: {', '.join(MACROS)})")
    parts = expanded.split(" ")
    if len(parts) != len(FIELDS):
        raise CronError(
            "",
            f"expected 5 fields (minute hour day_of_month month day_of_week), got {len(parts)}",
        )
    values = {name: _parse_field(name, part) for name, part in zip(FIELDS, parts, strict=True)}
    weekdays = frozenset(0 if day == 7 else day for day in values["day_of_week"])
    return CronExpression(
        text=normalized,
        minutes=tuple(sorted(values["minute"])),
        hours=tuple(sorted(values["hour"])),
        days=frozenset(values["day_of_month"]),
        months=frozenset(values["month"]),
        weekdays=weekdays,
        either_day=not parts[2].startswith("*") and not parts[4].startswith("*"),
    )


def _parse_field(name: str, text: str) -> set[int]:
    low, high = _RANGES[name]
    result: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(name, f"empty item in '{text}'")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(name, f"step '{step_text}' must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(name, first), _value(name, last)
            if start > end:
                raise CronError(name, f"range {base} is backwards")
        else:
            start = _value(name, base)
            end = high if slash else start
        result.update(range(start, end + 1, step))
    return result


def _value(name: str, token: str) -> int:
    low, high = _RANGES[name]
    names = _NAMES.get(name, {})
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not token.isdigit():
        hint = f" or a name ({next(iter(names))}, ...)" if names else ""
        raise CronError(name, f"'{token}' is not a number{hint}")
    number = int(token)
    if not low <= number <= high:
        raise CronError(name, f"{number} is out of range {low}-{high}")
    return number


def _compact(values: tuple[int, ...] | list[int], low: int, high: int) -> str:
    if list(values) == list(range(low, high + 1)):
        return "*"
    runs: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(runs)
