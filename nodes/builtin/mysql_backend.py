"""MariaDB and MySQL behind ``sql_query`` (mysqlclient: decision 0019).

Rows stream through an unbuffered result (``SSCursor``: the server sends them as the client
reads, nothing is held whole), in :class:`RowBatch` batches, on a connection of its own that is
closed afterwards (no session state is ever shared between queries).

What the wrapper enforces by itself:

- **One reading statement.** The driver connects without multi-statement support, and the
  query must begin with ``SELECT``, ``WITH``, ``VALUES``, ``TABLE`` or ``(``. A read-only
  transaction alone would not do: a DDL statement commits it implicitly and runs outside it.
- **A read-only transaction** (``START TRANSACTION READ ONLY``) that is rolled back.
- **The time limit**, twice: the server's (``max_statement_time`` on MariaDB,
  ``max_execution_time`` on MySQL, set for the session; a query cannot run ``SET``) and a
  watchdog that runs ``KILL QUERY`` from a second connection a second after it. Both count the
  whole read, because the server streams the rows while the statement runs.
- **The database guard**: the URL's parameters and the host's addresses
  (:func:`nodes.dbguard.mysql_target`); the driver connects to a checked address.

What it cannot enforce, and a read-only account must: ``SELECT ... INTO OUTFILE`` and
``LOAD_FILE()`` (the ``FILE`` privilege), stored procedures or functions with effects, and
whatever ``SUPER`` allows - see ``manage.py checkconnections``.

Values: DECIMAL is ``Decimal``; DATETIME a naive ``datetime`` (a wall-clock time, as stored);
TIMESTAMP an aware ``datetime`` in UTC (the session runs in UTC, so the instant is exact);
DATE ``date``; TIME its text (``'-12:30:00'``: it is a duration that may exceed a day); BIT an
``int``; YEAR and the integer types ``int``; FLOAT/DOUBLE ``float``; MySQL's JSON type the
parsed value; MariaDB's JSON (a LONGTEXT alias the protocol cannot tell from text) the parsed
value when the column is declared ``json`` in ``columns``, text otherwise; binary strings and
BLOBs ``bytes``; everything else text.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from typing import Any

import MySQLdb
import MySQLdb.converters
import MySQLdb.cursors
import orjson
from MySQLdb.constants import FIELD_TYPE

from nodes import dbguard
from nodes.builtin.sql_backends import WATCHDOG_GRACE_S, StatementWatchdog, _batches, _Redactor
from nodes.jsonbody import dumps
from nodes.sdk.batches import RowBatch
from nodes.sdk.errors import NodeError

#: Server errors that mean the statement's time limit ended it (MariaDB, MySQL 5.7, MySQL 8).
TIMEOUT_ERRORS = frozenset({1969, 1907, 3024})
#: ``KILL QUERY`` (from the watchdog) and a connection lost under it.
INTERRUPTED_ERRORS = frozenset({1317, 2013})
#: Server errors worth a retry: too many connections, shutdown, lock waits, deadlocks,
#: network errors, a killed connection.
TRANSIENT_ERRORS = frozenset({1040, 1053, 1152, 1153, 1158, 1159, 1160, 1161, 1203, 1205, 1213,
                              1226, 1927, 4031})  # fmt: skip

_LEADING = re.compile(
    r"""\s+ | --(?:\s[^\n]*)?(?:\n|$) | \#[^\n]*(?:\n|$) | /\*(?![!+]|M!).*?\*/ | \(""",
    re.VERBOSE | re.DOTALL,
)
_READING = frozenset({"select", "with", "values", "table"})


def check_reading_statement(query: str) -> None:
    """Raise a permanent :class:`NodeError` unless ``query`` is one reading statement: its
    first word (after comments and opening parentheses) is SELECT, WITH, VALUES or TABLE."""
    position = 0
    while match := _LEADING.match(query, position):
        position = match.end()
    rest = query[position:]
    if rest.startswith(("/*!", "/*M!", "/*+")):
        raise NodeError(
            "MariaDB/MySQL queries may not begin with an executable comment (/*! ... */)",
            permanent=True,
        )
    word = re.match(r"[A-Za-z]+", rest)
    if word is None or word.group(0).lower() not in _READING:
        raise NodeError(
            "MariaDB/MySQL queries must be one SELECT statement (or WITH, VALUES, TABLE): "
            "other statements could commit the read-only transaction",
            permanent=True,
        )


def _timestamp(text: str) -> datetime | None:
    value = MySQLdb.converters.DateTime_or_None(text)
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


def _bit(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _json(text: str | bytes) -> Any:
    return orjson.loads(text)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: Field-type conversions that differ from the driver's defaults (see the module docstring).
CONVERTERS: dict[int, Callable[[Any], Any]] = {
    FIELD_TYPE.TIMESTAMP: _timestamp,
    FIELD_TYPE.TIME: _text,
    FIELD_TYPE.BIT: _bit,
    FIELD_TYPE.JSON: _json,
}


def connect(url: str, connect_timeout: int | None = None) -> Any:
    """A new connection to the URL's host at an address the database guard checked just now
    (tried in order), in UTC, without multi-statements or ``LOCAL INFILE``, autocommit off."""
    target = dbguard.mysql_target(url)
    failure: MySQLdb.Error | None = None
    for address in target.addresses:
        options: dict[str, Any] = {"database": target.database} if target.database else {}
        try:
            conn = MySQLdb.connect(
                host=address,
                port=target.port,
                user=target.user,
                password=target.password,
                charset=target.charset,
                connect_timeout=connect_timeout or target.connect_timeout,
                multi_statements=False,
                local_infile=False,
                autocommit=False,
                **options,
            )
        except MySQLdb.OperationalError as exc:
            if _code(exc) in (2002, 2003):  # refused or unreachable: try the next address
                failure = exc
                continue
            raise
        conn.converter.update(CONVERTERS)
        return conn
    assert failure is not None
    raise failure


def is_mariadb(conn: Any) -> bool:
    return "mariadb" in str(conn.get_server_info()).lower()


def _code(exc: BaseException) -> int:
    code = exc.args[0] if exc.args else 0
    return code if isinstance(code, int) else 0


def _message(exc: BaseException) -> str:
    if len(exc.args) >= 2 and isinstance(exc.args[1], str):
        return f"{exc.args[1]} (error {exc.args[0]})"
    return str(exc) or type(exc).__name__


def _redacted(redact: _Redactor, exc: BaseException) -> str:
    return redact.redactor.redact(_message(exc).replace(redact.url, "***"))


def kill_query(url: str, thread_id: int) -> None:
    """``KILL QUERY`` the statement of connection ``thread_id`` from a second connection (the
    same account may always end its own statements). Best effort: errors are swallowed."""
    with contextlib.suppress(MySQLdb.Error, NodeError):
        side = connect(url, connect_timeout=5)
        try:
            side.cursor().execute("KILL QUERY %s", [thread_id])
        finally:
            side.close()


class KillQueryWatchdog(StatementWatchdog):
    """The statement watchdog for MariaDB/MySQL: it cancels with ``KILL QUERY``."""

    def __init__(self, url: str, thread_id: int, limit_s: float) -> None:
        self._url = url
        self._thread_id = thread_id
        super().__init__(None, limit_s)  # type: ignore[arg-type]

    def _cancel(self) -> None:
        kill_query(self._url, self._thread_id)


def mysql_value(value: Any) -> Any:
    """A parameter value as mysqlclient binds it: aware datetimes in UTC (the session's zone),
    objects as JSON text, UUIDs as text; lists and tuples stay (``IN %(ids)s``)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, dict):
        return dumps(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(mysql_value(item) for item in value)
    return value


def _session_settings(conn: Any, timeout_s: float) -> tuple[str, list[Any]]:
    # The server drops a client that does not read for net_write_timeout: keep it past the limit.
    write_timeout = min(31_536_000, int(timeout_s) + 60)
    if is_mariadb(conn):
        limit = "max_statement_time = %s"
        value: float | int = timeout_s
    else:
        limit = "max_execution_time = %s"
        value = max(1, round(timeout_s * 1000))
    return (
        f"SET SESSION time_zone = '+00:00', net_write_timeout = %s, {limit}",
        [write_timeout, value],
    )


def _parse_json_columns(
    batches: Iterator[RowBatch], columns: Collection[str]
) -> Iterator[RowBatch]:
    """Parse the text of the named columns as JSON (MariaDB's JSON columns are text)."""
    indexes: list[int] | None = None
    for batch in batches:
        if indexes is None:
            indexes = [i for i, name in enumerate(batch.names) if name in columns]
        if indexes:
            rows = [list(row) for row in batch.rows]
            for row in rows:
                for i in indexes:
                    if isinstance(row[i], str | bytes):
                        row[i] = orjson.loads(row[i])
            batch = RowBatch(batch.names, [tuple(row) for row in rows])
        yield batch


def begin_read_only(conn: Any, timeout_s: float) -> None:
    """The session in UTC under the time limit, in a read-only transaction."""
    setup = conn.cursor()
    setup.execute(*_session_settings(conn, timeout_s))
    setup.execute("START TRANSACTION READ ONLY")
    setup.close()


def node_error(
    exc: MySQLdb.Error, redact: _Redactor, timeout_s: float, fired: bool = False
) -> NodeError:
    """A driver error as a :class:`NodeError`: the time limit (``fired``: the watchdog ended
    the statement) or an unavailable server may pass on a retry, anything else will not."""
    code = _code(exc)
    if code in TIMEOUT_ERRORS or (fired and code in INTERRUPTED_ERRORS):
        return NodeError(
            f"the query was cancelled after the statement timeout ({timeout_s:g} s)",
            permanent=False,
        )
    if code >= 2000 or code in TRANSIENT_ERRORS:
        return NodeError(f"database unavailable: {_redacted(redact, exc)}", permanent=False)
    return NodeError(f"query failed: {_redacted(redact, exc)}", permanent=True)


def mysql_rows(
    url: str,
    query: str,
    params: dict[str, Any] | None,
    *,
    batch_size: int,
    timeout_s: float,
    is_cancelled: Callable[[], bool],
    json_columns: Collection[str] = (),
) -> Iterator[RowBatch]:
    """Rows from MariaDB or MySQL: one reading statement in a read-only transaction, under
    the time limit, streamed from the server in batches."""
    check_reading_statement(query)
    redact = _Redactor(url)
    values = None if params is None else {k: mysql_value(v) for k, v in params.items()}
    try:
        conn = connect(url)
    except MySQLdb.Error as exc:
        raise NodeError(
            f"database unavailable: {_redacted(redact, exc)}", permanent=False
        ) from None
    streaming = False
    watchdog: KillQueryWatchdog | None = None
    try:
        begin_read_only(conn, timeout_s)
        watchdog = KillQueryWatchdog(url, conn.thread_id(), timeout_s + WATCHDOG_GRACE_S)
        cursor = conn.cursor(MySQLdb.cursors.SSCursor)
        with watchdog.armed():
            streaming = True
            cursor.execute(query, values)
            batches = _batches(cursor, batch_size, is_cancelled)
            if json_columns:
                batches = _parse_json_columns(batches, set(json_columns))
            yield from batches
            streaming = False
        cursor.close()
        conn.rollback()  # never committed: nothing the query did in the transaction persists
    except MySQLdb.Error as exc:
        streaming = False  # the server ended the statement
        fired = watchdog is not None and watchdog.fired
        raise node_error(exc, redact, timeout_s, fired) from None
    finally:
        if watchdog is not None:
            watchdog.close()
        if streaming:
            # Abandoned mid-read (cancelled, or the consumer stopped): end the statement on the
            # server rather than read the rest of its rows.
            kill_query(url, conn.thread_id())
        with contextlib.suppress(MySQLdb.Error):
            conn.close()
