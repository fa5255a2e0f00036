"""Checks of a schedule's settings, shared by the admin, the API and flow files.

``check_schedule(obj)`` reads model-named attributes (``kind``, ``cron``, ``timezone``,
``every_seconds``, ``at``, ``start_at``, ``end_at``, ``overlap``, ``catchup``, ``params``)
and returns ``{field: message}``; empty when the schedule is valid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from scheduling.cron import CronError, parse_cron
from scheduling.durations import MAX_SECONDS
from scheduling.timetable import CronTimetable

_EARLY = datetime(2000, 1, 1, tzinfo=UTC)
#: Times a schedule may name (keeps the date arithmetic far from datetime's limits).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=1)
def iana_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: Any) -> str | None:
    """An error message, or None when ``name`` is an IANA timezone."""
    if not isinstance(name, str) or name not in iana_timezones():
        return f"'{name}' is not an IANA timezone (e.g. 'Europe/Madrid', 'UTC')"
    return None


def check_cron(text: Any) -> CronError | None:
    """The expression's first problem, including one that never fires (e.g. 30 February)."""
    try:
        expression = parse_cron(text)
    except CronError as exc:
        return exc
    if CronTimetable(expression, ZoneInfo("UTC")).next_after(_EARLY) is None:
        return CronError("", f"'{text}' never fires: no date matches its days and months")
    return None


def check_schedule(obj: Any) -> dict[str, str]:
    errors: dict[str, str] = {}
    kind = getattr(obj, "kind", None)
    if kind == "cron":
        _check_cron_kind(obj, errors)
    elif kind == "interval":
        every = getattr(obj, "every_seconds", None)
        if not every:
            errors["every_seconds"] = "an interval schedule needs 'every' (e.g. 30s, 5m, 1h)"
        elif not 1 <= every <= MAX_SECONDS:
            errors["every_seconds"] = f"must be between 1 second and {MAX_SECONDS} seconds"
    elif kind == "one_off":
        if getattr(obj, "at", None) is None:
            errors["at"] = "a one-off schedule needs 'at', the time it fires"
        for name in ("start_at", "end_at"):
            if getattr(obj, name, None) is not None:
                errors[name] = "start and end apply to cron and interval schedules only"
    else:
        errors["kind"] = f"'{kind}' is not a schedule kind (cron, interval, one_off)"
    for name, applies in (("cron", "cron"), ("every_seconds", "interval"), ("at", "one_off")):
        if kind != applies and getattr(obj, name, None) not in (None, "") and kind:
            errors.setdefault(name, f"only a {applies} schedule takes this field")
    for name in ("at", "start_at", "end_at"):
        moment = getattr(obj, name, None)
        if moment is not None and not EARLIEST <= moment < LATEST:
            errors.setdefault(name, "must be between 1970 and 2999")
    start, end = getattr(obj, "start_at", None), getattr(obj, "end_at", None)
    if start is not None and end is not None and end <= start:
        errors.setdefault("end_at", "end must be after start")
    if getattr(obj, "catchup", False) and getattr(obj, "overlap", None) == "skip":
        errors["catchup"] = (
            "catch-up runs every missed interval, which overlap 'skip' would drop: "
            "use overlap 'queue' or 'allow'"
        )
    if not isinstance(getattr(obj, "params", {}), dict):
        errors["params"] = "params must be a JSON object"
    return errors


def _check_cron_kind(obj: Any, errors: dict[str, str]) -> None:
    problem = check_cron(getattr(obj, "cron", ""))
    if problem is not None:
        errors["cron"] = str(problem)
    tz_problem = check_timezone(getattr(obj, "timezone", "UTC"))
    if tz_problem:
        errors["timezone"] = tz_problem
