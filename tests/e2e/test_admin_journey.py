"""A person builds and runs the minimal flow in the admin, in a real browser.

Real services throughout: the live Django server, a Celery worker on the test database, a
PostgreSQL orders table as the source and an HTTP receiver on loopback as the CRM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.models import Flow, FlowRun
from tests.conftest import WorkerProcess, wait_until
from tests.flows.helpers import (
    SOURCE_DB_URL,
    OrdersTable,
    add_connection,
    orders_table,
    posted_records,
)

pytestmark = pytest.mark.worker

CONDITIONS = [
    {"field": "status", "op": "eq", "value": "paid"},
    {"field": "amount", "op": "gt", "value": 0},
]
MAPPING = {
    "order_id": "id",
    "email": "email",
    "total": {"source": "amount", "cast": "float"},
    "source": {"value": "flowplatform"},
}


@pytest.fixture
def orders(worker: WorkerProcess) -> Iterator[OrdersTable]:
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(60) as table:
        yield table


@pytest.fixture
def crm(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/ingest", method="POST").respond_with_json({"ok": True})
    return httpserver


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def add_crm_connection(page: Any, base: str, url: str) -> None:
    page.goto(f"{base}/admin/nodes/connection/add/")
    page.click("#toggle-nav-sidebar")  # more room for the forms (the browser remembers)
    page.fill("#id_name", "crm")
    page.fill("#id_url", url)
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")


def add_node(page: Any, index: int, key: str, node_type: str, config: dict[str, str]) -> None:
    if index > 0:
        page.click("#nodes-group .add-row a")
    prefix = f"#id_nodes-{index}-"
    page.fill(f"{prefix}node_key", key)
    page.select_option(f"{prefix}node_type", node_type)
    for name, value in config.items():
        page.fill(f"{prefix}cfg__{node_type}__{name}", value)


def add_edge(page: Any, index: int, source: str, target: str) -> None:
    if index > 0:
        page.click("#edges-group .add-row a")
    page.select_option(f"#id_edges-{index}-from_node", source)
    page.select_option(f"#id_edges-{index}-to_node", target)


def test_build_validate_and_run_the_minimal_flow(
    page: Any,
    live_server: Any,
    admin_user: Any,
    orders: OrdersTable,
    crm: HTTPServer,
    screenshots: Path,
) -> None:
    base = live_server.url
    log_in(page, base)
    add_crm_connection(page, base, crm.url_for("/"))

    # Design the flow through the forms, with a typo in the filter's operator.
    page.goto(f"{base}/admin/flows/flow/add/?form=1")
    page.fill("#id_slug", "paid-orders")
    page.fill("#id_name", "Paid orders to CRM")
    query = f"select id, email, status, amount from {orders.name} order by id"
    add_node(page, 0, "orders", "sql_query", {"connection": "warehouse", "query": query})
    typo = [{**CONDITIONS[0], "op": "eqq"}, CONDITIONS[1]]
    add_node(page, 1, "paid", "filter", {"conditions": json.dumps(typo)})
    add_node(page, 2, "shape", "map_fields", {"mapping": json.dumps(MAPPING)})
    add_node(page, 3, "push", "http_post", {"connection": "crm", "url": "/ingest"})
    # only the selected type's config is on show
    assert page.is_visible("#id_nodes-1-cfg__filter__conditions")
    assert not page.is_visible("#id_nodes-1-cfg__sql_query__query")
    for index, (source, target) in enumerate(
        [("orders", "paid"), ("paid", "shape"), ("shape", "push")]
    ):
        add_edge(page, index, source, target)

    # Validate: the error is at the conditions field of the 'paid' node, nothing is saved.
    page.click("input[name=_validate]")
    error = page.locator("#nodes-1 .field-cfg__filter__conditions .errorlist")
    assert error.inner_text().startswith("conditions[0].op: 'eqq' is not one of eq, ne, gt")
    assert not Flow.objects.exists()

    page.fill("#id_nodes-1-cfg__filter__conditions", json.dumps(CONDITIONS))
    page.click("input[name=_validate]")
    page.wait_for_selector("text=No problems found. The flow is not saved yet.")
    page.click("input[name=_continue]")
    page.wait_for_selector("text=The graph is saved as version 1.")
    assert page.locator("#flow-graph g.flow-node").count() == 4
    top = {"x": 0, "y": 0, "width": 1360, "height": 2000}  # the picture and the first nodes
    page.screenshot(path=str(screenshots / "flow-page.png"), full_page=True, clip=top)

    # Run it and follow the run page until every node has succeeded.
    page.click("a.fp-run-link")
    page.click("input[type=submit][value='Run now']")
    page.wait_for_selector("#run-graph")
    run = FlowRun.objects.get()
    wait_until(lambda: FlowRun.objects.get().is_finished, 60, 0.2, "the run did not finish")
    page.reload()
    rows = page.locator("tr.fp-node-run")
    assert rows.count() == 4
    statuses = {
        rows.nth(i).get_attribute("data-node"): rows.nth(i).get_attribute("data-status")
        for i in range(4)
    }
    assert statuses == dict.fromkeys(["orders", "paid", "shape", "push"], "succeeded"), (
        FlowRun.objects.get().error
    )
    assert page.locator("#run-graph g.flow-node.status-succeeded").count() == 4
    page.screenshot(path=str(screenshots / "run-page.png"), full_page=True)

    expected = [r[0] for r in orders.rows if r[3] == "paid" and r[4] > 0]
    assert [r["order_id"] for r in posted_records(crm)] == expected
    assert run.trigger == "manual"
