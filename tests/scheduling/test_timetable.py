"""Fire times and data intervals, with DST on the wall clock of the schedule's timezone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduling.cron import parse_cron
from scheduling.timetable import (
    CronTimetable,
    IntervalTimetable,
    OneOffTimetable,
    Timetable,
    wall_to_instants,
)

NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(timetable: Timetable, after: datetime, until: datetime) -> list[datetime]:
    return timetable.fire_times(after, until, 1000)


def cron(expression: str, tz: ZoneInfo = NEW_YORK, **bounds: datetime) -> CronTimetable:
    return CronTimetable(parse_cron(expression), tz, bounds.get("start"), bounds.get("end"))


def test_0230_new_york_fires_once_a_day_across_spring_forward() -> None:
    times = fires(cron("30 2 * * *"), utc(2025, 3, 7), utc(2025, 3, 11))
    assert times == [
        utc(2025, 3, 7, 7, 30),  # 02:30 EST
        utc(2025, 3, 8, 7, 30),  # 02:30 EST
        utc(2025, 3, 9, 7, 0),  # 02:30 does not exist: 03:00 EDT, when the clocks jump
        utc(2025, 3, 10, 6, 30),  # 02:30 EDT
    ]


def test_0230_new_york_fires_once_a_day_across_fall_back() -> None:
    times = fires(cron("30 2 * * *"), utc(2025, 10, 31), utc(2025, 11, 4))
    assert times == [
        utc(2025, 10, 31, 6, 30),
        utc(2025, 11, 1, 6, 30),
        utc(2025, 11, 2, 7, 30),  # 02:30 EST, after the repeated hour
        utc(2025, 11, 3, 7, 30),
    ]


def test_a_repeated_wall_time_fires_at_its_first_occurrence() -> None:
    times = fires(cron("30 1 * * *"), utc(2025, 11, 1, 12), utc(2025, 11, 3, 12))
    assert times == [utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)]  # 01:30 EDT, then EST


def test_an_every_hour_expression_keeps_its_pace_through_the_repeated_hour() -> None:
    times = fires(cron("0 * * * *"), utc(2025, 11, 2, 3, 30), utc(2025, 11, 2, 8))
    assert times == [utc(2025, 11, 2, h) for h in (4, 5, 6, 7, 8)]  # 00, 01 EDT, 01 EST, 02, 03


def test_skipped_wall_times_collapse_into_one_firing() -> None:
    times = fires(cron("*/20 2,3 * * *"), utc(2025, 3, 9, 5), utc(2025, 3, 9, 8))
    assert times == [utc(2025, 3, 9, 7, 0), utc(2025, 3, 9, 7, 20), utc(2025, 3, 9, 7, 40)]


def test_wall_to_instants() -> None:
    assert wall_to_instants(datetime(2025, 3, 9, 2, 30), NEW_YORK) == [utc(2025, 3, 9, 7)]
    assert wall_to_instants(datetime(2025, 11, 2, 1, 30), NEW_YORK, both_folds=True) == [
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 2, 6, 30),
    ]
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # a 30-minute jump
    assert wall_to_instants(datetime(2025, 10, 5, 2, 15), lord_howe) == [
        datetime(2025, 10, 5, 2, 30, tzinfo=lord_howe).astimezone(UTC)
    ]


def test_cron_interval_is_previous_fire_time_to_fire_time() -> None:
    timetable = cron("0 6 * * 1-5", ZoneInfo("Europe/Madrid"))
    monday = utc(2025, 6, 2, 4)  # 06:00 CEST
    assert timetable.is_fire_time(monday)
    assert timetable.interval_for(monday) == (utc(2025, 5, 30, 4), monday)  # since Friday
    assert timetable.latest_at_or_before(monday + timedelta(hours=1)) == monday
    assert timetable.latest_at_or_before(monday - timedelta(microseconds=1)) == utc(2025, 5, 30, 4)


def test_cron_start_and_end_bound_fire_times() -> None:
    timetable = cron(
        "0 * * * *", ZoneInfo("UTC"), start=utc(2025, 1, 1, 10), end=utc(2025, 1, 1, 12)
    )
    assert fires(timetable, utc(2025, 1, 1), utc(2025, 1, 2)) == [
        utc(2025, 1, 1, 10),
        utc(2025, 1, 1, 11),
        utc(2025, 1, 1, 12),
    ]
    assert timetable.interval_for(utc(2025, 1, 1, 10)) == (utc(2025, 1, 1, 9), utc(2025, 1, 1, 10))
    assert timetable.latest_at_or_before(utc(2025, 1, 1, 9, 59)) is None
    assert timetable.latest_at_or_before(utc(2025, 1, 3)) == utc(2025, 1, 1, 12)


def test_interval_is_aligned_on_the_epoch_or_on_start() -> None:
    every_30s = IntervalTimetable(timedelta(seconds=30))
    assert every_30s.next_after(utc(2025, 1, 1, 0, 0, 10)) == utc(2025, 1, 1, 0, 0, 30)
    assert every_30s.next_after(utc(2025, 1, 1, 0, 0, 30)) == utc(2025, 1, 1, 0, 1)
    assert every_30s.latest_at_or_before(utc(2025, 1, 1, 0, 0, 30)) == utc(2025, 1, 1, 0, 0, 30)
    assert every_30s.interval_for(utc(2025, 1, 1, 0, 1)) == (
        utc(2025, 1, 1, 0, 0, 30),
        utc(2025, 1, 1, 0, 1),
    )
    anchored = IntervalTimetable(timedelta(hours=1), start=utc(2025, 1, 1, 0, 7))
    assert anchored.next_after(utc(2024, 12, 31)) == utc(2025, 1, 1, 0, 7)
    assert anchored.next_after(utc(2025, 1, 1, 0, 7)) == utc(2025, 1, 1, 1, 7)
    assert anchored.latest_at_or_before(utc(2025, 1, 1, 0, 6)) is None


def test_one_off_fires_once_over_a_point_interval() -> None:
    at = utc(2027, 1, 1)
    timetable = OneOffTimetable(at)
    assert timetable.next_after(utc(2026, 12, 31)) == at
    assert timetable.next_after(at) is None
    assert timetable.latest_at_or_before(utc(2027, 6, 1)) == at
    assert timetable.interval_for(at) == (at, at)
