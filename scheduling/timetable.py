"""When a schedule fires, and which data interval each firing covers. Pure: no Django, no clock.

All instants are timezone-aware UTC datetimes. Three timetables share one interface:

- ``next_after(t)``: the first fire time strictly after ``t`` (None when there is none);
- ``latest_at_or_before(t)``: the last fire time at or before ``t``;
- ``interval_for(fire)``: the data interval of a firing.

A cron or interval firing at T covers ``[previous fire time, T)``; a one-off at A covers
``[A, A]``. ``start``/``end`` bound the fire times (both inclusive); the interval of the first
firing still starts at the previous fire time of the expression, even if that is before ``start``.

Cron expressions are evaluated on the wall clock of their timezone (zoneinfo):

- a wall time skipped by a spring-forward transition fires once, at the first valid instant
  (the moment the clocks jump: 02:30 on 2025-03-09 in America/New_York fires at 03:00 EDT,
  07:00 UTC); several skipped wall times collapse into that one firing;
- a wall time that occurs twice (fall-back) fires at its first occurrence only, unless the
  expression runs every hour (hour field ``*``): those keep their pace through both passes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from scheduling.cron import CronExpression

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How far a cron search looks for a matching date (covers leap days on a given weekday).
MAX_SEARCH_DAYS = 366 * 28
_TINY = timedelta(microseconds=1)


class Timetable:
    """The fire times of a schedule (see the module docstring)."""

    def next_after(self, t: datetime) -> datetime | None:
        raise NotImplementedError

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        raise NotImplementedError

    def interval_for(self, fire: datetime) -> tuple[datetime, datetime]:
        raise NotImplementedError

    def is_fire_time(self, t: datetime) -> bool:
        return self.next_after(t - _TINY) == t

    def fire_times(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Fire times in ``(after, until]``, oldest first, at most ``limit`` of them."""
        times: list[datetime] = []
        current = self.next_after(after)
        while current is not None and current <= until and len(times) < limit:
            times.append(current)
            current = self.next_after(current)
        return times


@dataclass(frozen=True)
class OneOffTimetable(Timetable):
    at: datetime

    def next_after(self, t: datetime) -> datetime | None:
        return self.at if self.at > t else None

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        return self.at if self.at <= t else None

    def interval_for(self, fire: datetime) -> tuple[datetime, datetime]:
        return fire, fire


@dataclass(frozen=True)
class IntervalTimetable(Timetable):
    """Every ``every`` from ``start`` (or from the Unix epoch: ``30s`` fires at :00 and :30)."""

    every: timedelta
    start: datetime | None = None
    end: datetime | None = None

    @property
    def anchor(self) -> datetime:
        return self.start or EPOCH

    def _grid(self, t: datetime) -> int:
        """The index of the last grid point at or before ``t``."""
        return (t - self.anchor) // self.every

    def next_after(self, t: datetime) -> datetime | None:
        fire = self.anchor + (self._grid(t) + 1) * self.every
        if self.start is not None and fire < self.start:
            fire = self.start
        return None if self.end is not None and fire > self.end else fire

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        if self.end is not None and t > self.end:
            t = self.end
        fire = self.anchor + self._grid(t) * self.every
        return None if self.start is not None and fire < self.start else fire

    def interval_for(self, fire: datetime) -> tuple[datetime, datetime]:
        return fire - self.every, fire


@dataclass(frozen=True)
class CronTimetable(Timetable):
    expression: CronExpression
    tz: ZoneInfo
    start: datetime | None = None
    end: datetime | None = None

    def next_after(self, t: datetime) -> datetime | None:
        if self.start is not None and t < self.start:
            t = self.start - _TINY
        fire = _cron_next(self.expression, self.tz, t)
        if fire is None or (self.end is not None and fire > self.end):
            return None
        return fire

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        if self.end is not None and t > self.end:
            t = self.end
        fire = _cron_previous(self.expression, self.tz, t + _TINY)
        if fire is None or (self.start is not None and fire < self.start):
            return None
        return fire

    def interval_for(self, fire: datetime) -> tuple[datetime, datetime]:
        previous = _cron_previous(self.expression, self.tz, fire)
        return (previous or fire), fire


# --- cron search ------------------------------------------------------------------------------


def _cron_next(expr: CronExpression, tz: ZoneInfo, t: datetime) -> datetime | None:
    """The first fire time strictly after ``t``."""
    first_day = t.astimezone(tz).date()
    for day in _days(first_day, 1):
        if not expr.matches_date(day):
            continue
        instants = _day_instants(expr, tz, day)
        index = bisect.bisect_right(instants, t) if day == first_day else 0
        if index < len(instants):
            return instants[index]
    return None


def _cron_previous(expr: CronExpression, tz: ZoneInfo, t: datetime) -> datetime | None:
    """The last fire time strictly before ``t``."""
    first_day = t.astimezone(tz).date()
    for day in _days(first_day, -1):
        if not expr.matches_date(day):
            continue
        instants = _day_instants(expr, tz, day)
        index = bisect.bisect_left(instants, t) if day == first_day else len(instants)
        if index > 0:
            return instants[index - 1]
    return None


def _days(first: date, step: int) -> Iterator[date]:
    day = first
    for _ in range(MAX_SEARCH_DAYS):
        yield day
        try:
            day += timedelta(days=step)
        except OverflowError:
            return


@lru_cache(maxsize=4096)
def _day_instants(expr: CronExpression, tz: ZoneInfo, day: date) -> tuple[datetime, ...]:
    """The fire instants of one local date, sorted, in UTC."""
    offset = _offset(tz, day)
    if offset == _offset(tz, day + timedelta(days=1)):
        # No transition that day: wall time minus a constant offset, already in order.
        base = datetime.combine(day, time(0), tzinfo=UTC) - offset
        return tuple(
            base + timedelta(hours=hour, minutes=minute)
            for hour in expr.hours
            for minute in expr.minutes
        )
    instants: set[datetime] = set()
    for hour in expr.hours:
        for minute in expr.minutes:
            wall = datetime.combine(day, time(hour, minute))
            instants.update(wall_to_instants(wall, tz, both_folds=expr.every_hour))
    return tuple(sorted(instants))


def _offset(tz: ZoneInfo, day: date) -> timedelta:
    offset = datetime.combine(day, time(0), tzinfo=tz).utcoffset()
    assert offset is not None
    return offset


def wall_to_instants(wall: datetime, tz: ZoneInfo, both_folds: bool = False) -> list[datetime]:
    """The UTC instants at which the naive wall time ``wall`` happens in ``tz``.

    One instant normally; for a repeated wall time the first occurrence (both when
    ``both_folds``); for a skipped wall time the first valid instant after the jump.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first < second:  # repeated: fold=0 is the earlier pass
        return [first, second] if both_folds else [first]
    # Skipped: fold=1 maps before the jump, fold=0 after it; the jump lies between.
    low, high = second, first
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return [high.replace(microsecond=0)]
