"""A flow written without partition settings partitions its large source on its own, and
delivers exactly what the same flow with ``"partition_rows": null`` (never partitioned) does."""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_httpserver import HTTPServer

from flows.engine.handoff import Part, read_manifest
from flows.flowfile import apply_flow_file
from flows.models import FlowRun
from flows.services import start_run, wait_for_run
from nodes.builtin import sql_query_auto
from tests.conftest import ROOT, WorkerProcess
from tests.flows.helpers import (
    SOURCE_DB_URL,
    accepting_crm,
    add_connection,
    point_minimal_flow_at,
    posted_records,
)
from tests.mariadb import execute
from tests.mariadb import mariadb_url as mariadb_url

STRETCH = ("paid", "shape", "push")


def never_partitioned(flow: dict[str, Any]) -> dict[str, Any]:
    flow = copy.deepcopy(flow)
    flow["nodes"][0]["config"]["partition_rows"] = None
    return flow


def delivered(httpserver: HTTPServer) -> list[str]:
    """What the peer received, one JSON text per record, sorted."""
    return sorted(json.dumps(record, sort_keys=True) for record in posted_records(httpserver))


def source_partitions(run: FlowRun) -> list[Part] | None:
    """The source's partitions, or ``None`` when its output was stored whole."""
    ref = run.node_runs.get(node_key="orders").output_ref
    return read_manifest(ref) if ref.endswith(".partitions.json") else None


def figures(run: FlowRun) -> dict[str, tuple[str, int, int | None]]:
    """Each node's status and rows (``http_post``'s rows out are requests: each partition
    sends its own last, short batch)."""
    return {
        n.node_key: (n.status, n.rows_in, None if n.node_key == "push" else n.rows_out)
        for n in run.node_runs.all()
    }


def auto_then_never(httpserver: HTTPServer, flow: dict[str, Any], slug: str) -> tuple[Any, ...]:
    """Run ``flow`` as written, then with ``partition_rows`` null: both runs, both deliveries."""
    apply_flow_file(flow)
    auto = wait_for_run(start_run(slug), timeout=180)
    auto_records = delivered(httpserver)
    httpserver.clear_log()
    apply_flow_file(never_partitioned(flow))
    whole = wait_for_run(start_run(slug), timeout=180)
    whole_records = delivered(httpserver)
    return auto, whole, auto_records, whole_records


@pytest.fixture
def peers(httpserver: HTTPServer) -> HTTPServer:
    add_connection("warehouse", SOURCE_DB_URL)
    return accepting_crm(httpserver)


@pytest.fixture(autouse=True)
def _fresh_estimates() -> Iterator[None]:
    sql_query_auto.forget_estimates()
    yield
    sql_query_auto.forget_estimates()


@contextmanager
def orders(ids: list[Any], key_type: str = "bigint") -> Iterator[str]:
    """An analysed orders table in the source database with these ids (dropped afterwards)."""
    name = f"auto_orders_{uuid.uuid4().hex[:10]}"
    table = sql.Identifier(name)
    statuses = ("paid", "pending", "refunded")
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "create table {} (id {} primary key, customer text, email text, status text,"
                " amount numeric(12,2), created_at timestamptz)"
            ).format(table, sql.SQL(key_type))
        )
        with conn.cursor() as cur, cur.copy(sql.SQL("copy {} from stdin").format(table)) as cp:
            for n, key in enumerate(ids):
                cp.write_row(
                    (
                        key,
                        f"Client {n} ✓",
                        f"c{n}@example.test",
                        statuses[n % 3],
                        Decimal(n % 50) - Decimal("0.50") if n % 7 else Decimal(0),
                        f"2026-01-{1 + n % 28:02d}T10:00:00+00:00",
                    )
                )
        conn.execute(sql.SQL("analyze {}").format(table))
    try:
        yield name
    finally:
        with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("drop table if exists {}").format(table))


# --- with the default settings, on a real worker --------------------------------------------
@pytest.mark.worker
def test_a_large_postgresql_source_is_read_in_parallel_key_ranges_by_default(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    # 60,000 rows: above the default threshold (50,000), partitions of about 50,000
    with orders(list(range(1, 60_001))) as table:
        flow = point_minimal_flow_at(minimal_flow, table)
        auto, whole, auto_records, whole_records = auto_then_never(
            peers, flow, "paid-orders-to-crm"
        )
    assert auto.status == whole.status == "succeeded", (auto.error, whole.error)
    assert auto_records == whole_records and len(auto_records) > 15_000
    parts = source_partitions(auto)
    assert parts is not None and len(parts) >= 2  # read in ranges, by the partition tasks
    assert sum(p.rows_out for p in parts) == 60_000
    assert source_partitions(whole) is None  # null: stored whole, as before
    # Each node keeps its own node run, with the same figures either way.
    assert figures(auto) == figures(whole)
    assert all(status == "succeeded" for status, _in, _out in figures(auto).values())
    for key in STRETCH:  # the partitioned stretch shares a task per partition
        assert auto.node_runs.get(node_key=key).output_ref.endswith(".partitions.json")


@pytest.mark.worker
def test_a_small_source_runs_whole_node_by_node(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    with orders(list(range(1, 2001))) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    assert not any(n.output_ref.endswith(".partitions.json") for n in run.node_runs.all())
    assert figures(run)["orders"] == ("succeeded", 0, 2000)


@pytest.fixture
def maria_orders(mariadb_url: str) -> Iterator[str]:
    """60,000 orders in MariaDB, analysed."""
    table = f"auto_orders_{uuid.uuid4().hex[:10]}"
    execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, customer VARCHAR(60), status VARCHAR(10),"
        " amount DECIMAL(12,2), paid_at TIMESTAMP NULL, details JSON)"
    )
    execute(
        f"INSERT INTO {table} SELECT seq, CONCAT('Client ', seq, ' ✓'),"
        " ELT(seq % 3 + 1, 'paid', 'pending', 'refunded'), IF(seq % 7 = 0, 0, (seq % 50) - 0.5),"
        " FROM_UNIXTIME(1767261600 + seq * 60), JSON_OBJECT('n', seq) FROM seq_1_to_60000"
    )
    execute(f"ANALYZE TABLE {table}")
    yield table
    execute(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.worker
def test_a_large_mariadb_source_is_read_in_parallel_key_ranges_by_default(
    worker: WorkerProcess, httpserver: HTTPServer, mariadb_url: str, maria_orders: str
) -> None:
    accepting_crm(httpserver)
    add_connection("shop", mariadb_url)
    flow = json.loads((ROOT / "examples" / "mariadb-paid-orders.json").read_text())
    config = flow["nodes"][0]["config"]
    config["query"] = config["query"].replace("FROM orders", f"FROM {maria_orders}")
    auto, whole, auto_records, whole_records = auto_then_never(
        httpserver, flow, "mariadb-paid-orders"
    )
    assert auto.status == whole.status == "succeeded", (auto.error, whole.error)
    assert auto_records == whole_records and len(auto_records) > 15_000
    parts = source_partitions(auto)
    assert parts is not None and len(parts) >= 2
    assert sum(p.rows_out for p in parts) == 60_000
    assert source_partitions(whole) is None
    assert figures(auto) == figures(whole)


# --- many table shapes, in embedded mode with a low threshold ------------------------------
@pytest.fixture
def low_threshold(settings: Any) -> None:
    """Partition from 300 estimated rows, in partitions of about 150."""
    settings.FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS = 300
    settings.FLOWPLATFORM_AUTO_PARTITION_ROWS = 150


def shapes(seed: int) -> dict[str, list[Any]]:
    rng = random.Random(seed)
    return {
        "dense": list(range(1, 1001)),
        "gaps": rng.sample(range(1, 10_000_000), 1000),
        "clusters": [*range(1, 501), *range(10**12, 10**12 + 500)],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shape", ["dense", "gaps", "clusters"])
def test_key_ranges_deliver_what_one_read_does(
    transactional_db: None,
    eager: None,
    low_threshold: None,
    peers: HTTPServer,
    minimal_flow: dict[str, Any],
    shape: str,
    seed: int,
) -> None:
    with orders(shapes(seed)[shape]) as table:
        flow = point_minimal_flow_at(minimal_flow, table)
        auto, whole, auto_records, whole_records = auto_then_never(
            peers, flow, "paid-orders-to-crm"
        )
    assert auto.status == whole.status == "succeeded", (auto.error, whole.error)
    assert auto_records == whole_records and len(auto_records) > 200
    parts = source_partitions(auto)
    assert parts is not None and len(parts) >= 4
    assert figures(auto) == figures(whole)


@pytest.mark.parametrize(
    ("key_type", "query"),
    [
        ("text", "select id, customer, email, status, amount, created_at from {t}"),
        (
            "bigint",
            "select o.id, o.customer, o.email, o.status, o.amount, o.created_at"
            " from {t} o join {t} p on p.id = o.id",
        ),
    ],
    ids=["text key", "join"],
)
def test_without_a_key_range_a_large_source_is_cut_as_it_streams(
    transactional_db: None,
    eager: None,
    low_threshold: None,
    peers: HTTPServer,
    minimal_flow: dict[str, Any],
    key_type: str,
    query: str,
) -> None:
    ids = [f"k{i:05d}" for i in range(1000)] if key_type == "text" else list(range(1, 1001))
    with orders(ids, key_type) as table:
        flow = copy.deepcopy(minimal_flow)
        flow["nodes"][0]["config"]["query"] = query.format(t=table)
        flow["nodes"][0]["config"]["params"] = {}
        auto, whole, auto_records, whole_records = auto_then_never(
            peers, flow, "paid-orders-to-crm"
        )
    assert auto.status == whole.status == "succeeded", (auto.error, whole.error)
    assert auto_records == whole_records and len(auto_records) > 200
    parts = source_partitions(auto)
    assert parts is not None
    # read once, cut every 150 rows (the planner's estimate sized the decision)
    assert [p.rows_out for p in parts] == [150] * 6 + [100]


def test_an_empty_table_is_not_partitioned(
    transactional_db: None,
    eager: None,
    low_threshold: None,
    peers: HTTPServer,
    minimal_flow: dict[str, Any],
) -> None:
    with orders([]) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table))
        run = start_run("paid-orders-to-crm")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert source_partitions(run) is None
    assert figures(run)["push"] == ("succeeded", 0, None)
