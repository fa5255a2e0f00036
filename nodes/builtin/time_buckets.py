"""Time buckets: the start of the interval (``15m``, ``1h``, ``1d``...) an instant falls in, on
the wall clock of a time zone.

``1d`` in ``Europe/Madrid`` is the Madrid calendar day: its bucket starts at Madrid midnight,
whatever the offset that day (23, 24 or 25 hours long at the clock changes). Minutes and hours
are counted on the wall clock too, within the hour and the day, so ``15m`` buckets start at
:00, :15, :30 and :45. The start comes back as an aware datetime in that zone; the two hours
01:00 of the night the clocks go back are two buckets (they are two different instants).

A naive datetime (or ISO text without an offset) is read as UTC, as the filter operators read
it; a date alone is that day's midnight in the zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EVERY = re.compile(r"^([1-9][0-9]{0,3})(m|h|d)$")
_UNIT_SPAN = {"m": 60, "h": 24, "d": 1}
_UNIT_NAME = {"m": "minutes", "h": "hours", "d": "days"}


def check_every(every: str) -> str:
    """``every`` if it is a bucket length this module cuts, else a ValueError saying why."""
    found = EVERY.match(every)
    if found is None:
        raise ValueError(f"'{every}' is not a bucket length such as 15m, 1h or 1d")
    size, unit = int(found[1]), found[2]
    if unit == "d" and size != 1:
        raise ValueError("buckets of days are one day long ('1d')")
    if _UNIT_SPAN[unit] % size:
        raise ValueError(
            f"{size} {_UNIT_NAME[unit]} does not divide an {('hour', 'day')[unit == 'h']} "
            f"evenly: use one of {', '.join(_divisors(_UNIT_SPAN[unit], unit))}"
        )
    return every


def _divisors(span: int, unit: str) -> list[str]:
    return [f"{n}{unit}" for n in range(1, span) if span % n == 0]


def check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}' (an IANA name: Europe/Madrid, UTC)") from None
    return name


def bucketer(every: str, zone: str) -> Callable[[Any], datetime | None]:
    """A function giving the bucket start of a datetime, date or ISO text (``None`` for null);
    raises ValueError for a value that is no instant."""
    found = EVERY.match(check_every(every))
    assert found is not None
    size, unit = int(found[1]), found[2]
    tz = ZoneInfo(check_zone(zone))

    def start(value: Any) -> datetime | None:
        if value is None:
            return None
        local = _instant(value, tz).astimezone(tz)
        if unit == "d":
            floor = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
        elif unit == "h":
            floor = local.replace(hour=local.hour - local.hour % size, minute=0, second=0,
                                  microsecond=0)  # fmt: skip
        else:
            floor = local.replace(minute=local.minute - local.minute % size, second=0,
                                  microsecond=0)  # fmt: skip
        # A floor on the wall clock that the clock skipped (spring forward) is read as the
        # instant it names, then shown at the offset in force then.
        return floor.astimezone(UTC).astimezone(tz)

    return start


def _instant(value: Any, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=tz)
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == len("2026-01-31"):
                return datetime.combine(date.fromisoformat(text), time(), tzinfo=tz)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 date-time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"a {type(value).__name__} is not a date-time")
