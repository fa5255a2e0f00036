"""The ``sql_write`` node against a real PostgreSQL: modes, marks, save-time checks, quoting."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import ValidationError

from nodes.builtin.sql_write.node import SqlWriteNode
from nodes.sdk import ConnectionInfo, ExecutionContext, FieldType, NodeError, RecordSchema
from nodes.sdk.node import RowBatch
from tests.flows.helpers import add_connection

PG_URL = os.environ.get("FLOWPLATFORM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def context_for(url: str = PG_URL, **kwargs: Any) -> ExecutionContext:
    kwargs.setdefault("run_id", uuid.uuid4().hex)
    kwargs.setdefault("node_key", "load")
    return ExecutionContext(connection_lookup=lambda name: ConnectionInfo(name, url), **kwargs)


def write(
    config: dict[str, Any], batches: Iterable[Any], context: ExecutionContext | None = None
) -> list[dict[str, Any]]:
    node = SqlWriteNode({"connection": "target", **config})
    out = node.run(context or context_for(), {"in": iter(batches)})
    return [summary for batch in out for summary in batch]


def query(statement: sql.Composable | str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of its own for each test (tables, write marks), dropped afterwards."""
    name = f"sqlwrite_{uuid.uuid4().hex[:10]}"
    query(sql.SQL("create schema {}").format(sql.Identifier(name)))
    yield name
    query(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


@pytest.fixture
def customers(schema: str) -> str:
    """``schema.customers (id int primary key, name text not null, score numeric, seen timestamptz)``."""
    query(
        sql.SQL(
            "create table {}.customers (id int primary key, name text not null,"
            " score numeric(8, 2), seen timestamptz, tags jsonb)"
        ).format(sql.Identifier(schema))
    )
    return f"{schema}.customers"


def rows_of(table: str, order: str = "id") -> list[tuple[Any, ...]]:
    schema, name = table.split(".", 1)
    return query(
        sql.SQL("select * from {} order by {}").format(
            sql.Identifier(schema, name), sql.Identifier(order)
        )
    )


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


# -- insert ----------------------------------------------------------------------------------


def test_insert_writes_every_record_and_reports_each_batch(customers: str) -> None:
    records = people(12)
    summaries = write({"table": customers, "batch_size": 5}, [records[:7], records[7:]])
    assert summaries == [
        {"batch": 0, "rows": 5, "inserted": 5, "updated": 0},
        {"batch": 1, "rows": 5, "inserted": 5, "updated": 0},
        {"batch": 2, "rows": 2, "inserted": 2, "updated": 0},
    ]
    stored = rows_of(customers)
    assert [row[0] for row in stored] == list(range(1, 13))
    assert stored[3] == (
        4,
        "Person 4 ✓",
        Decimal("1.00"),
        datetime(2026, 1, 5, 9, tzinfo=UTC),
        {"n": 4, "even": True},
    )


def test_insert_takes_row_batches_in_any_column_order(customers: str) -> None:
    batch = RowBatch(["name", "id"], [("Ann", 1), ("Bob", 2)])
    write({"table": customers}, [batch])
    assert [row[:2] for row in rows_of(customers)] == [(1, "Ann"), (2, "Bob")]


def test_declared_columns_write_only_those(customers: str) -> None:
    write({"table": customers, "columns": ["id", "name"]}, [people(3)])
    assert {row[2:] for row in rows_of(customers)} == {(None, None, None)}


def test_a_record_without_a_field_writes_null(customers: str) -> None:
    write({"table": customers}, [[{"id": 1, "name": "a", "score": 1}, {"id": 2, "name": "b"}]])
    assert [row[:3] for row in rows_of(customers)] == [(1, "a", 1), (2, "b", None)]


def test_a_constraint_violation_fails_for_good_naming_the_row(customers: str) -> None:
    write({"table": customers}, [people(2)])
    with pytest.raises(NodeError) as caught:
        write({"table": customers}, [people(2)])
    assert caught.value.permanent
    assert "duplicate key" in str(caught.value) and "(id)=(1)" in str(caught.value)


# -- upsert ----------------------------------------------------------------------------------


def test_upsert_twice_keeps_each_record_once_with_the_latest_values(customers: str) -> None:
    first = write({"table": customers, "mode": "upsert", "key": ["id"]}, [people(10)])
    assert first == [{"batch": 0, "rows": 10, "inserted": 10, "updated": 0}]
    again = people(15, start=6, suffix=" v2")
    second = write({"table": customers, "mode": "upsert", "key": ["id"], "batch_size": 10}, [again])
    assert second == [
        {"batch": 0, "rows": 10, "inserted": 5, "updated": 5},
        {"batch": 1, "rows": 5, "inserted": 5, "updated": 0},
    ]
    stored = rows_of(customers)
    assert [row[0] for row in stored] == list(range(1, 21))
    assert [row[1] for row in stored] == [f"Person {i} ✓" for i in range(1, 6)] + [
        f"Person {i} v2 ✓" for i in range(6, 21)
    ]


def test_upsert_of_one_key_twice_in_a_batch_keeps_the_last(customers: str) -> None:
    records = [{"id": 1, "name": "first"}, {"id": 2, "name": "other"}, {"id": 1, "name": "last"}]
    summary = write({"table": customers, "mode": "upsert", "key": ["id"]}, [records])
    assert summary == [{"batch": 0, "rows": 3, "inserted": 2, "updated": 0}]
    assert [row[:2] for row in rows_of(customers)] == [(1, "last"), (2, "other")]


def test_upsert_without_a_unique_index_on_the_key_fails_clearly(customers: str) -> None:
    with pytest.raises(NodeError, match="no unique or exclusion constraint") as caught:
        write({"table": customers, "mode": "upsert", "key": ["name"]}, [people(2)])
    assert caught.value.permanent


def test_upsert_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="upsert needs the key"):
        SqlWriteNode({"connection": "target", "table": "t", "mode": "upsert"})


# -- replace ---------------------------------------------------------------------------------


def test_replace_swaps_in_the_new_rows_and_leaves_no_staging_table(customers: str) -> None:
    write({"table": customers}, [people(5)])
    write({"table": customers, "mode": "replace", "batch_size": 3}, [people(7, start=100)])
    assert [row[0] for row in rows_of(customers)] == list(range(100, 107))
    schema = customers.split(".")[0]
    tables = query(
        "select table_name from information_schema.tables where table_schema = %s", schema
    )
    assert sorted(t[0] for t in tables) == ["customers", "flowplatform_write_marks"]
    # the new table kept the old one's constraints
    with pytest.raises(NodeError, match="duplicate key"):
        write({"table": customers}, [people(1, start=100)])


def test_a_reader_during_replace_sees_the_old_table_or_the_new_one_never_a_part(
    customers: str,
) -> None:
    write({"table": customers}, [people(1000)])
    seen: set[int] = set()
    stop = threading.Event()
    schema, name = customers.split(".")
    count = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, name))

    def reader() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            while not stop.is_set():
                seen.add(conn.execute(count).fetchone()[0])  # type: ignore[index]

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        new = people(3000, start=5000)
        write(
            {"table": customers, "mode": "replace", "batch_size": 100},
            [new[i : i + 100] for i in range(0, 3000, 100)],
        )
        final = query(count)[0][0]
    finally:
        stop.set()
        thread.join()
    assert final == 3000
    assert seen <= {1000, 3000} and 1000 in seen


def test_replace_keeps_a_serial_column_numbering(schema: str) -> None:
    query(
        sql.SQL("create table {}.tickets (id serial primary key, title text)").format(
            sql.Identifier(schema)
        )
    )
    table = f"{schema}.tickets"
    write({"table": table}, [[{"title": "a"}, {"title": "b"}]])
    write({"table": table, "mode": "replace"}, [[{"title": "c"}]])
    write({"table": table}, [[{"title": "d"}]])
    assert rows_of(table) == [(3, "c"), (4, "d")]


def test_replace_of_a_table_a_view_depends_on_fails_and_keeps_the_table(customers: str) -> None:
    write({"table": customers}, [people(3)])
    schema = customers.split(".")[0]
    query(
        sql.SQL("create view {0}.named as select name from {0}.customers").format(
            sql.Identifier(schema)
        )
    )
    with pytest.raises(NodeError, match=r"other objects depend on it \(.*named\)") as caught:
        write({"table": customers, "mode": "replace"}, [people(5, start=10)])
    assert caught.value.permanent
    assert [row[0] for row in rows_of(customers)] == [1, 2, 3]
    tables = query(
        "select table_name from information_schema.tables where table_schema = %s", schema
    )
    assert not [t for t in tables if t[0].startswith("flowplatform_stage_")]


def test_replace_with_no_records_empties_the_table(customers: str) -> None:
    write({"table": customers}, [people(5)])
    assert write({"table": customers, "mode": "replace"}, []) == []
    assert rows_of(customers) == []


def test_replace_that_fails_for_good_drops_its_staging_table(customers: str) -> None:
    bad = [{"id": 1, "name": None}]  # name is not null
    with pytest.raises(NodeError, match="null value"):
        write({"table": customers, "mode": "replace"}, [bad])
    schema = customers.split(".")[0]
    tables = query(
        "select table_name from information_schema.tables where table_schema = %s", schema
    )
    assert not [t for t in tables if t[0].startswith("flowplatform_stage_")]


# -- create_table ----------------------------------------------------------------------------


def column_types(table: str) -> dict[str, str]:
    schema, name = table.split(".", 1)
    rows = query(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = %s and table_name = %s",
        schema,
        name,
    )
    return dict(rows)  # type: ignore[arg-type]


def test_create_table_creates_it_from_the_records(schema: str) -> None:
    table = f"{schema}.events"
    record = {"id": 1, "ok": True, "ratio": 0.5, "amount": Decimal("1.25"), "day": date(2026, 1, 2),
              "at": datetime(2026, 1, 2, 3, tzinfo=UTC), "body": {"a": [1]}, "note": None, "ref": uuid.UUID(int=7)}  # fmt: skip
    write({"table": table, "create_table": True, "mode": "upsert", "key": ["id"]}, [[record]])
    assert column_types(table) == {
        "id": "bigint",
        "ok": "boolean",
        "ratio": "double precision",
        "amount": "numeric",
        "day": "date",
        "at": "timestamp with time zone",
        "body": "jsonb",
        "note": "text",
        "ref": "text",
    }
    stored = rows_of(table)[0]
    assert stored[:8] == (1, True, 0.5, Decimal("1.25"), date(2026, 1, 2),
                          datetime(2026, 1, 2, 3, tzinfo=UTC), {"a": [1]}, None)  # fmt: skip
    assert uuid.UUID(stored[8]) == uuid.UUID(int=7)
    # the key became the primary key: upsert works on the new table
    write({"table": table, "mode": "upsert", "key": ["id"]}, [[{**record, "note": "again"}]])
    assert rows_of(table)[0][-2] == "again"


def test_replace_creates_a_missing_table(schema: str) -> None:
    table = f"{schema}.fresh"
    write({"table": table, "mode": "replace", "create_table": True}, [people(3)])
    assert [row[0] for row in rows_of(table)] == [1, 2, 3]


def test_a_missing_table_without_create_table_fails_for_good(schema: str) -> None:
    with pytest.raises(NodeError, match="does not exist") as caught:
        write({"table": f"{schema}.absent"}, [people(1)])
    assert caught.value.permanent


def test_a_field_the_table_lacks_fails_at_run_time_naming_it(customers: str) -> None:
    with pytest.raises(NodeError, match="has no column 'email'"):
        write({"table": customers}, [[{"id": 1, "name": "a", "email": "a@x"}]])


# -- quoting ---------------------------------------------------------------------------------


def test_injection_shaped_names_are_quoted_identifiers(schema: str) -> None:
    query(sql.SQL("create table {}.victim (id int)").format(sql.Identifier(schema)))
    evil_table = f'{schema}.x"; drop table {schema}.victim; --'
    evil_column = 'a" text); drop table victim; --'
    write({"table": evil_table, "create_table": True}, [[{"id": 1, evil_column: "v"}]])
    write({"table": evil_table, "mode": "replace"}, [[{"id": 3, evil_column: "z"}]])
    tables = query(
        "select table_name from information_schema.tables where table_schema = %s", schema
    )
    names = {t[0] for t in tables}
    assert "victim" in names
    assert f'x"; drop table {schema}.victim; --' in names
    assert column_types(f'{schema}.x"; drop table {schema}.victim; --') == {
        "id": "bigint",
        evil_column: "text",
    }


def test_a_table_name_with_an_empty_part_is_refused() -> None:
    with pytest.raises(ValidationError, match="schema part is empty"):
        SqlWriteNode({"connection": "target", "table": ".orders"})


# -- redelivery ------------------------------------------------------------------------------


def interrupted(
    records: list[dict[str, Any]], after: int, size: int
) -> Iterator[list[dict[str, Any]]]:
    """The records in batches of ``size``, then a crash after ``after`` batches."""
    for n, start in enumerate(range(0, len(records), size)):
        if n == after:
            raise RuntimeError("worker lost")
        yield records[start : start + size]


def test_a_redelivered_node_skips_the_batches_it_committed(customers: str) -> None:
    records = people(50)
    context = context_for()
    with pytest.raises(RuntimeError):
        write({"table": customers, "batch_size": 10}, interrupted(records, 3, 10), context)
    assert len(rows_of(customers)) == 20  # the batch read ahead when it crashed: not written
    again = context_for(run_id=context.run_id)
    summaries = write({"table": customers, "batch_size": 10}, [records], again)
    assert [s["batch"] for s in summaries] == [0, 1, 2, 3, 4]
    assert all(s["inserted"] == 10 for s in summaries)
    assert [row[0] for row in rows_of(customers)] == list(range(1, 51))  # each once


def test_two_deliveries_at_once_write_each_batch_once(schema: str) -> None:
    query(sql.SQL("create table {}.events (id int, name text)").format(sql.Identifier(schema)))
    records = [{"id": i, "name": f"e{i}"} for i in range(2000)]
    run_id = uuid.uuid4().hex
    results: list[list[dict[str, Any]]] = []

    def deliver() -> None:
        config = {"table": f"{schema}.events", "batch_size": 50}
        results.append(write(config, [records], context_for(run_id=run_id)))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [row[0] for row in rows_of(f"{schema}.events")]
    assert ids == list(range(2000))  # no primary key: a batch written twice would show
    assert [len(r) for r in results] == [40, 40]
    assert results[0] == results[1]


def test_another_run_writes_again(customers: str) -> None:
    write({"table": customers, "mode": "upsert", "key": ["id"]}, [people(5)])
    summary = write({"table": customers, "mode": "upsert", "key": ["id"]}, [people(5)])
    assert summary == [{"batch": 0, "rows": 5, "inserted": 0, "updated": 5}]


def test_a_redelivered_replace_resumes_its_staging_table(customers: str) -> None:
    write({"table": customers}, [people(5)])
    context = context_for()
    new = people(40, start=100)
    config = {"table": customers, "mode": "replace", "batch_size": 10}
    with pytest.raises(RuntimeError):
        write(config, interrupted(new, 2, 10), context)
    assert len(rows_of(customers)) == 5  # not swapped yet
    write(config, [new], context_for(run_id=context.run_id))
    assert [row[0] for row in rows_of(customers)] == list(range(100, 140))
    # delivered once more after the swap: nothing changes
    summaries = write(config, [new], context_for(run_id=context.run_id))
    assert len(summaries) == 4 and [row[0] for row in rows_of(customers)] == list(range(100, 140))


def test_the_write_marks_record_each_batch(customers: str) -> None:
    context = context_for()
    write({"table": customers, "batch_size": 4}, [people(10)], context)
    schema = customers.split(".")[0]
    marks = query(
        sql.SQL(
            "select batch, rows, target from {}.flowplatform_write_marks where run_id = %s order by batch"
        ).format(sql.Identifier(schema)),
        context.run_id,
    )
    assert marks == [(0, 4, customers), (1, 4, customers), (2, 2, customers)]


# -- errors ----------------------------------------------------------------------------------


def test_connection_errors_are_transient_and_hide_the_password(customers: str) -> None:
    url = "postgresql://postgres:Sup3r-s3cret-pw@127.0.0.1:1/test"
    with pytest.raises(NodeError) as caught:
        write({"table": customers}, [people(1)], context_for(url))
    assert not caught.value.permanent
    assert "Sup3r-s3cret-pw" not in str(caught.value)


def test_a_connection_that_is_not_a_database_is_refused() -> None:
    with pytest.raises(NodeError, match="cannot write to 'https'"):
        write({"table": "t"}, [people(1)], context_for("https://example.test/"))


# -- save time -------------------------------------------------------------------------------

UPSTREAM = RecordSchema(
    {"id": FieldType.INTEGER, "name": FieldType.STRING, "score": FieldType.DECIMAL}
)


def check(config: dict[str, Any], upstream: RecordSchema = UPSTREAM) -> list[str]:
    node = SqlWriteNode({"connection": "target", **config})
    return [str(problem) for problem in node.check({"in": upstream})]


@pytest.mark.django_db
def test_save_time_reports_a_field_the_table_lacks(customers: str) -> None:
    add_connection("target", PG_URL)
    upstream = RecordSchema({**UPSTREAM.fields, "email": FieldType.STRING})  # type: ignore[dict-item]
    assert check({"table": customers}, upstream) == [
        f"inputs.in.email: table '{customers}' has no column 'email'"
    ]


@pytest.mark.django_db
def test_save_time_reports_a_declared_column_the_table_or_upstream_lacks(customers: str) -> None:
    add_connection("target", PG_URL)
    assert check({"table": customers, "columns": ["id", "email", "seen"]}) == [
        "config.columns[1]: field 'email' is not in the upstream records",
        "config.columns[2]: field 'seen' is not in the upstream records",
        f"config.columns[1]: table '{customers}' has no column 'email'",
    ]


@pytest.mark.django_db
def test_save_time_reports_a_missing_key_column(customers: str) -> None:
    add_connection("target", PG_URL)
    upstream = RecordSchema({"uid": FieldType.INTEGER, "name": FieldType.STRING})
    problems = check({"table": customers, "mode": "upsert", "key": ["uid"]}, upstream)
    assert f"config.key[0]: table '{customers}' has no column 'uid'" in problems


@pytest.mark.django_db
def test_save_time_reports_an_upsert_key_without_a_unique_index(customers: str) -> None:
    add_connection("target", PG_URL)
    assert check({"table": customers, "mode": "upsert", "key": ["name"]}) == [
        f"config.key: table '{customers}' has no primary key or unique index on exactly (name):"
        " upsert needs one"
    ]
    assert check({"table": customers, "mode": "upsert", "key": ["id"]}) == []


@pytest.mark.django_db
def test_save_time_reports_a_type_that_cannot_fit(customers: str) -> None:
    add_connection("target", PG_URL)
    upstream = RecordSchema({"id": FieldType.STRING, "seen": FieldType.BOOLEAN})
    assert check({"table": customers}, upstream) == [
        "inputs.in.id: field 'id' (string) cannot be stored in column 'id' (integer)",
        "inputs.in.seen: field 'seen' (boolean) cannot be stored in column 'seen' "
        "(timestamp with time zone)",
    ]


@pytest.mark.django_db
def test_save_time_reports_a_missing_table_unless_it_is_created(schema: str) -> None:
    add_connection("target", PG_URL)
    assert check({"table": f"{schema}.nope"}) == [
        f"config.table: table '{schema}.nope' does not exist (or set create_table)"
    ]
    assert check({"table": f"{schema}.nope", "create_table": True}) == []


@pytest.mark.django_db
def test_save_time_checks_what_it_can_when_the_target_is_unreachable() -> None:
    add_connection("target", "postgresql://postgres@127.0.0.1:1/test")
    assert check({"table": "t", "mode": "upsert", "key": ["uid"]}) == [
        "config.key[0]: key 'uid' is not a field of the upstream records"
    ]
