"""Builders shared by the flow tests: a PostgreSQL orders table and connections."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from pytest_httpserver import HTTPServer

from nodes.models import Connection

SOURCE_DB_URL = "postgresql://postgres@127.0.0.1:5432/test"
STATUSES = ("paid", "pending", "refunded")


@dataclass
class OrdersTable:
    name: str
    rows: list[tuple[Any, ...]]

    def expected_paid(self) -> list[dict[str, Any]]:
        """What the minimal flow must deliver, in order."""
        return [
            {"order_id": r[0], "total": float(r[4]), "email": r[2]}
            for r in self.rows
            if r[3] == "paid" and r[4] > 0
        ]


@contextmanager
def orders_table(count: int) -> Iterator[OrdersTable]:
    """A uniquely named orders table in the source database, dropped afterwards."""
    name = f"orders_{uuid.uuid4().hex[:10]}"
    rows = [
        (
            i,
            f"Client {i} ✓ Ünïcödé",
            f"c{i}@example.test",
            STATUSES[i % 3],
            Decimal(i % 50) - Decimal("0.50") if i % 7 else Decimal(0),
            f"2026-01-{1 + i % 28:02d}T10:00:00+00:00",
        )
        for i in range(1, count + 1)
    ]
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "create table {} (id int primary key, customer text, email text, status text,"
                " amount numeric(12,2), created_at timestamptz)"
                # Never analyzed unless a test says so: an expert's partition_column is then
                # cut by counting rows, whenever autovacuum would have come (decision 0041).
                " with (autovacuum_enabled = false)"
            ).format(sql.Identifier(name))
        )
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("copy {} from stdin").format(sql.Identifier(name))) as copy,
        ):
            for row in rows:
                copy.write_row(row)
    try:
        yield OrdersTable(name, rows)
    finally:
        with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))


def add_connection(name: str, url: str, headers: dict[str, str] | None = None) -> Connection:
    """Create the connection, or re-point it when it exists (``example_connections``)."""
    connection = Connection.objects.filter(name=name).first() or Connection(name=name)
    connection.set_url(url)
    connection.set_headers(headers or {})
    connection.save()
    return connection


def accepting_crm(httpserver: HTTPServer) -> HTTPServer:
    """The ``crm`` connection to a peer that answers every POST to /ingest with ``ok``."""
    httpserver.expect_request("/ingest", method="POST").respond_with_json({"ok": True})
    add_connection("crm", httpserver.url_for("/"))
    return httpserver


def point_minimal_flow_at(flow: dict[str, Any], table: str) -> dict[str, Any]:
    flow["nodes"][0]["config"]["query"] = (
        f"select id, customer, email, status, amount, created_at from {table}"
        " where id > %(min_id)s order by id"
    )
    return flow


def posted_records(httpserver: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for request, _response in httpserver.log:
        body = json.loads(request.get_data())
        records.extend(body if isinstance(body, list) else [body])
    return records


def queued_run(flow_file: dict[str, Any]) -> Any:
    """A run of the flow recorded but never dispatched, so that its state changes can be
    driven by hand."""
    from flows.flowfile import apply_flow_file
    from flows.models import FlowRun, NodeRun
    from flows.versions import ensure_current_version

    flow, _created = apply_flow_file(flow_file)
    version = ensure_current_version(flow)
    run = FlowRun.objects.create(flow=flow, version=version, trigger="api")
    NodeRun.objects.bulk_create(
        NodeRun(run=run, node_key=node["key"], node_type=node["type"], position=index)
        for index, node in enumerate(version.definition["nodes"])
    )
    return run
