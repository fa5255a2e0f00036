"""``sql_query``'s automatic partitioning: how many rows a query will return, and the key
ranges it can be read in, asked of the database before anything is read (decision 0030).

- :func:`estimated_rows`: the planner's estimate of the query's rows, with its parameters
  bound (PostgreSQL ``EXPLAIN (FORMAT JSON)``; MariaDB/MySQL ``EXPLAIN``). Kept a short while
  per process and query, so a flow run again and again asks once.
- :func:`key_slices`: for a plain single-table select (:mod:`nodes.builtin.sql_query_shape`)
  whose output holds an integer column leading a B-tree index of the table (the primary key
  first), ranges of that column of about the rows asked: the bounds come from the query's
  smallest and largest key (two index look-ups under the query's own ``WHERE``), the cuts from
  the planner's histogram of the column (PostgreSQL: ranges of equal rows, gaps in the keys
  included) or at equal widths. The first range is open below and the last open above, so
  every row of the query falls in exactly one whatever the statistics say.

Every statement runs in a read-only transaction under the statement timeout; values are bound
and names quoted. A failure is a ``NodeError`` the caller turns into "read it whole".
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import MySQLdb
import MySQLdb.cursors
from psycopg.rows import dict_row

from nodes.builtin import pg_pool
from nodes.builtin.mysql_backend import (
    begin_read_only,
    check_reading_statement,
    connect,
    mysql_value,
    node_error,
)
from nodes.builtin.sql_backends import (
    WATCHDOG_GRACE_S,
    StatementWatchdog,
    _identifier,
    _Redactor,
    postgres_errors,
    read_only_begin,
)
from nodes.builtin.sql_query_shape import PlainSelect, plain_select

#: The longest an estimate may take (planning only; the statement timeout when lower).
ESTIMATE_TIMEOUT_S = 10.0
#: How long an estimate is reused for the same query and parameters, per process.
ESTIMATE_KEPT_S = 30.0
_ESTIMATES_KEPT = 256
#: At most this many ranges: the platform's limit of partitions per output.
MAX_SLICES = 1000

Run = Callable[[str, dict[str, Any] | None], list[dict[str, Any]]]

_lock = threading.Lock()
_estimates: OrderedDict[tuple[str, ...], tuple[float, int | None]] = OrderedDict()


# --- sessions ------------------------------------------------------------------------------
@contextlib.contextmanager
def session(url: str, mysql: bool, timeout_s: float, watched: bool = True) -> Iterator[Run]:
    """A read-only transaction on the database, as a function that runs one statement and
    returns its rows as dicts; rolled back at the end. ``watched``: on PostgreSQL, a watchdog
    also ends a statement that lifted its own timeout (needless when nothing is executed, as
    for ``EXPLAIN``)."""
    if mysql:
        with _mysql(url, timeout_s) as run:
            yield run
    else:
        with _postgres(url, timeout_s, watched) as run:
            yield run


@contextlib.contextmanager
def _postgres(url: str, timeout_s: float, watched: bool) -> Iterator[Run]:
    with (
        postgres_errors(url, timeout_s),
        pg_pool.connection(url, read_only_begin(timeout_s)) as conn,
    ):
        watchdog = StatementWatchdog(conn, timeout_s + WATCHDOG_GRACE_S) if watched else None
        armed = watchdog.armed if watchdog is not None else contextlib.nullcontext
        try:

            def run(statement: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
                with armed(), conn.cursor(row_factory=dict_row) as cursor:
                    cursor.execute(statement, params)
                    return cursor.fetchall()

            yield run
        finally:
            if watchdog is not None:
                watchdog.close()
        conn.rollback()


@contextlib.contextmanager
def _mysql(url: str, timeout_s: float) -> Iterator[Run]:
    redact = _Redactor(url)
    try:
        conn = connect(url)
    except MySQLdb.Error as exc:
        raise node_error(exc, redact, timeout_s) from None
    try:
        begin_read_only(conn, timeout_s)

        def run(statement: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
            values = None if params is None else {k: mysql_value(v) for k, v in params.items()}
            cursor = conn.cursor(MySQLdb.cursors.DictCursor)
            try:
                cursor.execute(statement, values)
                return list(cursor.fetchall())
            finally:
                cursor.close()

        yield run
        conn.rollback()
    except MySQLdb.Error as exc:
        raise node_error(exc, redact, timeout_s) from None
    finally:
        with contextlib.suppress(MySQLdb.Error):
            conn.close()


# --- row estimates -------------------------------------------------------------------------
def estimated_rows(
    url: str, mysql: bool, query: str, params: dict[str, Any] | None, timeout_s: float
) -> int | None:
    """The planner's estimate of the query's rows (``None``: it gave none), reused for
    ``ESTIMATE_KEPT_S`` per process. Raises ``NodeError`` when the database cannot say (and
    answers ``None`` for the same query until then)."""
    key = (url, str(mysql), query, repr(sorted((params or {}).items())))
    now = time.monotonic()
    with _lock:
        kept = _estimates.get(key)
        if kept is not None and now - kept[0] < ESTIMATE_KEPT_S:
            return kept[1]
    estimate = None  # (a failure is kept too: the next runs do not ask again at once)
    try:
        with session(url, mysql, min(timeout_s, ESTIMATE_TIMEOUT_S), watched=False) as run:
            estimate = _estimate(run, mysql, query, params)
    finally:
        with _lock:
            _estimates[key] = (now, estimate)
            _estimates.move_to_end(key)
            while len(_estimates) > _ESTIMATES_KEPT:
                _estimates.popitem(last=False)
    return estimate


def forget_estimates() -> None:
    """Drop every kept estimate."""
    with _lock:
        _estimates.clear()


def _estimate(run: Run, mysql: bool, query: str, params: dict[str, Any] | None) -> int | None:
    statement = query.strip().rstrip(";")
    if mysql:
        check_reading_statement(statement)
        return _mysql_estimate(run, statement, params)
    plan = run(f"EXPLAIN (FORMAT JSON) {statement}\n", params)[0]["QUERY PLAN"]
    return int(plan[0]["Plan"]["Plan Rows"])


def _mysql_estimate(run: Run, statement: str, params: dict[str, Any] | None) -> int | None:
    """The outer select's rows: the product, over its tables, of the rows each reads and the
    share of them it keeps (``filtered``, when the server gives it).

    InnoDB caps a range's estimate at half the table's rows, so a plain select reading a
    range at that cap may read anything up to the whole table: its estimate is then the
    table's rows (``information_schema.TABLES``)."""
    rows = [row for row in run(f"EXPLAIN {statement}\n", params) if row.get("id") == 1]
    estimate: float | None = None
    for row in rows:
        if row.get("rows") is not None:
            kept = float(row.get("filtered") or 100) / 100
            estimate = (estimate or 1) * float(row["rows"]) * kept
    plain = plain_select(statement, mysql=True)
    if plain is not None and len(rows) == 1 and rows[0].get("type") == "range":
        schema = plain.table[0].name if len(plain.table) == 2 else None
        table = run(_MYSQL_TABLE_ROWS, {"schema": schema, "table": plain.table[-1].name})
        total = table[0]["rows"] if table and table[0]["rows"] is not None else None
        if total is not None and estimate is not None and 2 * estimate >= total - 1:
            estimate = float(total)
    return None if estimate is None else int(estimate)


_MYSQL_TABLE_ROWS = """
SELECT TABLE_ROWS AS "rows" FROM information_schema.TABLES
WHERE TABLE_SCHEMA = COALESCE(%(schema)s, DATABASE()) AND TABLE_NAME = %(table)s
"""


# --- key ranges ----------------------------------------------------------------------------
def key_slices(
    url: str,
    mysql: bool,
    query: str,
    params: dict[str, Any] | None,
    rows_per_slice: int,
    timeout_s: float,
    column: str | None = None,
) -> list[dict[str, Any]] | None:
    """Ranges of a key column of the query's table, ``{"column": name, "from": low, "to":
    high}`` (``from`` included, ``to`` excluded, ``None`` open), of about ``rows_per_slice``
    rows each; ``None`` when the query is not a plain select or its table has no such key.

    ``column``: that column only (an expert's ``partition_column``, PostgreSQL), when it is an
    integer column leading a B-tree index of the table; ``None`` also when the planner has no
    histogram of it (a table never analyzed: the row estimate is a guess and ranges of equal
    widths could hold anything from none to all of the rows, so the caller counts rows
    instead), or when the estimate asks for more than ``MAX_SLICES`` ranges (whether the
    partitions are too many is then for the exact count to say, as before)."""
    plain = plain_select(query, mysql)
    if plain is None:
        return None
    with session(url, mysql, timeout_s) as run:
        key = _key(run, plain, column)
        if key is None:
            return None
        name, histogram = key
        if column is not None and len(set(histogram)) < 2:
            return None  # no statistics of the expert's column: its rows are counted instead
        low, high = _bounds(run, plain, name, params)
        estimate = _estimate(run, mysql, query, params)
    if low is None or high is None or estimate is None:
        return [{"column": name, "from": None, "to": None}]  # nothing to read: one range
    wanted = -(-estimate // rows_per_slice)
    if column is not None and wanted > MAX_SLICES:
        return None  # near or over the limit of partitions: counted, the exact answer decides
    count = max(1, min(MAX_SLICES, wanted, high - low + 1))
    edges: list[int | None] = [None, *cut_points(low, high, count, histogram), None]
    return [{"column": name, "from": a, "to": b} for a, b in itertools.pairwise(edges)]


def cut_points(low: int, high: int, count: int, histogram: list[int]) -> list[int]:
    """Up to ``count - 1`` increasing values in ``(low, high]`` that cut ``[low, high]`` into
    ``count`` ranges of about equal rows, by the planner's histogram of the column (bounds
    with equal rows between them, read as a piecewise-linear distribution, as dense as on
    average beyond its ends: rows added since the statistics). No histogram: equal widths."""
    bounds = sorted(set(histogram))
    if len(bounds) < 2:
        bounds = [low, high + 1]  # (a uniform distribution: equal widths)
    start, stop = _share_below(bounds, low), _share_below(bounds, high + 1)
    points = [round(_value_at(bounds, start + (stop - start) * i / count)) for i in range(1, count)]
    return sorted({point for point in points if low < point <= high})


def _share_below(bounds: list[int], value: float) -> float:
    """The share of the histogram's rows below ``value`` (beyond its ends: at the average
    density, so below 0 or above 1)."""
    buckets, width = len(bounds) - 1, bounds[-1] - bounds[0]
    if value <= bounds[0]:
        return (value - bounds[0]) / width
    if value >= bounds[-1]:
        return 1 + (value - bounds[-1]) / width
    j = bisect.bisect_right(bounds, value) - 1
    return (j + (value - bounds[j]) / (bounds[j + 1] - bounds[j])) / buckets


def _value_at(bounds: list[int], share: float) -> float:
    """The inverse of :func:`_share_below`."""
    buckets, width = len(bounds) - 1, bounds[-1] - bounds[0]
    if share <= 0:
        return bounds[0] + share * width
    if share >= 1:
        return bounds[-1] + (share - 1) * width
    j = min(int(share * buckets), buckets - 1)
    return bounds[j] + (share * buckets - j) * (bounds[j + 1] - bounds[j])


def _key(run: Run, plain: PlainSelect, column: str | None) -> tuple[str, list[int]] | None:
    """The key column (its name in the table) and the planner's histogram of it: the first
    that suits, or ``column`` when it does (PostgreSQL)."""
    if plain.mysql:
        if column is not None:
            return None  # (an expert's column: PostgreSQL only)
        names = _mysql_keys(run, plain)
        return next(((name, []) for name in names if plain.outputs(name)), None)
    table = ".".join(token.text for token in plain.table)
    for row in run(_PG_KEYS, {"table": table}):
        if (column is None or row["name"] == column) and plain.outputs(row["name"]):
            histogram = run(_PG_HISTOGRAM, row)
            return row["name"], _integers(histogram[0]["bounds"] if histogram else None)
    return None


# Integer columns leading a valid B-tree index of the table, the primary key first.
_PG_KEYS = """
SELECT a.attname AS name, n.nspname AS schema, c.relname AS "table"
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass(%(table)s) AND am.amname = 'btree' AND i.indisvalid
  AND i.indpred IS NULL AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
ORDER BY i.indisprimary DESC, i.indisunique DESC, a.attnotnull DESC, i.indnatts, a.attnum
"""
_PG_HISTOGRAM = """
SELECT histogram_bounds::text AS bounds FROM pg_stats
WHERE schemaname = %(schema)s AND tablename = %(table)s AND attname = %(name)s
ORDER BY inherited LIMIT 1
"""
_MYSQL_KEYS = """
SELECT s.COLUMN_NAME AS name FROM information_schema.STATISTICS s
JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA
  AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME
WHERE s.TABLE_SCHEMA = COALESCE(%(schema)s, DATABASE()) AND s.TABLE_NAME = %(table)s
  AND s.SEQ_IN_INDEX = 1 AND s.INDEX_TYPE = 'BTREE'
  AND c.DATA_TYPE IN ('tinyint', 'smallint', 'mediumint', 'int', 'bigint')
ORDER BY s.INDEX_NAME = 'PRIMARY' DESC, s.NON_UNIQUE, c.IS_NULLABLE = 'NO' DESC, s.INDEX_NAME
"""


def _mysql_keys(run: Run, plain: PlainSelect) -> list[str]:
    schema = plain.table[0].name if len(plain.table) == 2 else None
    rows = run(_MYSQL_KEYS, {"schema": schema, "table": plain.table[-1].name})
    return list(dict.fromkeys(str(row["name"]) for row in rows))


def _integers(text: str | None) -> list[int]:
    """PostgreSQL's text of an integer array (``{1,5,9}``) as a list."""
    if not text:
        return []
    return [int(value) for value in text.strip("{}").split(",") if value]


def _bounds(
    run: Run, plain: PlainSelect, column: str, params: dict[str, Any] | None
) -> tuple[int | None, int | None]:
    """The query's smallest and largest key: the first row of its table under its ``WHERE``,
    in the key's order each way (an index look-up, not a scan)."""
    key = _quote(column, plain.mysql)
    where = f"WHERE ({plain.where_text}\n) AND " if plain.where_text else "WHERE "
    # The query's own FROM and WHERE (parameters bound); the key a quoted name.
    first = f"SELECT {key} FROM {plain.from_text}\n{where}{key} IS NOT NULL ORDER BY {key}"  # noqa: S608
    row = run(f"SELECT ({first} LIMIT 1) AS low, ({first} DESC LIMIT 1) AS high", params)[0]
    low, high = row["low"], row["high"]
    return (None if low is None else int(low)), (None if high is None else int(high))


def quote_mysql(name: str) -> str:
    """A name as a quoted MariaDB/MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _quote(name: str, mysql: bool) -> str:
    return quote_mysql(name) if mysql else _identifier(name)
