"""The ``sql_query`` node against a real PostgreSQL, and SQLite from a temporary file."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql
from pydantic import ValidationError

from nodes.builtin import pg_pool
from nodes.builtin.sql_query import SqlQueryNode
from nodes.sdk import ConnectionInfo, ExecutionContext, FieldType, NodeError

PG_URL = os.environ.get("FLOWPLATFORM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "s3cret-Pa55word"

ROWS = [
    (1, Decimal("10.50"), date(2024, 1, 1), datetime(2024, 1, 1, 9, tzinfo=UTC), {"tier": "gold"}, "Zoë"),
    (2, Decimal("99.99"), date(2024, 1, 2), datetime(2024, 1, 2, 9, tzinfo=UTC), [1, 2], "東京 ☕"),
    (3, None, None, None, None, None),
    (4, Decimal("0.01"), date(2024, 1, 4), datetime(2024, 1, 4, 9, tzinfo=UTC), {}, "O'Brien"),
    (5, Decimal("-1.00"), date(2024, 1, 5), datetime(2024, 1, 5, 9, tzinfo=UTC), None, ""),
]  # fmt: skip


def with_password(url: str, port: int | None = None) -> str:
    """``url`` with a password (ignored by trust auth) and optionally another port."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    netloc = f"{user}:{PASSWORD}@{parts.hostname}:{port or parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def context_for(url: str, **kwargs: Any) -> ExecutionContext:
    return ExecutionContext(connection_lookup=lambda name: ConnectionInfo(name, url), **kwargs)


def run(config: dict[str, Any], url: str = PG_URL, **kwargs: Any) -> list[list[dict[str, Any]]]:
    node = SqlQueryNode({"connection": "warehouse", **config})
    return list(node.execute(context_for(url, **kwargs), {}))


@pytest.fixture
def orders() -> Iterator[str]:
    """A freshly created table of orders; dropped afterwards."""
    table = f"nodes_test_orders_{uuid.uuid4().hex[:8]}"
    create = sql.SQL(
        "create table {} (id int primary key, amount numeric(12, 2), day date, "
        "at timestamptz, payload jsonb, name text)"
    ).format(sql.Identifier(table))
    insert = sql.SQL("insert into {} values (%s, %s, %s, %s, %s, %s)").format(sql.Identifier(table))
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(create)
        with conn.cursor() as cursor:
            rows = [
                (*row[:4], None if row[4] is None else json.dumps(row[4]), row[5]) for row in ROWS
            ]
            cursor.executemany(insert, rows)
    yield table
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(table)))


def test_streams_rows_as_dicts_in_batches_of_batch_size(orders: str) -> None:
    batches = run({"query": f"select * from {orders} order by id", "batch_size": 2})
    assert [len(batch) for batch in batches] == [2, 2, 1]
    first, second, null_row = batches[0][0], batches[0][1], batches[1][0]
    assert first == {
        "id": 1,
        "amount": Decimal("10.50"),
        "day": date(2024, 1, 1),
        "at": datetime(2024, 1, 1, 9, tzinfo=UTC),
        "payload": {"tier": "gold"},
        "name": "Zoë",
    }
    assert second["payload"] == [1, 2] and second["name"] == "東京 ☕"
    assert null_row == {
        "id": 3,
        "amount": None,
        "day": None,
        "at": None,
        "payload": None,
        "name": None,
    }


def test_empty_result_yields_nothing(orders: str) -> None:
    assert run({"query": f"select * from {orders} where false"}) == []


def test_binds_params_even_with_quotes_and_run_params_win(orders: str) -> None:
    query = f"select id from {orders} where name = %(name)s or id = %(id)s order by id"
    rows = run({"query": query, "params": {"name": "O'Brien", "id": 1}})
    assert [r["id"] for b in rows for r in b] == [1, 4]
    rows = run({"query": query, "params": {"name": "O'Brien", "id": 1}}, params={"id": 2})
    assert [r["id"] for b in rows for r in b] == [2, 4]


def test_binds_run_values_such_as_the_data_interval(orders: str) -> None:
    query = (
        f"select id from {orders} where at >= %(interval_start)s and at < %(interval_end)s "
        "and name like 'Z%%'"
    )
    rows = run(
        {"query": query},
        interval_start=datetime(2024, 1, 1, tzinfo=UTC),
        interval_end=datetime(2024, 1, 3, tzinfo=UTC),
    )
    assert rows == [[{"id": 1}]]


def test_a_parameter_without_value_fails_permanently_naming_it(orders: str) -> None:
    with pytest.raises(NodeError, match="query parameter 'status' has no value") as caught:
        run({"query": f"select * from {orders} where name = %(status)s"})
    assert caught.value.permanent


def names_in(table: str) -> list[str | None]:
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(
            sql.SQL("select name from {} order by id").format(sql.Identifier(table))
        )
        return [row[0] for row in rows]


@pytest.mark.parametrize(
    "statement",
    [
        "insert into {t} (id) values (99) returning id",
        "update {t} set name = 'x' returning id",
        "with gone as (delete from {t} returning id) select * from gone",
    ],
)
def test_writing_statements_fail_permanently(orders: str, statement: str) -> None:
    with pytest.raises(NodeError, match="query failed") as caught:
        run({"query": statement.format(t=orders)})
    assert caught.value.permanent
    assert names_in(orders) == [row[5] for row in ROWS]


def test_the_transaction_is_read_only_even_for_writes_hidden_in_a_select(orders: str) -> None:
    # A SELECT passes the cursor's own checks; only the read-only transaction stops the write.
    function = f"{orders}_write"
    body = sql.SQL(
        "create function {}() returns int language sql as $$ update {} set name = 'x'; select 1 $$"
    ).format(sql.Identifier(function), sql.Identifier(orders))
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(body)
    try:
        with pytest.raises(NodeError, match="read-only transaction") as caught:
            run({"query": f'select "{function}"()'})
        assert caught.value.permanent
        assert names_in(orders) == [row[5] for row in ROWS]
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("drop function {}()").format(sql.Identifier(function)))


def test_statement_timeout_cancels_slow_queries_not_permanently() -> None:
    started = time.monotonic()
    with pytest.raises(NodeError, match="statement timeout") as caught:
        run({"query": "select pg_sleep(5)", "statement_timeout_s": 0.2})
    assert not caught.value.permanent
    assert time.monotonic() - started < 4


def test_syntax_errors_fail_permanently_without_the_password() -> None:
    with pytest.raises(NodeError) as caught:
        run({"query": "selec 1"}, url=with_password(PG_URL))
    assert caught.value.permanent
    assert 'syntax error at or near "selec"' in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_undefined_tables_fail_permanently() -> None:
    with pytest.raises(NodeError, match="does not exist") as caught:
        run({"query": "select * from nodes_test_no_such_table"})
    assert caught.value.permanent


def test_connection_failures_may_be_retried_and_hide_the_url() -> None:
    url = with_password(PG_URL, port=closed_port())
    with pytest.raises(NodeError, match="database unavailable") as caught:
        run({"query": "select 1"}, url=url)
    assert not caught.value.permanent
    assert PASSWORD not in str(caught.value) and url not in str(caught.value)


def test_stops_between_batches_when_the_run_is_cancelled(orders: str) -> None:
    fetched: list[int] = []
    node = SqlQueryNode({"connection": "w", "query": f"select id from {orders}", "batch_size": 2})
    out = node.execute(context_for(PG_URL, is_cancelled=lambda: bool(fetched)), {})
    fetched.append(len(next(out)))
    with pytest.raises(NodeError, match="cancelled") as caught:
        next(out)
    assert caught.value.permanent


def test_other_schemes_are_refused() -> None:
    with pytest.raises(NodeError, match="not PostgreSQL, MariaDB/MySQL or SQLite") as caught:
        run({"query": "select 1"}, url="mssql://root:pw@db/x")
    assert caught.value.permanent
    assert "pw@db" not in str(caught.value)


def test_config_validation_and_schema() -> None:
    with pytest.raises(ValidationError) as caught:
        SqlQueryNode({"connection": "w", "query": "select 1", "batch_size": 0})
    assert caught.value.errors()[0]["loc"] == ("batch_size",)
    node = SqlQueryNode({"connection": "w", "query": "select 1 as n", "columns": {"n": "integer"}})
    assert node.output_schema({}).fields == {"n": FieldType.INTEGER}
    assert not SqlQueryNode({"connection": "w", "query": "select 1"}).output_schema({}).known
    assert SqlQueryNode.describe()["inputs"] == []


@pytest.fixture
def sqlite_url(tmp_path: Path, settings: Any) -> str:
    settings.FLOWPLATFORM_SQLITE_DIRS = [str(tmp_path)]  # SQLite files only in allowed places
    path = tmp_path / "demo.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("create table orders (id integer, amount numeric, name text, day text)")
        conn.executemany(
            "insert into orders values (?, ?, ?, ?)",
            [
                (1, 10.5, "Zoë", "2024-01-01"),
                (2, None, None, None),
                (3, 7, "O'Brien", "2024-01-03"),
            ],
        )
    conn.close()
    return f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/...


def test_sqlite_streams_dict_rows_in_batches(sqlite_url: str) -> None:
    batches = run({"query": "select * from orders order by id", "batch_size": 2}, url=sqlite_url)
    assert batches == [
        [{"id": 1, "amount": 10.5, "name": "Zoë", "day": "2024-01-01"},
         {"id": 2, "amount": None, "name": None, "day": None}],
        [{"id": 3, "amount": 7, "name": "O'Brien", "day": "2024-01-03"}],
    ]  # fmt: skip


def test_sqlite_binds_named_params_and_run_values(sqlite_url: str) -> None:
    query = (
        "select id from orders where (name = %(name)s or amount > %(min)s) "
        "and day >= %(interval_start)s and name like '%%'"
    )
    rows = run(
        {"query": query, "params": {"name": "O'Brien", "min": Decimal("10")}},
        url=sqlite_url,
        interval_start=date(2024, 1, 1),
    )
    assert rows == [[{"id": 1}, {"id": 3}]]


def test_sqlite_is_read_only(sqlite_url: str) -> None:
    with pytest.raises(NodeError, match=r"readonly|read-only") as caught:
        run({"query": "insert into orders (id) values (9)"}, url=sqlite_url)
    assert caught.value.permanent


def test_sqlite_errors_are_permanent(sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="syntax error") as caught:
        run({"query": "selec 1"}, url=sqlite_url)
    assert caught.value.permanent
    with pytest.raises(NodeError, match="unable to open") as caught:
        run({"query": "select 1"}, url=f"sqlite:///{tmp_path}/missing.sqlite3")
    assert caught.value.permanent


def test_sqlite_statement_timeout(sqlite_url: str) -> None:
    slow = "with recursive n(i) as (select 1 union all select i + 1 from n) select count(*) from n"
    with pytest.raises(NodeError, match="statement timeout") as caught:
        run({"query": slow, "statement_timeout_s": 0.1}, url=sqlite_url)
    assert not caught.value.permanent


# --- parallel reads: slices of a key column ------------------------------------------------
@pytest.fixture
def keyed_table() -> Iterator[str]:
    """1,000 rows with ids 1..1000 (three of them twice) and two rows without an id."""
    name = f"keyed_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("create table {} (id int, label text)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL(
                "insert into {} select g, 'row ' || g from generate_series(1, 1000) g"
                " union all select g, 'again ' || g from generate_series(300, 302) g"
                " union all select null, 'no id ' || g from generate_series(1, 2) g"
            ).format(sql.Identifier(name))
        )
        try:
            yield name
        finally:
            conn.execute(sql.SQL("drop table {}").format(sql.Identifier(name)))


def read_slices(config: dict[str, Any], rows: int) -> tuple[list[Any], list[list[dict[str, Any]]]]:
    node = SqlQueryNode({"connection": "warehouse", "partition_rows": rows, **config})
    context = context_for(PG_URL)
    planned = node.plan_slices(context, rows)
    assert planned is not None
    slices = list(planned)
    return slices, [
        [record for batch in node.execute_slice(context, part) for record in batch]
        for part in slices
    ]


def test_slices_cover_every_row_once_in_ranges_of_about_the_rows_asked(keyed_table: str) -> None:
    query = f"select id, label from {keyed_table} where label like %(pattern)s order by id"
    slices, parts = read_slices(
        {"query": query, "params": {"pattern": "%"}, "partition_column": "id"}, 300
    )
    # Ordered ids: 1..299, then 300, 301 and 302 twice each, then 303..1000: every 300th
    # row starts a slice (rows 1, 301, 601, 901 have ids 1, 300, 598, 898).
    assert slices == [
        {"from": None, "to": "300"},
        {"from": "300", "to": "598"},
        {"from": "598", "to": "898"},
        {"from": "898", "to": None},
    ]
    labels = [record["label"] for part in parts for record in part]
    assert len(labels) == len(set(labels)) == 1005  # every row once, the id-less ones too
    assert [len(part) for part in parts] == [299, 301, 300, 105]
    assert {record["label"] for record in parts[-1] if record["id"] is None} == {
        "no id 1",
        "no id 2",
    }
    for part in parts:  # within a slice, the query's own order
        ids = [record["id"] for record in part if record["id"] is not None]
        assert ids == sorted(ids)


def test_a_literal_percent_survives_slicing_a_query_without_parameters(keyed_table: str) -> None:
    query = f"select id, label from {keyed_table} where label like 'row 1%'"
    _slices, parts = read_slices({"query": query, "partition_column": "id"}, 50)
    assert sorted(r["id"] for part in parts for r in part) == sorted(
        [1, 10, 1000, *range(11, 20), *range(100, 200)]
    )


def test_slicing_needs_rows_and_a_plain_column_name() -> None:
    with pytest.raises(ValidationError, match="partition_column needs partition_rows"):
        SqlQueryNode(
            {
                "connection": "w",
                "query": "select 1",
                "partition_rows": None,
                "partition_column": "id",
            }
        )
    # unset, partition_rows is "auto": the column is used when the run partitions
    SqlQueryNode({"connection": "w", "query": "select 1", "partition_column": "id"})
    with pytest.raises(ValidationError, match="partition_column"):
        SqlQueryNode(
            {"connection": "w", "query": "select 1", "partition_rows": 5, "partition_column": "a;b"}
        )


def test_an_unknown_partition_column_is_a_permanent_error(keyed_table: str) -> None:
    node = SqlQueryNode(
        {
            "connection": "warehouse",
            "query": f"select id from {keyed_table}",
            "partition_rows": 10,
            "partition_column": "nope",
        }
    )
    planned = node.plan_slices(context_for(PG_URL), 10)
    assert planned is not None
    with pytest.raises(NodeError, match=r"query failed: .*nope") as raised:
        list(planned)
    assert raised.value.permanent


def test_sqlite_sources_are_read_once_not_sliced(sqlite_url: str) -> None:
    node = SqlQueryNode(
        {
            "connection": "warehouse",
            "query": "select 1 as id",
            "partition_rows": 10,
            "partition_column": "id",
        }
    )
    assert node.plan_slices(context_for(sqlite_url), 10) is None


# --- connections kept between queries --------------------------------------------------------
@pytest.fixture
def pool() -> Iterator[None]:
    pg_pool.clear()
    yield
    pg_pool.clear()


def backend_pid(query: str = "select pg_backend_pid() as pid") -> int:
    return run({"query": query})[0][0]["pid"]


@pytest.mark.usefixtures("pool")
def test_a_connection_is_kept_for_the_next_query_with_its_session_reset() -> None:
    first = run({"query": "select pg_backend_pid() as pid,"
                 " set_config('search_path', 'nowhere', false) as changed"})  # fmt: skip
    second = run({"query": "select pg_backend_pid() as pid,"
                  " current_setting('search_path') as search_path"})  # fmt: skip
    assert second[0][0]["pid"] == first[0][0]["pid"]
    assert second[0][0]["search_path"] != "nowhere"


@pytest.mark.usefixtures("pool")
def test_a_kept_connection_found_broken_is_replaced_before_anything_is_read() -> None:
    pid = backend_pid()
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while admin.execute("select 1 from pg_stat_activity where pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.01)
    assert backend_pid() != pid


@pytest.mark.usefixtures("pool")
def test_a_connection_is_not_kept_after_a_failed_or_abandoned_query() -> None:
    pid = backend_pid()
    with pytest.raises(NodeError, match="division by zero"):
        run({"query": "select pg_backend_pid() as pid, 1 / 0 as boom"})
    after_error = backend_pid()
    assert after_error != pid
    node = SqlQueryNode(
        {
            "connection": "warehouse",
            "query": "select g from generate_series(1, 10) g",
            "batch_size": 2,
        }
    )
    stream = node.execute(context_for(PG_URL), {})
    next(stream)
    stream.close()  # the consumer stopped early (e.g. the run was cancelled)
    assert backend_pid() != after_error


@pytest.mark.usefixtures("pool")
def test_idle_connections_expire_whatever_url_is_used_next(monkeypatch: pytest.MonkeyPatch) -> None:
    pid = backend_pid()
    monkeypatch.setattr(pg_pool, "MAX_IDLE_S", 0.0)
    other = f"{PG_URL}?application_name=flowplatform-other"
    run({"query": "select 1 as one"}, url=other)  # another URL: the first one's connection expires
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        deadline = time.monotonic() + 10
        while admin.execute("select 1 from pg_stat_activity where pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the expired connection was not closed"
            time.sleep(0.01)


@pytest.mark.parametrize(
    ("server_zone", "read_as"),
    [
        ("Etc/UTC", UTC),  # UTC under another name: read as UTC itself
        ("Europe/Paris", ZoneInfo("Europe/Paris")),  # any other zone: as the server has it
    ],
)
def test_timestamps_keep_their_instant_and_a_utc_server_reads_them_as_utc(
    orders: str, server_zone: str, read_as: Any
) -> None:
    url = f"{PG_URL}?options=-c%20TimeZone%3D{server_zone.replace('/', '%2F')}"
    query = f"select at, current_setting('TimeZone') as zone from {orders} order by id"
    (batch,) = run({"query": query}, url=url)
    assert [record["at"] for record in batch] == [row[3] for row in ROWS]
    assert {record["at"].tzinfo for record in batch if record["at"]} == {read_as}
    assert batch[0]["zone"] == ("UTC" if read_as is UTC else server_zone)
