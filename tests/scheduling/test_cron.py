"""Cron expressions: what parses, what is refused (naming the field), and how days combine."""

from __future__ import annotations

from datetime import date

import pytest

from scheduling.cron import CronError, parse_cron


@pytest.mark.parametrize(
    ("text", "minutes", "hours"),
    [
        ("*/5 * * * *", tuple(range(0, 60, 5)), tuple(range(24))),
        ("0 6 * * 1-5", (0,), (6,)),
        ("15,45 9-17/4 * * *", (15, 45), (9, 13, 17)),
        ("5/20 0 * * *", (5, 25, 45), (0,)),
        ("  30   2 * * *  ", (30,), (2,)),
        ("@hourly", (0,), tuple(range(24))),
        ("@daily", (0,), (0,)),
    ],
)
def test_valid_expressions(text: str, minutes: tuple[int, ...], hours: tuple[int, ...]) -> None:
    expression = parse_cron(text)
    assert expression.minutes == minutes
    assert expression.hours == hours


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("61 * * * *", "cron.minute: 61 is out of range 0-59"),
        ("* 24 * * *", "cron.hour: 24 is out of range 0-23"),
        ("* * 0 * *", "cron.day_of_month: 0 is out of range 1-31"),
        ("* * * 13 *", "cron.month: 13 is out of range 1-12"),
        ("* * * * 8", "cron.day_of_week: 8 is out of range 0-7"),
        ("*/0 * * * *", "cron.minute: step '0' must be a positive number"),
        ("30-10 * * * *", "cron.minute: range 30-10 is backwards"),
        ("x * * * *", "cron.minute: 'x' is not a number"),
        ("* * * foo *", "cron.month: 'foo' is not a number or a name (jan, ...)"),
        ("1,,2 * * * *", "cron.minute: empty item in '1,,2'"),
        ("* * * *", "cron: expected 5 fields (minute hour day_of_month month day_of_week), got 4"),
        ("", "cron: an expression is required, e.g. '*/5 * * * *'"),
        ("@reboot", "cron: unknown macro '@reboot'"),
    ],
)
def test_invalid_expressions_name_the_field(text: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(text)
    assert str(caught.value).startswith(message)


def test_names_and_sunday_as_seven() -> None:
    expression = parse_cron("0 0 * jan-mar mon-fri")
    assert expression.months == {1, 2, 3}
    assert expression.weekdays == {1, 2, 3, 4, 5}
    assert parse_cron("0 0 * * 7").weekdays == {0}


def test_day_of_month_and_day_of_week_combine_like_vixie_cron() -> None:
    either = parse_cron("0 0 13 * 5")  # the 13th, or any Friday
    assert either.matches_date(date(2025, 6, 13))  # a Friday the 13th
    assert either.matches_date(date(2025, 6, 6))  # a Friday
    assert either.matches_date(date(2025, 5, 13))  # a Tuesday the 13th
    assert not either.matches_date(date(2025, 6, 10))
    fridays = parse_cron("0 0 * * 5")  # day of month unrestricted: Fridays only
    assert fridays.matches_date(date(2025, 6, 6))
    assert not fridays.matches_date(date(2025, 6, 7))


def test_fields_for_celery_crontab_are_numeric_and_compact() -> None:
    fields = parse_cron("*/15 6-9 * jan,feb mon-fri").fields()
    assert fields == {
        "minute": "0,15,30,45",
        "hour": "6-9",
        "day_of_month": "*",
        "month": "1-2",
        "day_of_week": "1-5",
    }
