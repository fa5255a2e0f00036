"""What the read-only SQL wrapper holds against a query that tries to write or to outlive its
time limit, against the real PostgreSQL."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from nodes.builtin import pg_pool
from nodes.builtin.sql_query import SqlQueryNode
from nodes.sdk import ConnectionInfo, ExecutionContext, NodeError

PG_URL = os.environ.get("FLOWPLATFORM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def rows(sql: str, **config: Any) -> list[dict[str, Any]]:
    node = SqlQueryNode({"connection": "warehouse", "query": sql, **config})
    context = ExecutionContext(connection_lookup=lambda name: ConnectionInfo(name, PG_URL))
    return [row for batch in node.execute(context, {}) for row in batch]


def large_object_exists(oid: int) -> bool:
    with psycopg.connect(PG_URL) as conn:
        found = conn.execute("select 1 from pg_largeobject_metadata where oid = %s", [oid])
        return found.fetchone() is not None


def test_a_large_object_created_by_a_query_does_not_persist() -> None:
    (row,) = rows("select lo_from_bytea(0, 'planted'::bytea)::bigint as oid")
    assert not large_object_exists(row["oid"])


def test_a_large_object_unlinked_by_a_query_survives() -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        (oid,) = conn.execute("select lo_from_bytea(0, 'kept'::bytea)::bigint").fetchone() or ()
    try:
        assert rows("select lo_unlink(%(oid)s::oid) as gone", params={"oid": oid}) == [{"gone": 1}]
        assert large_object_exists(oid)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("select lo_unlink(%s::oid)", [oid])


def test_session_settings_made_by_a_query_do_not_leak_into_the_next() -> None:
    rows("select set_config('statement_timeout', '0', false) as s")
    assert rows("select current_setting('statement_timeout') as t", statement_timeout_s=7) == [
        {"t": "7s"}
    ]


@pytest.mark.parametrize(
    "sql",
    [
        # The server timeout lifted in the first fetch; the second would sleep unbounded.
        "select set_config('statement_timeout', '0', true) as s,"
        " pg_sleep(case when n = 1 then 0 else 20 end) as z from generate_series(1, 2) as n",
        "select set_config('statement_timeout', '0', true) as s, pg_sleep(20) as z",
        "select pg_sleep(20) as z from (select set_config('statement_timeout', '0', true)) as s",
    ],
)
def test_a_query_cannot_lift_its_time_limit(sql: str) -> None:
    pg_pool.clear()
    started = time.monotonic()
    with pytest.raises(NodeError, match=r"statement timeout \(1 s\)") as caught:
        rows(sql, statement_timeout_s=1, batch_size=1)
    took = time.monotonic() - started
    assert not caught.value.permanent
    assert took < 5, f"took {took:.1f}s"


@pytest.mark.parametrize("value", [1e308, math.inf, math.nan, 86_401, 0, -1])
def test_statement_timeout_is_bounded(value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        SqlQueryNode({"connection": "w", "query": "select 1", "statement_timeout_s": value})
    assert caught.value.errors()[0]["loc"] == ("statement_timeout_s",)


def test_a_day_is_the_longest_statement_timeout() -> None:
    node = SqlQueryNode({"connection": "w", "query": "select 1", "statement_timeout_s": 86_400})
    assert node.config.statement_timeout_s == 86_400
