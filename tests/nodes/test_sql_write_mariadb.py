"""``sql_write`` into the real MariaDB: modes, write marks, redelivery, the swap, quoting,
save-time checks, and MariaDB -> PostgreSQL ``replace`` with a reader watching."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

pytest.importorskip("nodes.builtin.sql_write.node")

from nodes.builtin.sql_query import SqlQueryNode
from nodes.builtin.sql_write.dialect import dialect_for
from nodes.builtin.sql_write.mariadb import MariaDBDialect
from nodes.builtin.sql_write.node import SqlWriteNode
from nodes.sdk import (
    ConnectionInfo,
    ExecutionContext,
    FieldType,
    NodeError,
    RecordSchema,
)
from nodes.sdk.node import RowBatch
from tests.flows.helpers import add_connection
from tests.mariadb import admin_connection, execute, run_database
from tests.mariadb import mariadb_url as mariadb_url

PG_URL = os.environ.get("FLOWPLATFORM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "Sup3r-s3cret-pw"


def context_for(url: str, **kwargs: Any) -> ExecutionContext:
    kwargs.setdefault("run_id", uuid.uuid4().hex)
    kwargs.setdefault("node_key", "load")
    return ExecutionContext(connection_lookup=lambda name: ConnectionInfo(name, url), **kwargs)


def write(
    url: str,
    config: dict[str, Any],
    batches: Iterable[Any],
    context: ExecutionContext | None = None,
) -> list[dict[str, Any]]:
    node = SqlWriteNode({"connection": "target", **config})
    out = node.run(context or context_for(url), {"in": iter(batches)})
    return [summary for batch in out for summary in batch]


def people(count: int, start: int = 1, suffix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"Person {i}{suffix} ✓",
            "score": Decimal(i) / 4,
            "seen": datetime(2026, 1, 1 + i % 28, 9, tzinfo=UTC),
            "tags": {"n": i, "even": i % 2 == 0},
        }
        for i in range(start, start + count)
    ]


def rows_of(table: str) -> list[tuple[Any, ...]]:
    return execute(f"SELECT * FROM `{table}` ORDER BY id")


def tables() -> set[str]:
    found = execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        [run_database()],
    )
    return {row[0] for row in found}


@pytest.fixture
def customers(mariadb_url: str) -> Iterator[str]:
    """``customers (id INT PRIMARY KEY, name VARCHAR NOT NULL, score DECIMAL, seen DATETIME,
    tags JSON)`` in the run's database; dropped afterwards with any staging table."""
    name = f"customers_{uuid.uuid4().hex[:8]}"
    execute(
        f"CREATE TABLE `{name}` (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL,"
        " score DECIMAL(8,2), seen DATETIME(6), tags JSON) ENGINE = InnoDB"
    )
    yield name
    for table in tables():
        if table == name or table.startswith(("flowplatform_stage_", "flowplatform_old_")):
            execute(f"DROP TABLE IF EXISTS `{table}`")


# -- the dialect ---------------------------------------------------------------------------------


def test_mysql_and_mariadb_urls_use_the_mariadb_dialect() -> None:
    assert isinstance(dialect_for("mysql"), MariaDBDialect)
    assert isinstance(dialect_for("mariadb"), MariaDBDialect)


# -- insert --------------------------------------------------------------------------------------


def test_insert_writes_every_record_and_reports_each_batch(
    mariadb_url: str, customers: str
) -> None:
    records = people(12)
    summaries = write(
        mariadb_url, {"table": customers, "batch_size": 5}, [records[:7], records[7:]]
    )
    assert summaries == [
        {"batch": 0, "rows": 5, "inserted": 5, "updated": 0},
        {"batch": 1, "rows": 5, "inserted": 5, "updated": 0},
        {"batch": 2, "rows": 2, "inserted": 2, "updated": 0},
    ]
    stored = rows_of(customers)
    assert [row[0] for row in stored] == list(range(1, 13))
    assert stored[3][:4] == (4, "Person 4 ✓", Decimal("1.00"), datetime(2026, 1, 5, 9))
    assert stored[3][4] in ('{"n":4,"even":true}', '{"n": 4, "even": true}')


def test_aware_datetimes_are_written_as_utc(mariadb_url: str, customers: str) -> None:
    plus_two = timezone(timedelta(hours=2))
    record = {"id": 1, "name": "a", "seen": datetime(2026, 3, 1, 12, tzinfo=plus_two)}
    write(mariadb_url, {"table": customers}, [[record]])
    assert rows_of(customers)[0][3] == datetime(2026, 3, 1, 10)


def test_insert_takes_row_batches_in_any_column_order(mariadb_url: str, customers: str) -> None:
    batch = RowBatch(["name", "id"], [("Ann", 1), ("Bob", 2)])
    write(mariadb_url, {"table": customers}, [batch])
    assert [row[:2] for row in rows_of(customers)] == [(1, "Ann"), (2, "Bob")]


def test_large_batches_go_in_several_statements(mariadb_url: str, customers: str) -> None:
    records = [{"id": i, "name": "x", "tags": {"pad": "y" * 2000}} for i in range(1, 5001)]
    summaries = write(mariadb_url, {"table": customers, "batch_size": 5000}, [records])
    assert summaries == [{"batch": 0, "rows": 5000, "inserted": 5000, "updated": 0}]
    assert execute(f"SELECT COUNT(*) FROM `{customers}`") == [(5000,)]


def test_a_constraint_violation_fails_for_good_naming_the_row(
    mariadb_url: str, customers: str
) -> None:
    write(mariadb_url, {"table": customers}, [people(2)])
    with pytest.raises(NodeError) as caught:
        write(mariadb_url, {"table": customers}, [people(2)])
    assert caught.value.permanent
    assert "Duplicate entry '1'" in str(caught.value)
    assert len(rows_of(customers)) == 2  # the failed batch left nothing behind


def test_a_value_that_does_not_fit_is_an_error_not_a_truncation(
    mariadb_url: str, customers: str
) -> None:
    with pytest.raises(NodeError, match="Data too long for column 'name'") as caught:
        write(mariadb_url, {"table": customers}, [[{"id": 1, "name": "x" * 101}]])
    assert caught.value.permanent and rows_of(customers) == []


def test_a_table_without_transactions_is_refused(mariadb_url: str) -> None:
    name = f"plain_{uuid.uuid4().hex[:8]}"
    execute(f"CREATE TABLE `{name}` (id INT PRIMARY KEY) ENGINE = MyISAM")
    try:
        with pytest.raises(NodeError, match="MyISAM engine, which has no transactions"):
            write(mariadb_url, {"table": name}, [[{"id": 1}]])
    finally:
        execute(f"DROP TABLE `{name}`")


# -- upsert --------------------------------------------------------------------------------------


def test_upsert_twice_keeps_each_record_once_with_the_latest_values(
    mariadb_url: str, customers: str
) -> None:
    config = {"table": customers, "mode": "upsert", "key": ["id"]}
    first = write(mariadb_url, config, [people(10)])
    assert first == [{"batch": 0, "rows": 10, "inserted": 10, "updated": 0}]
    second = write(mariadb_url, {**config, "batch_size": 10}, [people(15, start=6, suffix=" v2")])
    assert second == [
        {"batch": 0, "rows": 10, "inserted": 5, "updated": 5},
        {"batch": 1, "rows": 5, "inserted": 5, "updated": 0},
    ]
    stored = rows_of(customers)
    assert [row[0] for row in stored] == list(range(1, 21))
    assert [row[1] for row in stored] == [f"Person {i} ✓" for i in range(1, 6)] + [
        f"Person {i} v2 ✓" for i in range(6, 21)
    ]
    # unchanged rows still count as updated
    again = write(mariadb_url, config, [people(3)])
    assert again == [{"batch": 0, "rows": 3, "inserted": 0, "updated": 3}]


def test_upsert_of_one_key_twice_in_a_batch_keeps_the_last(
    mariadb_url: str, customers: str
) -> None:
    records = [{"id": 1, "name": "first"}, {"id": 2, "name": "other"}, {"id": 1, "name": "last"}]
    summary = write(mariadb_url, {"table": customers, "mode": "upsert", "key": ["id"]}, [records])
    assert summary == [{"batch": 0, "rows": 3, "inserted": 2, "updated": 0}]
    assert [row[:2] for row in rows_of(customers)] == [(1, "last"), (2, "other")]


def test_upsert_without_a_unique_index_on_the_key_fails_clearly(
    mariadb_url: str, customers: str
) -> None:
    with pytest.raises(NodeError, match=r"no unique index on exactly \(name\)") as caught:
        write(mariadb_url, {"table": customers, "mode": "upsert", "key": ["name"]}, [people(2)])
    assert caught.value.permanent


# -- replace -------------------------------------------------------------------------------------


def test_replace_swaps_in_the_new_rows_and_leaves_no_staging_table(
    mariadb_url: str, customers: str
) -> None:
    write(mariadb_url, {"table": customers}, [people(5)])
    write(
        mariadb_url,
        {"table": customers, "mode": "replace", "batch_size": 3},
        [people(7, start=100)],
    )
    assert [row[0] for row in rows_of(customers)] == list(range(100, 107))
    assert not {t for t in tables() if t.startswith(("flowplatform_stage_", "flowplatform_old_"))}
    with pytest.raises(NodeError, match="Duplicate entry"):  # the new table kept the key
        write(mariadb_url, {"table": customers}, [people(1, start=100)])


def test_a_reader_during_replace_sees_the_old_table_or_the_new_one_never_a_part(
    mariadb_url: str, customers: str
) -> None:
    write(mariadb_url, {"table": customers}, [people(1000)])
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        conn = admin_connection(run_database())
        try:
            cursor = conn.cursor()
            while not stop.is_set():
                cursor.execute(f"SELECT COUNT(*) FROM `{customers}`")
                seen.add(cursor.fetchone()[0])
        finally:
            conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        new = people(3000, start=5000)
        write(
            mariadb_url,
            {"table": customers, "mode": "replace", "batch_size": 100},
            [new[i : i + 100] for i in range(0, 3000, 100)],
        )
        final = execute(f"SELECT COUNT(*) FROM `{customers}`")[0][0]
    finally:
        stop.set()
        thread.join()
    assert final == 3000
    assert seen <= {1000, 3000} and 1000 in seen


def test_replace_that_fails_for_good_drops_its_staging_table(
    mariadb_url: str, customers: str
) -> None:
    with pytest.raises(NodeError, match="cannot be null"):
        write(mariadb_url, {"table": customers, "mode": "replace"}, [[{"id": 1, "name": None}]])
    assert not {t for t in tables() if t.startswith("flowplatform_stage_")}


def test_a_swap_cut_short_after_its_mark_is_finished_by_the_next_delivery(
    mariadb_url: str, customers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died after claiming the swap (RENAME commits on its own): the next delivery
    finds the mark ``swapping`` and completes the swap instead of loading again."""
    write(mariadb_url, {"table": customers}, [people(5)])
    context = context_for(mariadb_url)
    config = {"table": customers, "mode": "replace", "batch_size": 10}
    new = people(20, start=100)

    class Died(Exception):
        pass

    original = MariaDBDialect.open

    def dies_after_claiming(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)
        session = manager.__enter__()

        def claim_then_die(*swap_args: Any) -> bool:
            session._run("START TRANSACTION")
            session._claim(
                session._marks(swap_args[0]), *swap_args[2:], -1, swap_args[0], "swapping"
            )
            session.conn.commit()
            raise Died

        session.swap = claim_then_die

        class Manager:
            def __enter__(self) -> Any:
                return session

            def __exit__(self, *exc: Any) -> Any:
                return manager.__exit__(*exc)

        return Manager()

    with monkeypatch.context() as patch:
        patch.setattr(MariaDBDialect, "open", dies_after_claiming)
        with pytest.raises(Died):
            write(mariadb_url, config, [new], context)
    assert len(rows_of(customers)) == 5  # claimed, not swapped
    summaries = write(mariadb_url, config, [new], context_for(mariadb_url, run_id=context.run_id))
    assert [s["batch"] for s in summaries] == [0, 1]
    assert [row[0] for row in rows_of(customers)] == list(range(100, 120))
    assert not {t for t in tables() if t.startswith(("flowplatform_stage_", "flowplatform_old_"))}


def test_replace_creates_a_missing_table(mariadb_url: str) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    try:
        write(
            mariadb_url,
            {"table": name, "mode": "replace", "create_table": True},
            [people(3)],
        )
        assert [row[0] for row in rows_of(name)] == [1, 2, 3]
    finally:
        execute(f"DROP TABLE IF EXISTS `{name}`")


# -- create_table --------------------------------------------------------------------------------


def test_create_table_creates_it_from_the_records(mariadb_url: str) -> None:
    name = f"events_{uuid.uuid4().hex[:8]}"
    record = {"id": "e-1", "ok": True, "ratio": 0.5, "amount": Decimal("1.25"),
              "day": date(2026, 1, 2), "at": datetime(2026, 1, 2, 3, tzinfo=UTC),
              "body": {"a": [1]}, "note": None}  # fmt: skip
    try:
        write(
            mariadb_url,
            {"table": name, "create_table": True, "mode": "upsert", "key": ["id"]},
            [[record]],
        )
        types = dict(
            execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                [run_database(), name],
            )
        )
        assert types == {
            "id": "varchar(255)",
            "ok": "tinyint(1)",
            "ratio": "double",
            "amount": "decimal(65,30)",
            "day": "date",
            "at": "datetime(6)",
            "body": "longtext",
            "note": "longtext",
        }
        (row,) = execute(f"SELECT id, ok, amount, at, JSON_EXTRACT(body, '$.a[0]') FROM `{name}`")
        assert row == ("e-1", 1, Decimal("1.25"), datetime(2026, 1, 2, 3), "1")
    finally:
        execute(f"DROP TABLE IF EXISTS `{name}`")


def test_injection_shaped_names_are_quoted_identifiers(mariadb_url: str) -> None:
    name = "evil`; DROP TABLE x; -- %s"
    try:
        write(mariadb_url, {"table": name, "create_table": True}, [[{"a`b": 1, "c%s": "v"}]])
        assert execute(f"SELECT `a``b`, `c%s` FROM `{name.replace('`', '``')}`") == [(1, "v")]
    finally:
        execute(f"DROP TABLE IF EXISTS `{name.replace('`', '``')}`")


# -- marks and redelivery ------------------------------------------------------------------------


def interrupted(records: list[dict[str, Any]], after: int, size: int) -> Iterator[Any]:
    for n, start in enumerate(range(0, len(records), size)):
        if n == after:
            raise RuntimeError("worker lost")
        yield records[start : start + size]


def test_a_redelivered_node_skips_the_batches_it_committed(
    mariadb_url: str, customers: str
) -> None:
    records = people(50)
    context = context_for(mariadb_url)
    config = {"table": customers, "batch_size": 10}
    with pytest.raises(RuntimeError):
        write(mariadb_url, config, interrupted(records, 3, 10), context)
    assert len(rows_of(customers)) == 20
    again = context_for(mariadb_url, run_id=context.run_id)
    summaries = write(mariadb_url, config, [records], again)
    assert [s["batch"] for s in summaries] == [0, 1, 2, 3, 4]
    assert [row[0] for row in rows_of(customers)] == list(range(1, 51))  # each once


def test_the_write_marks_record_each_batch(mariadb_url: str, customers: str) -> None:
    context = context_for(mariadb_url)
    write(mariadb_url, {"table": customers, "batch_size": 4}, [people(10)], context)
    marks = execute(
        "SELECT batch, `rows`, target, state FROM flowplatform_write_marks"
        " WHERE run_id = %s ORDER BY batch",
        [context.run_id],
    )
    assert marks == [
        (0, 4, customers, "done"),
        (1, 4, customers, "done"),
        (2, 2, customers, "done"),
    ]


# -- errors and save time ------------------------------------------------------------------------


def test_connection_errors_are_transient_and_hide_the_password(customers: str) -> None:
    url = f"mysql://root:{PASSWORD}@127.0.0.1:1/{run_database()}"
    with pytest.raises(NodeError) as caught:
        write(url, {"table": customers}, [people(1)])
    assert not caught.value.permanent
    assert PASSWORD not in str(caught.value)


def test_the_guard_refuses_a_redirecting_url(customers: str) -> None:
    url = f"mysql://root@127.0.0.1:3306/{run_database()}?unix_socket=/run/mysqld/mysqld.sock"
    with pytest.raises(NodeError, match="'unix_socket' is not allowed") as caught:
        write(url, {"table": customers}, [people(1)])
    assert caught.value.permanent


UPSTREAM = RecordSchema(
    {"id": FieldType.INTEGER, "name": FieldType.STRING, "score": FieldType.DECIMAL}
)


@pytest.mark.django_db
def test_save_time_checks_read_the_mariadb_table(mariadb_url: str, customers: str) -> None:
    add_connection("target", mariadb_url)

    def problems(config: dict[str, Any], upstream: RecordSchema = UPSTREAM) -> list[str]:
        node = SqlWriteNode({"connection": "target", **config})
        return [str(problem) for problem in node.check({"in": upstream})]

    assert problems({"table": customers}) == []
    lacking = RecordSchema({**UPSTREAM.fields, "email": FieldType.STRING})  # type: ignore[dict-item]
    assert any("email" in p for p in problems({"table": customers}, lacking))
    wrong = RecordSchema({"id": FieldType.DATE, "name": FieldType.STRING})
    assert any("id" in p for p in problems({"table": customers}, wrong))
    json_anything = RecordSchema({"id": FieldType.INTEGER, "tags": FieldType.STRING})
    assert problems({"table": customers}, json_anything) == []


# -- MariaDB -> PostgreSQL -----------------------------------------------------------------------


def test_200000_rows_copied_from_mariadb_to_postgresql_with_replace_seen_whole(
    mariadb_url: str,
) -> None:
    source = f"src_{uuid.uuid4().hex[:8]}"
    target = f"copy_{uuid.uuid4().hex[:8]}"
    execute(
        f"CREATE TABLE `{source}` (id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(12,2),"
        " at TIMESTAMP(6) NULL)"
    )
    execute(
        f"INSERT INTO `{source}` SELECT seq, CONCAT('n', seq), seq / 100,"
        " FROM_UNIXTIME(1767225600 + seq) FROM seq_1_to_200000"
    )
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "create table {} (id int primary key, name text, amount numeric(12,2),"
                " at timestamptz)"
            ).format(sql.Identifier(target))
        )
        conn.execute(
            sql.SQL(
                "insert into {} select g, 'old', 0, now() from generate_series(1, 10) g"
            ).format(sql.Identifier(target))
        )
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            count = sql.SQL("select count(*) from {}").format(sql.Identifier(target))
            while not stop.is_set():
                seen.add(conn.execute(count).fetchone()[0])  # type: ignore[index]

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        query = SqlQueryNode(
            {"connection": "shop", "query": f"SELECT * FROM `{source}`", "batch_size": 5000}
        )
        context = context_for(mariadb_url)
        read = query.execute(context, {})
        sink = SqlWriteNode(
            {"connection": "warehouse", "table": target, "mode": "replace", "batch_size": 5000}
        )
        urls = {"shop": mariadb_url, "warehouse": PG_URL}
        sink_context = ExecutionContext(
            connection_lookup=lambda name: ConnectionInfo(name, urls[name]),
            run_id=uuid.uuid4().hex,
            node_key="copy",
        )
        summaries = [s for batch in sink.run(sink_context, {"in": read}) for s in batch]
    finally:
        stop.set()
        thread.join()
    try:
        assert sum(s["rows"] for s in summaries) == 200_000
        with psycopg.connect(PG_URL) as conn:
            count, total, last = conn.execute(
                sql.SQL("select count(*), sum(amount), max(at) from {}").format(
                    sql.Identifier(target)
                )
            ).fetchone()  # type: ignore[misc]
        assert count == 200_000
        assert total == sum(Decimal(i) / 100 for i in range(1, 200_001))
        assert last == datetime.fromtimestamp(1767225600 + 200_000, tz=UTC)
        assert seen <= {10, 200_000} and 10 in seen
    finally:
        execute(f"DROP TABLE IF EXISTS `{source}`")
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(target)))
