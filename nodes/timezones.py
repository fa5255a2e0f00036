"""The time zone names that mean UTC: one list for every place that treats them as UTC itself.

A PostgreSQL server set to ``Etc/UTC`` (Debian's default) reports that name, and psycopg gives
``ZoneInfo("Etc/UTC")`` timestamps; the SQL source reads such a server under the name ``UTC``
instead, and the hand-off encodes a column in one of these zones as plain UTC timestamps.
Every name here is offset zero all year, with no daylight saving (a test checks it).
"""

from __future__ import annotations

UTC_NAMES = frozenset(
    {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"}
)
