"""The fork-and-merge example end to end on a real worker: orders (PostgreSQL) deduplicated,
joined with customers (a second query), branched by country, revenue summed per Madrid day on
each route, and posted to two HTTP peers on loopback. The peers must get exactly the figures
this test computes on its own from the rows it wrote."""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql
from pytest_httpserver import HTTPServer

from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from flows.watch import summary_table
from tests.conftest import WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = pytest.mark.worker

ROOT = Path(__file__).resolve().parents[2]
MADRID = ZoneInfo("Europe/Madrid")
COUNTRIES = ["ES", "FR", "DE", "PT"]


class Tables:
    """An orders table (some orders imported twice, the later import wins) and a customers
    table, uniquely named in the source database."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        suffix = uuid.uuid4().hex[:10]
        self.orders, self.customers = f"orders_{suffix}", f"customers_{suffix}"
        self.customer_rows = [(i, rng.choice(COUNTRIES)) for i in range(1, 41)]
        # Around the spring clock change in Madrid (2026-03-29), and across midnights.
        start = dt.datetime(2026, 3, 27, 20, tzinfo=dt.UTC)
        self.order_rows = []
        for order_id in range(1, 1501):
            created = start + dt.timedelta(minutes=rng.randint(0, 4 * 24 * 60))
            customer = rng.randint(1, 45)  # 41..45 have no customer row: the join drops them
            imports = 2 if order_id % 7 == 0 else 1
            for version in range(imports):
                amount = Decimal(rng.randint(1, 999_999)) / 100
                self.order_rows.append((order_id, customer, amount, created, version))
        rng.shuffle(self.order_rows)

    def create(self) -> None:
        with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "create table {} (id int, customer_id int, amount numeric(12,2), "
                    "created_at timestamptz, imported_at int)"
                ).format(sql.Identifier(self.orders))
            )
            conn.execute(
                sql.SQL("create table {} (id int primary key, country text)").format(
                    sql.Identifier(self.customers)
                )
            )
            for table, rows in (
                (self.orders, self.order_rows),
                (self.customers, self.customer_rows),
            ):
                with conn.cursor().copy(
                    sql.SQL("copy {} from stdin").format(sql.Identifier(table))
                ) as copy_:
                    for row in rows:
                        copy_.write_row(row)

    def drop(self) -> None:
        with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
            for table in (self.orders, self.customers):
                conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(table)))

    def expected(self) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """(Spain's (day -> revenue, orders), the rest's ((country, day) -> revenue, orders)),
        computed here from the rows written: the last import of each order, orders of known
        customers only, days on Madrid's calendar."""
        last: dict[int, tuple[Any, ...]] = {}
        for row in sorted(self.order_rows, key=lambda r: (r[0], r[4])):
            last[row[0]] = row
        country = dict(self.customer_rows)
        spain: dict[Any, list[Any]] = defaultdict(lambda: [Decimal(0), 0])
        rest: dict[Any, list[Any]] = defaultdict(lambda: [Decimal(0), 0])
        for _order, customer, amount, created, _version in last.values():
            if customer not in country:
                continue
            day = created.astimezone(MADRID).date().isoformat()
            figures = spain[day] if country[customer] == "ES" else rest[(country[customer], day)]
            figures[0] += amount
            figures[1] += 1
        return (
            {k: tuple(v) for k, v in spain.items()},
            {k: tuple(v) for k, v in rest.items()},
        )


@pytest.fixture
def tables() -> Iterator[Tables]:
    made = Tables(seed=14)
    made.create()
    try:
        yield made
    finally:
        made.drop()


@pytest.fixture
def finance(httpserver: HTTPServer) -> HTTPServer:
    for path in ("/revenue/spain", "/revenue/rest"):
        httpserver.expect_request(path, method="POST").respond_with_json({"ok": True})
    return httpserver


def flow_for(tables: Tables) -> dict[str, Any]:
    flow: dict[str, Any] = copy.deepcopy(
        json.loads((ROOT / "examples" / "orders-by-country.json").read_text())
    )
    nodes = {node["key"]: node for node in flow["nodes"]}
    for key, table in (("orders", tables.orders), ("customers", tables.customers)):
        query = nodes[key]["config"]["query"]
        nodes[key]["config"]["query"] = query.replace(f"from {key}", f"from {table}")
    return flow


def received(server: HTTPServer, path: str) -> list[dict[str, Any]]:
    records = []
    for request, _response in server.log:
        if request.path == path:
            body = json.loads(request.get_data(), parse_float=Decimal)
            records.extend(body if isinstance(body, list) else [body])
    return records


def test_orders_by_country_reach_each_peer_with_exact_daily_revenue(
    worker: WorkerProcess, tables: Tables, finance: HTTPServer
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("crm", finance.url_for("/"))
    apply_flow_file(flow_for(tables))
    run = wait_for_run(start_run("orders-by-country"), timeout=120)
    assert run.status == "succeeded", run.error

    spain, rest = tables.expected()
    got_spain = {
        r["day"][:10]: (r["revenue"], r["orders"]) for r in received(finance, "/revenue/spain")
    }
    got_rest = {
        (r["country"], r["day"][:10]): (r["revenue"], r["orders"])
        for r in received(finance, "/revenue/rest")
    }
    assert got_spain == spain and len(spain) >= 4
    assert got_rest == rest and len(rest) >= 12
    # each day bucket starts at Madrid midnight, at that day's offset
    days = {r["day"] for r in received(finance, "/revenue/spain")}
    assert "2026-03-29T00:00:00+01:00" in days and "2026-03-30T00:00:00+02:00" in days

    nodes = {n.node_key: n for n in run.node_runs.all()}
    distinct_orders = len({row[0] for row in tables.order_rows})
    assert nodes["orders"].rows_out == len(tables.order_rows)
    assert nodes["unique_orders"].rows_out == distinct_orders
    joined = sum(n for _, n in spain.values()) + sum(n for _, n in rest.values())
    assert nodes["with_customer"].rows_out == joined
    assert nodes["by_country"].rows_by_port == {
        "spain": sum(n for _, n in spain.values()),
        "rest": sum(n for _, n in rest.values()),
    }
    assert nodes["spain_daily"].rows_out == len(spain)
    assert nodes["post_spain"].rows_in == len(spain) and nodes["post_rest"].rows_in == len(rest)
    line = next(line for line in summary_table(run) if line.startswith("by_country"))
    assert f"ports: spain {nodes['by_country'].rows_by_port['spain']:,}" in line
