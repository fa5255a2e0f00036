"""``sql_write`` when its worker is killed mid-write: after recovery every row is there once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flows.flowfile import apply_flow_file
from flows.services import start_run
from tests.conftest import WorkerProcess, wait_until
from tests.faults.test_faults import reap_until_finished
from tests.flows.helpers import SOURCE_DB_URL, add_connection, orders_table

pytestmark = pytest.mark.worker

Start = Callable[..., WorkerProcess]
ROWS = 20_000
BATCH = 10  # 2,000 transactions: the kill lands mid-write


@pytest.fixture
def target_schema(transactional_db: None) -> Iterator[str]:
    name = f"killed_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(name)))
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("reporting", SOURCE_DB_URL)
    yield name
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


def copy_flow(source: str, schema: str) -> dict[str, Any]:
    """A table copied into ``schema.orders_copy`` in small batches (insert mode)."""
    orders = {
        "connection": "warehouse",
        "query": f"select id, customer, amount from {source} order by id",
    }
    load = {
        "connection": "reporting",
        "table": f"{schema}.orders_copy",
        "mode": "insert",
        "batch_size": BATCH,
        "create_table": True,
    }
    return {
        "slug": "copy-orders",
        "name": "Copy orders",
        "nodes": [
            {"key": "orders", "type": "sql_query", "config": orders},
            {"key": "load", "type": "sql_write", "config": load},
        ],
        "edges": [{"from": "orders", "to": "load"}],
    }


def scalar(statement: sql.Composable) -> int:
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        try:
            return int(conn.execute(statement).fetchone()[0])  # type: ignore[index]
        except psycopg.errors.UndefinedTable:
            return 0


def test_worker_killed_mid_insert_every_row_once_after_recovery(
    fault_workers: Start, target_schema: str
) -> None:
    marks = sql.SQL("select count(*) from {}").format(
        sql.Identifier(target_schema, "flowplatform_write_marks")
    )
    copy = sql.Identifier(target_schema, "orders_copy")
    first = fault_workers()
    with orders_table(ROWS) as source:
        apply_flow_file(copy_flow(source.name, target_schema))
        run = start_run("copy-orders")
        wait_until(lambda: scalar(marks) >= 50, 60, 0.02, "the load never started")
        first.kill()
        committed_at_kill = scalar(marks)
        killed_at = time.monotonic()
        fault_workers()
        run = reap_until_finished(run, 90)
    assert 0 < committed_at_kill < ROWS // BATCH  # killed mid-write
    assert run.status == "succeeded", run.error
    load = run.node_runs.get(node_key="load")
    assert load.workers_lost == 1
    counted = sql.SQL("select count(*), count(distinct id), min(id), max(id) from {}").format(copy)
    with psycopg.connect(SOURCE_DB_URL) as conn:
        assert conn.execute(counted).fetchone() == (ROWS, ROWS, 1, ROWS)
    assert scalar(marks) == ROWS // BATCH
    print(
        f"sql_write killed after {committed_at_kill} of {ROWS // BATCH} batches:"
        f" recovered in {time.monotonic() - killed_at:.1f}s"
    )
