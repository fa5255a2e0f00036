"""``sql_query`` against the real MariaDB (127.0.0.1:3306): streaming, types, parameters, the
read-only rules, the time limit, errors and their redaction."""

from __future__ import annotations

import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from nodes.builtin import mysql_backend
from nodes.builtin.mysql_backend import KillQueryWatchdog, check_reading_statement
from nodes.builtin.sql_query import SqlQueryNode
from nodes.sdk import ConnectionInfo, ExecutionContext, NodeError
from nodes.sdk.node import RowBatch
from tests.conftest import wait_until
from tests.mariadb import execute
from tests.mariadb import mariadb_url as mariadb_url

PASSWORD = "s3cret-Pa55word"


def context_for(url: str, **kwargs: Any) -> ExecutionContext:
    return ExecutionContext(connection_lookup=lambda name: ConnectionInfo(name, url), **kwargs)


def batches(url: str, config: dict[str, Any], **kwargs: Any) -> Iterator[Any]:
    node = SqlQueryNode({"connection": "shop", **config})
    return node.execute(context_for(url, **kwargs), {})


def rows(url: str, query: str, **config: Any) -> list[dict[str, Any]]:
    return [row for batch in batches(url, {"query": query, **config}) for row in batch]


def fails(url: str, query: str, **config: Any) -> NodeError:
    with pytest.raises(NodeError) as caught:
        rows(url, query, **config)
    return caught.value


@pytest.fixture
def table(mariadb_url: str) -> Iterator[str]:
    """A fresh table name in the run's database; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    execute(f"DROP TABLE IF EXISTS {name}")


def running_queries(marker: str) -> list[tuple[Any, ...]]:
    return [
        row
        for row in execute(
            "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE INFO IS NOT NULL"
        )
        if marker in row[1] and "PROCESSLIST" not in row[1]
    ]


# --- streaming ---------------------------------------------------------------------------------


def test_200000_rows_stream_in_batches_in_flat_memory(mariadb_url: str, table: str) -> None:
    execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(12,2),"
        " at DATETIME(6), pad VARCHAR(250))"
    )
    execute(
        f"INSERT INTO {table} SELECT seq, CONCAT('customer ', seq), seq / 100,"
        " TIMESTAMPADD(SECOND, seq, '2026-01-01'), REPEAT('x', 250) FROM seq_1_to_200000"
    )
    # ~60 MB to send: far more than the socket buffers hold, so the server is still sending
    # while the first batches are read.
    query = f"SELECT id, name, amount, at, pad FROM {table} ORDER BY id /* streaming-{table} */"
    stream = batches(mariadb_url, {"query": query, "batch_size": 5000})
    tracemalloc.start()
    try:
        first = next(stream)
        # The server is still sending: the rows are not all read ahead into the client.
        assert running_queries(f"streaming-{table}"), "the query ended before it was read"
        sizes, total, last_id = [len(first)], 0, first[-1]["id"]
        for batch in stream:
            assert isinstance(batch, RowBatch)
            assert batch[0]["id"] == last_id + 1  # in order, nothing skipped
            last_id = batch[-1]["id"]
            sizes.append(len(batch))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = sum(sizes)
    assert total == 200_000 and last_id == 200_000
    assert set(sizes) == {5000}
    # 200,000 rows held at once would take well over 100 MB of Python objects.
    assert peak < 12 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert first[0] == {
        "id": 1,
        "name": "customer 1",
        "amount": Decimal("0.01"),
        "at": datetime(2026, 1, 1, 0, 0, 1),
        "pad": "x" * 250,
    }


def test_an_abandoned_read_ends_the_statement_on_the_server(mariadb_url: str) -> None:
    marker = f"abandoned-{uuid.uuid4().hex[:8]}"
    query = f"SELECT seq, SLEEP(0.01) AS s FROM seq_1_to_100000 /* {marker} */"
    stream = batches(mariadb_url, {"query": query, "batch_size": 10})
    next(stream)
    assert running_queries(marker)
    stream.close()  # the consumer stops: the generator is closed
    wait_until(lambda: not running_queries(marker), 10, message="the query still runs")


def test_a_cancelled_run_stops_between_batches(mariadb_url: str) -> None:
    cancelled = threading.Event()
    stream = batches(
        mariadb_url,
        {"query": "SELECT seq FROM seq_1_to_1000", "batch_size": 100},
        is_cancelled=cancelled.is_set,
    )
    assert len(next(stream)) == 100
    cancelled.set()
    with pytest.raises(NodeError, match="cancelled") as caught:
        next(stream)
    assert caught.value.permanent


def test_an_empty_result_yields_nothing(mariadb_url: str) -> None:
    assert list(batches(mariadb_url, {"query": "SELECT 1 AS a FROM DUAL WHERE FALSE"})) == []


# --- types ---------------------------------------------------------------------------------------


def test_column_types_map_to_record_values(mariadb_url: str, table: str) -> None:
    execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, amount DECIMAL(12,2), big BIGINT UNSIGNED,"
        " ratio DOUBLE, flag TINYINT(1), bits BIT(9), day DATE, wall DATETIME(6),"
        " instant TIMESTAMP(3) NULL, span TIME, yr YEAR, doc JSON, raw VARBINARY(8),"
        " name VARCHAR(40), kind ENUM('a', 'b'))"
    )
    # Written in another zone: the instant read back is the same.
    execute(
        f"SET STATEMENT time_zone = '+02:00' FOR INSERT INTO {table} VALUES (1, 12.50, 18446744073709551615, 0.25, 1, b'100000001',"
        " '2024-02-29', '2024-03-01 12:30:45.123456', FROM_UNIXTIME(1700000000.5),"
        """ '-838:59:59', 2024, '{"tier": "gold", "n": [1, 2]}', x'00ff', 'Zoë 東京 ☕', 'b'),"""
        " (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    query = f"SELECT * FROM {table} ORDER BY id"
    typed, empty = rows(mariadb_url, query, columns={"id": "integer", "doc": "json"})
    assert typed == {
        "id": 1,
        "amount": Decimal("12.50"),
        "big": 18446744073709551615,
        "ratio": 0.25,
        "flag": 1,
        "bits": 257,
        "day": date(2024, 2, 29),
        "wall": datetime(2024, 3, 1, 12, 30, 45, 123456),
        "instant": datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC),
        "span": "-838:59:59",
        "yr": 2024,
        "doc": {"tier": "gold", "n": [1, 2]},
        "raw": b"\x00\xff",
        "name": "Zoë 東京 ☕",
        "kind": "b",
    }
    assert set(empty.values()) == {None, 2}
    # MariaDB's JSON is text on the wire: undeclared, it stays text.
    (undeclared,) = rows(mariadb_url, f"SELECT doc FROM {table} WHERE id = 1")
    assert undeclared == {"doc": '{"tier": "gold", "n": [1, 2]}'}


# --- parameters ----------------------------------------------------------------------------------


def test_params_are_bound_even_with_quotes_and_run_values_bind_too(
    mariadb_url: str, table: str
) -> None:
    execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40), at TIMESTAMP NULL)")
    execute(
        f"INSERT INTO {table} VALUES (1, 'O''Brien', '2024-01-01 09:00:00'),"
        " (2, 'x\\\\'' OR 1=1 -- ', '2024-01-02 09:00:00'), (3, '100%', '2024-01-05 09:00:00')"
    )
    execute(f"UPDATE {table} SET at = CONVERT_TZ(at, @@session.time_zone, '+00:00')")
    query = f"SELECT id FROM {table} WHERE name = %(name)s OR id IN %(ids)s ORDER BY id"
    found = rows(mariadb_url, query, params={"name": "O'Brien", "ids": [3]})
    assert [r["id"] for r in found] == [1, 3]
    injected = rows(mariadb_url, query, params={"name": "' OR 1=1 -- ", "ids": [0]})
    assert injected == []
    # Run values (aware datetimes) compare as UTC instants; a literal % is written %%.
    node = SqlQueryNode(
        {
            "connection": "shop",
            "query": f"SELECT id FROM {table} WHERE at >= %(interval_start)s"
            " AND at < %(interval_end)s AND name NOT LIKE '%%\\%%%%' ORDER BY id",
        }
    )
    context = context_for(
        mariadb_url,
        interval_start=datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=1))),
        interval_end=datetime(2024, 1, 6, tzinfo=UTC),
    )
    assert [r["id"] for b in node.execute(context, {}) for r in b] == [1, 2]


def test_a_parameter_without_a_value_fails_permanently_naming_it(mariadb_url: str) -> None:
    error = fails(mariadb_url, "SELECT %(status)s AS s")
    assert "query parameter 'status' has no value" in str(error)
    assert error.permanent


def test_a_literal_percent_needs_no_doubling_without_params(mariadb_url: str) -> None:
    assert rows(mariadb_url, "SELECT '100%' AS p") == [{"p": "100%"}]


# --- read-only -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO {t} VALUES (2)",
        "UPDATE {t} SET id = 3",
        "DELETE FROM {t}",
        "CREATE TABLE {t}_new (id INT)",  # DDL would commit the transaction implicitly
        "DROP TABLE {t}",
        "  -- a comment\n /* another */ TRUNCATE {t}",
        "/*! DROP TABLE {t} */ SELECT 1",
        "/*M!100000 DROP TABLE {t} */ SELECT 1",
        "SET STATEMENT max_statement_time = 0 FOR SELECT 1",
        "CALL mysql.some_procedure()",
        "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE {t}",
    ],
)
def test_only_reading_statements_run(mariadb_url: str, table: str, statement: str) -> None:
    execute(f"CREATE TABLE {table} (id INT)")
    execute(f"INSERT INTO {table} VALUES (1)")
    error = fails(mariadb_url, statement.format(t=table))
    assert error.permanent
    assert execute(f"SELECT id FROM {table}") == [(1,)]


def test_a_second_statement_is_a_syntax_error(mariadb_url: str, table: str) -> None:
    execute(f"CREATE TABLE {table} (id INT)")
    error = fails(mariadb_url, f"SELECT 1; DROP TABLE {table}")
    assert error.permanent and "syntax" in str(error)
    assert execute(f"SELECT COUNT(*) FROM {table}") == [(0,)]


def test_an_insert_inside_the_query_fails_in_the_read_only_transaction(
    mariadb_url: str, table: str
) -> None:
    execute(f"CREATE TABLE {table} (id INT)")
    function = f"{table}_add"
    execute(
        f"CREATE FUNCTION {function}() RETURNS INT MODIFIES SQL DATA"
        f" BEGIN INSERT INTO {table} VALUES (99); RETURN 1; END"
    )
    try:
        error = fails(mariadb_url, f"SELECT {function}() AS n")
        assert error.permanent and "READ ONLY" in str(error)
        assert execute(f"SELECT COUNT(*) FROM {table}") == [(0,)]
    finally:
        execute(f"DROP FUNCTION IF EXISTS {function}")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "  select 1",
        "(SELECT 1) UNION (SELECT 2)",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "-- leading comment\nSELECT 1",
        "# hash comment\nSELECT 1",
        "/* block */ SELECT 1",
        "VALUES (1)",
        "TABLE t",
    ],
)
def test_reading_statements_pass_the_check(query: str) -> None:
    check_reading_statement(query)


def test_user_variables_and_locks_do_not_outlive_the_query(mariadb_url: str) -> None:
    rows(mariadb_url, "SELECT @leak := 42 AS v, GET_LOCK('flowplatform-test', 0) AS l")
    assert rows(mariadb_url, "SELECT @leak AS v") == [{"v": None}]
    assert execute("SELECT IS_FREE_LOCK('flowplatform-test')") == [(1,)]


# --- time limit ----------------------------------------------------------------------------------


def test_a_slow_query_is_ended_by_its_time_limit_not_permanently(mariadb_url: str) -> None:
    started = time.monotonic()
    error = fails(mariadb_url, "SELECT SLEEP(30) AS s", statement_timeout_s=1)
    took = time.monotonic() - started
    assert "statement timeout (1 s)" in str(error) and not error.permanent
    assert took < 5, f"took {took:.1f} s"


def test_the_watchdog_kills_a_statement_the_server_would_let_run(mariadb_url: str) -> None:
    conn = mysql_backend.connect(mariadb_url)
    try:
        cursor = conn.cursor()
        cursor.execute("SET SESSION max_statement_time = 0")  # no server limit
        started = time.monotonic()
        watchdog = KillQueryWatchdog(mariadb_url, conn.thread_id(), 0.5)
        with (
            watchdog,
            watchdog.armed(),
            pytest.raises(mysql_backend.MySQLdb.OperationalError) as caught,
        ):
            cursor.execute("SELECT SLEEP(30)")
            cursor.fetchall()
        assert watchdog.fired
        assert caught.value.args[0] in mysql_backend.INTERRUPTED_ERRORS
        assert time.monotonic() - started < 5
    finally:
        conn.close()


# --- errors and redaction ------------------------------------------------------------------------


def with_password(url: str, port: int | None = None) -> str:
    rest = url.split("://", 1)[1].split("@", 1)[1]
    if port is not None:
        rest = f"127.0.0.1:{port}/" + rest.split("/", 1)[1]
    return f"mysql://root:{PASSWORD}@{rest}"


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_syntax_errors_fail_permanently_naming_the_fault(mariadb_url: str) -> None:
    error = fails(mariadb_url, "SELECT FROM nowhere")
    assert error.permanent and "syntax" in str(error) and "error 1064" in str(error)


def test_unknown_tables_and_columns_fail_permanently(mariadb_url: str) -> None:
    assert fails(mariadb_url, "SELECT * FROM no_such_table").permanent
    assert fails(mariadb_url, "SELECT no_such_column FROM DUAL").permanent


def test_a_server_that_is_down_may_be_retried_and_the_password_is_hidden(
    mariadb_url: str,
) -> None:
    url = with_password(mariadb_url, closed_port())
    error = fails(url, "SELECT 1")
    assert not error.permanent and "database unavailable" in str(error)
    assert PASSWORD not in str(error) and url not in str(error)


def test_a_wrong_password_is_never_shown(mariadb_url: str) -> None:
    error = fails(with_password(mariadb_url), "SELECT 1")
    assert "Access denied" in str(error)
    for secret in (PASSWORD, PASSWORD[:8], PASSWORD[-8:]):
        assert secret not in str(error)


def test_non_reading_sql_is_refused_before_connecting() -> None:
    url = f"mysql://root:{PASSWORD}@127.0.0.1:{closed_port()}/x"
    error = fails(url, "DELETE FROM t")
    assert error.permanent and "SELECT" in str(error) and PASSWORD not in str(error)


def test_the_mariadb_scheme_works_like_mysql(mariadb_url: str) -> None:
    url = mariadb_url.replace("mysql://", "mariadb://", 1)
    assert rows(url, "SELECT DATABASE() AS db") == [{"db": mariadb_url.rsplit("/", 1)[1]}]
