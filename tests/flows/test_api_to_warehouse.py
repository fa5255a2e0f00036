"""The README's "API → database" recipe, on the real worker: a paginated JSON API (a loopback
peer) upserted into PostgreSQL; a second run after changes updates in place."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from tests.conftest import ROOT, WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = pytest.mark.worker
PAGE = 40


class Shop:
    """Orders served 40 a page with a cursor, as `meta.next_cursor`."""

    def __init__(self, count: int) -> None:
        self.orders = [
            {"id": i, "customer": f"c{i}", "status": "paid", "amount": f"{i}.25"}
            for i in range(1, count + 1)
        ]

    def __call__(self, request: Request) -> Response:
        start = int(request.args.get("cursor", "0"))
        page = self.orders[start : start + PAGE]
        following = start + PAGE
        meta = {"next_cursor": str(following)} if following < len(self.orders) else {}
        return Response(json.dumps({"data": page, "meta": meta}), content_type="application/json")


@pytest.fixture
def warehouse_schema(worker: WorkerProcess) -> Iterator[str]:
    name = f"warehouse_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(name)))
    add_connection("warehouse", SOURCE_DB_URL)
    yield name
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


def recipe(schema: str) -> dict[str, Any]:
    flow: dict[str, Any] = json.loads((ROOT / "examples" / "api-to-warehouse.json").read_text())
    flow["nodes"][2]["config"]["table"] = f"{schema}.shop_orders"
    return flow


def stored(schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(SOURCE_DB_URL) as conn:
        return conn.execute(
            sql.SQL("select id, customer, status, amount from {} order by id").format(
                sql.Identifier(schema, "shop_orders")
            )
        ).fetchall()


def test_the_recipe_loads_every_page_once_and_updates_in_place(
    warehouse_schema: str, httpserver: HTTPServer
) -> None:
    shop = Shop(230)
    httpserver.expect_request("/orders").respond_with_handler(shop)
    add_connection("shop-api", httpserver.url_for("/"))
    apply_flow_file(recipe(warehouse_schema))

    first = wait_for_run(start_run("api-orders-to-warehouse"), timeout=60)
    assert first.status == "succeeded", first.error
    assert len(stored(warehouse_schema)) == 230

    for order in shop.orders[:10]:
        order["status"] = "refunded"
    second = wait_for_run(start_run("api-orders-to-warehouse"), timeout=60)
    assert second.status == "succeeded", second.error
    expected = [(o["id"], o["customer"], o["status"], Decimal(o["amount"])) for o in shop.orders]
    assert stored(warehouse_schema) == expected
