"""Database drivers behind ``sql_query``: PostgreSQL (psycopg 3) and SQLite (the embedded demo).

Each backend streams the rows of one read-only query as dicts, in batches, and turns driver
errors into :class:`NodeError` (permanent or not) whose message never holds the connection URL
or its password. Both reach only what the database guard allows (:mod:`nodes.dbguard`).

What the PostgreSQL wrapper enforces by itself: a read-only transaction that is always rolled
back (so nothing a query does inside it persists: large objects, ``set_config``), one
statement per query (a server-side cursor over a SELECT), and the statement time limit, both
as the server's ``statement_timeout`` and as a client-side watchdog that cancels the statement
(a query can lift the server setting with ``set_config``, not the watchdog). What it cannot
enforce, and a read-only role must: functions with effects outside the transaction (server
files, other sessions, ``dblink``) - see ``manage.py checkconnections``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg

from nodes import dbguard
from nodes.builtin import pg_pool
from nodes.jsonbody import dumps
from nodes.redaction import Redactor, url_secrets
from nodes.sdk.batches import RowBatch
from nodes.sdk.errors import NodeError
from nodes.timezones import UTC_NAMES

# ``%%`` is a literal percent sign; ``%(name)s`` a named parameter (psycopg's syntax).
_PLACEHOLDER = re.compile(r"%%|%\((\w+(?:\.\w+)*)\)s")


def placeholders(query: str) -> list[str]:
    """The parameter names a query uses, in order of first use."""
    names = (m.group(1) for m in _PLACEHOLDER.finditer(query) if m.group(1))
    return list(dict.fromkeys(names))


def _batches(
    cursor: Any,
    size: int,
    is_cancelled: Callable[[], bool],
    timed: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> Iterator[RowBatch]:
    """Row batches from a cursor that yields tuples: no dict per row unless a node asks.
    Each fetch runs inside ``timed()`` (the statement time limit)."""
    names: list[str] | None = None
    while True:
        if is_cancelled():
            raise NodeError("cancelled", permanent=True)
        with timed():
            rows = cursor.fetchmany(size)
        if not rows:
            return
        if names is None:
            names = [column[0] for column in cursor.description]
        yield RowBatch(names, rows)
        if len(rows) < size:
            return  # a short batch is the last: no round trip to learn that


class _Redactor:
    """Removes the connection URL and every form of its password from driver messages."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redactor = Redactor(url_secrets(url))

    def __call__(self, exc: BaseException) -> str:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return self.redactor.redact(text.replace(self.url, "***"))


def _as_parameterised(query: str, params: dict[str, Any] | None) -> str:
    """The query in the form that takes named parameters (a literal ``%`` written ``%%``)."""
    return query if params is not None else query.replace("%", "%%")


def _subquery(query: str) -> str:
    # A newline before the closing parenthesis: the query may end with a -- comment.
    return f"({query.strip().rstrip(';').strip()}\n)"


def postgres_slice_bounds(
    url: str,
    query: str,
    params: dict[str, Any] | None,
    *,
    column: str,
    rows_per_slice: int,
    timeout_s: float,
    is_cancelled: Callable[[], bool],
) -> Iterator[str]:
    """The first ``column`` value (as text) of every ``rows_per_slice`` rows of the query's
    output ordered by ``column``: the lower bounds of slices of that many rows, each yielded as
    soon as the database reaches it (a repeated value is yielded once)."""
    # The query is the node's own SQL (run as it is, read-only); every value is bound. No
    # ORDER BY outside the window: it would make the database sort before the first bound.
    col, sub = _identifier(column), _subquery(_as_parameterised(query, params))
    bounds_query = (
        f"SELECT s.k, s.n FROM (SELECT flowplatform_q.{col}::text AS k,"  # noqa: S608
        f" row_number() OVER (ORDER BY flowplatform_q.{col}) AS n"
        f" FROM {sub} AS flowplatform_q WHERE flowplatform_q.{col} IS NOT NULL) AS s"
        " WHERE mod(s.n - 1, %(flowplatform_rows)s) = 0"
    )
    values = {**(params or {}), "flowplatform_rows": rows_per_slice}
    last: tuple[str, int] | None = None
    for batch in postgres_rows(
        url, bounds_query, values, batch_size=1, timeout_s=timeout_s, is_cancelled=is_cancelled
    ):
        for row in batch:
            if last is not None and row["n"] <= last[1]:
                raise NodeError(
                    "the database returned the partition bounds out of order", permanent=True
                )
            if last is None or row["k"] != last[0]:
                yield row["k"]
            last = (row["k"], row["n"])


def slice_query(
    query: str,
    params: dict[str, Any] | None,
    column: str,
    low: Any,
    high: Any,
    quote_name: Callable[[str], str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The query restricted to ``low <= column < high`` (either end open when ``None``; the
    last slice, open above, also takes the rows whose ``column`` is NULL). ``quote_name``: how
    the database quotes a name (PostgreSQL's double quotes by default)."""
    col = f"flowplatform_q.{(quote_name or _identifier)(column)}"
    conditions = []
    if low is not None:
        conditions.append(f"{col} >= %(flowplatform_low)s")
    if high is not None:
        conditions.append(f"{col} < %(flowplatform_high)s")
    where = " AND ".join(conditions) or "TRUE"
    if high is None:
        where = f"({where}) OR {col} IS NULL"
    sub = _subquery(_as_parameterised(query, params))
    sliced = f"SELECT * FROM {sub} AS flowplatform_q WHERE {where}"  # noqa: S608 - the node's SQL
    return sliced, {**(params or {}), "flowplatform_low": low, "flowplatform_high": high}


def limited_query(
    query: str, params: dict[str, Any] | None, limit: int
) -> tuple[str, dict[str, Any]]:
    """The query's first ``limit`` rows: the query as a subquery under a ``LIMIT`` whose value
    is a bound parameter (PostgreSQL and SQLite stop reading there)."""
    sub = _subquery(_as_parameterised(query, params))
    limited = f"SELECT * FROM {sub} AS flowplatform_q LIMIT %(flowplatform_limit)s"  # noqa: S608
    return limited, {**(params or {}), "flowplatform_limit": int(limit)}


def _identifier(name: str) -> str:
    """A name as a quoted PostgreSQL (and SQLite) identifier."""
    return '"' + name.replace('"', '""') + '"'


#: Server time zones that are UTC under another name. Read under the name ``UTC`` itself,
#: timestamps come back with ``datetime.timezone.utc``: the same instants and offsets, without
#: a zone lookup per value (about a third less time to read a timestamp column, and encoded
#: in C for the hand-off). Any other zone is left as the server has it.
UTC_ALIASES = frozenset(name.encode() for name in UTC_NAMES - {"UTC"})


#: How much longer than the statement timeout the client-side watchdog waits before it cancels
#: (the server's own timeout normally ends the statement first).
WATCHDOG_GRACE_S = 1.0


class StatementWatchdog:
    """Cancels the statement running on ``conn`` once it has run for ``limit_s``, from a thread
    of its own. Arm it around each round trip (:meth:`armed`); close it when done."""

    def __init__(self, conn: psycopg.Connection, limit_s: float) -> None:
        self._conn = conn
        self._limit_s = limit_s
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._closed = False
        self.fired = False
        self._thread = threading.Thread(
            target=self._watch, name="flowplatform-sql-watchdog", daemon=True
        )
        self._thread.start()

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        with self._cond:
            self._deadline = time.monotonic() + self._limit_s
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._deadline = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def __enter__(self) -> StatementWatchdog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _watch(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                    self._deadline is None or self._deadline > time.monotonic()
                ):
                    left = None if self._deadline is None else self._deadline - time.monotonic()
                    self._cond.wait(left)
                if self._closed:
                    return
                self._deadline = None
                self.fired = True
            self._cancel()

    def _cancel(self) -> None:
        """Cancel the statement running now (from the watchdog's thread)."""
        with contextlib.suppress(psycopg.Error):
            self._conn.cancel_safe(timeout=5.0)


def postgres_rows(
    url: str,
    query: str,
    params: dict[str, Any] | None,
    *,
    batch_size: int,
    timeout_s: float,
    is_cancelled: Callable[[], bool],
) -> Iterator[RowBatch]:
    """Rows from PostgreSQL: read-only transaction, statement timeout, server-side cursor, on a
    connection kept from an earlier query when there is one (``pg_pool``)."""
    with (
        postgres_errors(url, timeout_s),
        pg_pool.connection(url, read_only_begin(timeout_s)) as conn,
    ):
        with StatementWatchdog(conn, timeout_s + WATCHDOG_GRACE_S) as watchdog:
            name = f"flowplatform_{uuid.uuid4().hex[:12]}"
            with conn.cursor(name=name) as cursor:
                cursor.itersize = batch_size
                with watchdog.armed():
                    cursor.execute(query, params)
                yield from _batches(cursor, batch_size, is_cancelled, watchdog.armed)
        # Rolled back, never committed: nothing the query did in the transaction persists.
        conn.rollback()


def read_only_begin(timeout_s: float) -> Callable[[psycopg.Connection], None]:
    """What starts a read-only transaction with the statement timeout (``pg_pool``'s begin)."""
    timeout_ms = str(max(1, round(timeout_s * 1000)))

    def begin(conn: psycopg.Connection) -> None:
        # A read-only transaction whose statement timeout is set in it, not in the startup
        # packet: connection poolers drop startup options.
        conn.read_only = True
        if conn.pgconn.parameter_status(b"TimeZone") in UTC_ALIASES:
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('TimeZone', 'UTC', true)",
                [timeout_ms],
            )
        else:
            conn.execute("SELECT set_config('statement_timeout', %s, true)", [timeout_ms])

    return begin


@contextlib.contextmanager
def postgres_errors(url: str, timeout_s: float) -> Iterator[None]:
    """Driver errors as :class:`NodeError`: a timeout or an unavailable server may pass on a
    retry, any other failure will not; messages redacted."""
    try:
        yield
    except psycopg.errors.QueryCanceled:
        raise NodeError(
            f"the query was cancelled after the statement timeout ({timeout_s:g} s)",
            permanent=False,
        ) from None
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise NodeError(f"database unavailable: {_Redactor(url)(exc)}", permanent=False) from None
    except psycopg.Error as exc:
        raise NodeError(f"query failed: {_Redactor(url)(exc)}", permanent=True) from None


def _sqlite_value(value: Any) -> Any:
    # sqlite3 binds only str/int/float/bytes/None; the rest goes in as text.
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return dumps(value)
    if value is None or isinstance(value, str | int | float | bytes):
        return value
    return str(value)


def _sqlite_query(query: str) -> str:
    return _PLACEHOLDER.sub(lambda m: f":{_sqlite_name(m.group(1))}" if m.group(1) else "%", query)


def _sqlite_name(name: str) -> str:
    """SQLite's named parameters have no dots: ``payload.id`` binds as ``payload__id``."""
    return name.replace(".", "__")


def sqlite_rows(
    url: str,
    query: str,
    params: dict[str, Any] | None,
    *,
    batch_size: int,
    timeout_s: float,
    is_cancelled: Callable[[], bool],
) -> Iterator[RowBatch]:
    """Rows from a SQLite file (``sqlite:///relative`` or ``sqlite:////absolute``), read-only."""
    redact = _Redactor(url)
    try:
        path = str(dbguard.sqlite_path(url))
    except dbguard.DatabaseURLError as exc:
        raise NodeError(str(exc), permanent=True) from None
    deadline = time.monotonic() + timeout_s
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA query_only = ON")
            # SQLite has no statement timeout: abort from the progress handler instead.
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            if params is not None:
                query = _sqlite_query(query)
                params = {_sqlite_name(k): _sqlite_value(v) for k, v in params.items()}
            cursor = conn.execute(query, params or {})
            yield from _batches(cursor, batch_size, is_cancelled)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        message = redact(exc)
        if message == "interrupted":
            raise NodeError(
                f"the query was cancelled after the statement timeout ({timeout_s:g} s)",
                permanent=False,
            ) from None
        transient = "locked" in message or "busy" in message
        raise NodeError(f"query failed: {message}", permanent=not transient) from None
