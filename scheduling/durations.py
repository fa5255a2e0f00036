"""Interval lengths as people write them: ``30s``, ``5m``, ``1h30m``, ``1d`` (or plain seconds)."""

from __future__ import annotations

import re

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([dhms])")
_WHOLE = re.compile(r"^(?:\d+[dhms])+$")
#: Longest interval accepted (a year); anything longer is better written as a cron.
MAX_SECONDS = 366 * 86400


def parse_every(value: object) -> int:
    """Seconds in ``value`` (``"90s"``, ``"1h30m"``, or an integer); ValueError when invalid."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '30s', '5m', '1h' or '1d'")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and _WHOLE.match(value.strip().lower()):
        text = value.strip().lower()
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    else:
        raise ValueError(f"'{value}' is not a duration such as '30s', '5m', '1h30m' or '1d'")
    if seconds < 1:
        raise ValueError("must be at least 1 second")
    if seconds > MAX_SECONDS:
        raise ValueError("must be at most 366 days (use a cron expression for longer periods)")
    return seconds


def format_every(seconds: int) -> str:
    """The shortest single-unit spelling: 90 -> ``90s``, 3600 -> ``1h``, 5400 -> ``90m``."""
    for unit, size in _UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"  # pragma: no cover - the seconds unit always divides
