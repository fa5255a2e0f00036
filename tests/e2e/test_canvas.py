"""The flow canvas in a real browser: build the minimal flow from nothing, and lay out 30 nodes.

Real services throughout: the live Django server, a Celery worker on the test database, a
PostgreSQL orders table as the source and an HTTP receiver on loopback as the CRM.
"""

from __future__ import annotations

from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.flowfile import apply_flow_file
from flows.models import Flow, FlowRun
from tests.conftest import wait_until
from tests.e2e.test_admin_journey import add_crm_connection, crm, log_in, orders
from tests.flows.helpers import SOURCE_DB_URL, OrdersTable, add_connection, posted_records

__all__ = ["crm", "orders"]

NODE = ".fp-node[data-key='{}']"


def centre(page: Any, selector: str) -> tuple[float, float]:
    # The live check redraws the nodes: an element found just before may be gone.
    box = wait_until(lambda: page.locator(selector).first.bounding_box(), 5, message=selector)
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag_type(page: Any, node_type: str, x: float, y: float) -> None:
    """Drag a node type from the palette to a point of the canvas (relative to it), found by
    searching the palette as a user would (a long catalog scrolls)."""
    page.fill(".fp-palette-search", node_type)
    page.locator(f".fp-palette-item[data-type='{node_type}']").scroll_into_view_if_needed()
    page.mouse.move(*centre(page, f".fp-palette-item[data-type='{node_type}']"))
    page.mouse.down()
    area = page.locator(".fp-viewport").bounding_box()
    page.mouse.move(area["x"] + x, area["y"] + y, steps=8)
    page.mouse.up()
    page.fill(".fp-palette-search", "")


def start_edge(page: Any, source: str) -> None:
    page.mouse.move(*centre(page, f"{NODE.format(source)} .fp-port-out .fp-port-dot"))
    page.mouse.down()


def drop_edge(page: Any, target: str) -> None:
    page.mouse.move(*centre(page, f"{NODE.format(target)} .fp-port-in .fp-port-dot"), steps=8)
    page.mouse.up()


def connect(page: Any, source: str, target: str) -> None:
    start_edge(page, source)
    drop_edge(page, target)


def rename(page: Any, old: str, new: str) -> None:
    page.click(f"{NODE.format(old)} .fp-node-head")
    page.fill(".fp-key-input", new)
    page.press(".fp-key-input", "Enter")
    page.wait_for_selector(NODE.format(new))


def field(name: str) -> str:
    return f".fp-panel .fp-field[data-field='{name}']"


@pytest.mark.worker
def test_build_the_minimal_flow_on_the_canvas(
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
    page.goto(f"{base}/admin/flows/flow/add/")
    if page.is_visible("#nav-sidebar"):
        page.click("#toggle-nav-sidebar")
    page.wait_for_selector(".fp-canvas-root[data-ready=true]")
    assert not page.is_visible("#nodes-group")  # the long form waits behind "Edit as form"
    page.fill(".fp-slug", "paid-orders")
    page.fill(".fp-name", "Paid orders to CRM")

    # The palette comes from the catalog, searchable, coloured by kind.
    page.fill(".fp-palette-search", "http post")
    assert page.locator(".fp-palette-item").count() == 1
    page.fill(".fp-palette-search", "")
    assert page.get_attribute(".fp-palette-item[data-type=sql_query]", "data-category") == "source"

    # Four types dragged onto the canvas, renamed.
    for i, (node_type, key) in enumerate(
        [
            ("sql_query", "orders"),
            ("filter", "paid"),
            ("map_fields", "shape"),
            ("http_post", "push"),
        ]
    ):
        width = page.locator(".fp-viewport").bounding_box()["width"]
        drag_type(page, node_type, 30 + (i % 2) * width / 2, 50 + (i // 2) * 150)
        rename(page, node_type, key)
    assert page.locator(".fp-node").count() == 4

    connect(page, "orders", "paid")
    connect(page, "paid", "shape")
    connect(page, "shape", "push")
    assert page.locator(".fp-edge").count() == 3

    # The puzzle is live: while dragging, the source and the node closing a cycle are dimmed,
    # and dropping there says why.
    start_edge(page, "shape")
    page.mouse.move(*centre(page, NODE.format("orders")), steps=4)
    assert "fp-node-blocked" in (page.get_attribute(NODE.format("orders"), "class") or "")
    blocked = page.locator(f"{NODE.format('paid')} .fp-port-in.fp-port-blocked")
    assert "cycle" in (blocked.get_attribute("data-reason") or "")
    page.mouse.up()
    assert "'orders' is a source (SQL query) and takes no input" in page.inner_text(".fp-toast")
    connect(page, "shape", "paid")
    assert "would close a cycle: paid → shape → paid" in page.inner_text(".fp-toast")
    connect(page, "paid", "shape")
    assert "already takes paid.out" in page.inner_text(".fp-toast")
    assert page.locator(".fp-edge").count() == 3

    # An edge can be selected and deleted, then drawn again.
    page.click(".fp-edge[data-from=shape][data-to=push] .fp-edge-hit", force=True)
    page.click(".fp-delete-edge")
    assert page.locator(".fp-edge").count() == 2
    connect(page, "shape", "push")

    # The config panels, with their structured widgets.
    page.click(f"{NODE.format('orders')} .fp-node-head")
    page.select_option(f"{field('connection')} select", "warehouse")
    page.fill(f"{field('query')} textarea", f"select id, email, status, amount from {orders.name}")
    for i, (column, kind) in enumerate(
        [("id", "integer"), ("email", "string"), ("status", "string"), ("amount", "float")]
    ):
        page.click(f"{field('columns')} .fp-row-add")
        row = f"{field('columns')} .fp-row[data-row='{i}']"
        page.fill(f"{row} .fp-pair-key", column)
        page.select_option(f"{row} .fp-pair-value", kind)

    page.click(f"{NODE.format('paid')} .fp-node-head")
    # the upstream schema is known: the condition's field is chosen from it
    page.click(f"{field('conditions')} .fp-row-add")
    page.wait_for_function(
        'document.querySelectorAll(".fp-panel [data-field=conditions] '
        'select.fp-source-field option").length > 4'
    )
    for i, (name, op, value) in enumerate([("status", "eq", "paid"), ("amount", "gt", "0")]):
        if i:
            page.click(f"{field('conditions')} .fp-row-add")
        row = f"{field('conditions')} .fp-row[data-row='{i}']"
        page.select_option(f"{row} .fp-source-field", name)
        page.select_option(f"{row} .fp-cond-op", op)
        page.fill(f"{row} .fp-cond-value", value)

    # The preview tab shows the filter's input and its output: only paid orders come out.
    page.click(".fp-tab[data-tab=preview]")
    page.click(".fp-preview-run")
    page.wait_for_selector(".fp-preview-out .fp-preview-table >> nth=1")
    output = page.locator(".fp-preview-out .fp-preview-table").last
    headers = [h.lower() for h in output.locator("thead th").all_inner_texts()]  # CSS upper-cases
    statuses = output.locator(f"tbody tr td:nth-child({headers.index('status') + 1})")
    assert statuses.count() > 0
    assert set(statuses.all_inner_texts()) == {"paid"}
    page.screenshot(path=str(screenshots / "canvas-preview.png"))
    page.click(".fp-tab[data-tab=config]")

    # the filter's output schema is known once the live check has seen its conditions
    page.wait_for_function("(window.fpCanvas.state.schemas.shape || {inputs: {}}).inputs.in")
    page.click(f"{NODE.format('shape')} .fp-node-head")
    page.wait_for_selector(f"{field('mapping')} .fp-row-add")
    for i, (target, source, cast) in enumerate(
        [("order_id", "id", ""), ("email", "email", ""), ("total", "amount", "float")]
    ):
        page.click(f"{field('mapping')} .fp-row-add")
        row = f"{field('mapping')} .fp-row[data-row='{i}']"
        page.fill(f"{row} .fp-map-target", target)
        page.select_option(f"{row} .fp-source-field", source)
        if cast:
            page.select_option(f"{row} .fp-map-cast", cast)
    page.click(f"{field('mapping')} .fp-row-add")
    row = f"{field('mapping')} .fp-row[data-row='3']"
    page.fill(f"{row} .fp-map-target", "source")
    page.select_option(f"{row} .fp-map-mode", "constant")  # a constant value
    page.fill(f"{row} .fp-map-value", "flowplatform")

    # Validate: the push node has no destination yet; the list names it and leads to it.
    page.click(".fp-validate-btn")
    link = page.locator(".fp-problem-link[data-node=push]").first
    link.wait_for()
    assert "node 'push'" in link.inner_text()
    assert page.locator(f"{NODE.format('push')}.fp-has-problems").count() == 1
    page.screenshot(path=str(screenshots / "canvas-problems.png"))
    link.click()
    assert page.input_value(".fp-key-input") == "push"
    page.select_option(f"{field('connection')} select", "crm")
    page.fill(f"{field('url')} input", "/ingest")
    page.click(".fp-validate-btn")
    page.wait_for_selector(".fp-problem-box.fp-ok")
    assert not Flow.objects.exists()  # validating saves nothing
    page.click(".fp-arrange-btn")  # left to right by level
    page.wait_for_function(
        'document.querySelector(".fp-node[data-key=push]").offsetLeft'
        ' > document.querySelector(".fp-node[data-key=shape]").offsetLeft'
    )
    page.click(".fp-panel-close")
    page.click(".fp-fit-btn")
    page.screenshot(path=str(screenshots / "canvas.png"))
    page.click(f"{NODE.format('paid')} .fp-node-head")
    page.click(f"{field('conditions')} .fp-label")
    page.screenshot(path=str(screenshots / "canvas-config-panel.png"))

    # Save: a new flow, version 1, positions kept in the flow file.
    page.click(".fp-save-btn")
    page.wait_for_selector("text=Flow paid-orders created (version 1).")
    flow = Flow.objects.get(slug="paid-orders")
    nodes = {n.key: n for n in flow.nodes.all()}
    assert set(nodes) == {"orders", "paid", "shape", "push"}
    assert nodes["orders"].ui["x"] < nodes["push"].ui["x"]
    assert nodes["paid"].config["conditions"] == [
        {"field": "status", "op": "eq", "value": "paid"},
        {"field": "amount", "op": "gt", "value": 0},
    ]
    assert nodes["shape"].config["mapping"] == {
        "order_id": "id",
        "email": "email",
        "total": {"source": "amount", "cast": "float"},
        "source": {"value": "flowplatform"},
    }
    page.wait_for_selector(".fp-canvas-root[data-ready=true]")
    assert page.locator(".fp-node").count() == 4

    # Run it.
    page.click("a.fp-run-link")
    page.click("input[type=submit][value='Run now']")
    page.wait_for_selector("#run-graph")
    wait_until(lambda: FlowRun.objects.get().is_finished, 60, 0.2, "the run did not finish")
    run = FlowRun.objects.get()
    assert run.status == "succeeded", run.error
    expected = [r[0] for r in orders.rows if r[3] == "paid" and r[4] > 0]
    assert [r["order_id"] for r in posted_records(crm)] == expected

    # The run's page offers each node's output: the filter's first records, all paid.
    page.goto(f"{base}/admin/flows/flowrun/{run.pk}/change/")
    page.click("tr:has-text('paid') .fp-output-link a")
    page.wait_for_selector("table.fp-output")
    shown = page.inner_text("table.fp-output")
    assert "paid" in shown and "refunded" not in shown and "pending" not in shown


def thirty_nodes() -> dict[str, Any]:
    """Five lines of six nodes; the middle ones also feed a shared sink."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for line in range(5):
        keys = [f"l{line}_{step}" for step in ("read", "keep", "drop", "shape", "name", "send")]
        nodes.append(
            {
                "key": keys[0],
                "type": "sql_query",
                "config": {"connection": "warehouse", "query": "select 1 as id"},
            }
        )
        conditions = [{"field": "id", "op": "gt", "value": line}]
        nodes.append({"key": keys[1], "type": "filter", "config": {"conditions": conditions}})
        nodes.append({"key": keys[2], "type": "filter", "config": {"conditions": conditions}})
        nodes.append({"key": keys[3], "type": "map_fields", "config": {"mapping": {"a": "id"}}})
        nodes.append({"key": keys[4], "type": "map_fields", "config": {"mapping": {"b": "a"}}})
        nodes.append(
            {"key": keys[5], "type": "http_post", "config": {"connection": "crm", "url": "/in"}}
        )
        edges += [{"from": a, "to": b} for a, b in pairwise(keys)]
        if line:
            edges.append({"from": f"l{line}_keep", "to": "l0_shape"})
    return {"slug": "thirty", "name": "Thirty nodes", "nodes": nodes, "edges": edges}


def test_a_30_node_flow_lays_out_without_overlaps(
    page: Any, live_server: Any, admin_user: Any, screenshots: Path
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("crm", "http://127.0.0.1:9/")
    flow, _ = apply_flow_file(thirty_nodes())
    base = live_server.url
    log_in(page, base)
    page.goto(f"{base}/admin/flows/flow/{flow.pk}/change/")
    if page.is_visible("#nav-sidebar"):
        page.click("#toggle-nav-sidebar")  # the canvas takes the room (the browser remembers)
        page.reload()
    page.wait_for_selector(".fp-canvas-root[data-ready=true]")
    boxes = [page.locator(".fp-node").nth(i).bounding_box() for i in range(30)]
    assert page.locator(".fp-node").count() == 30

    def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
        return (
            a["x"] < b["x"] + b["width"]
            and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"]
            and b["y"] < a["y"] + a["height"]
        )

    clashes = [(i, j) for (i, a), (j, b) in combinations(enumerate(boxes), 2) if overlap(a, b)]
    assert not clashes
    # Fit shows the whole flow, at a zoom where the labels stay readable.
    area = page.locator(".fp-viewport").bounding_box()
    for box in boxes:
        assert area["x"] <= box["x"] and box["x"] + box["width"] <= area["x"] + area["width"]
        assert area["y"] <= box["y"] and box["y"] + box["height"] <= area["y"] + area["height"]
    assert int(page.inner_text(".fp-zoom-label").rstrip("%")) >= 45
    # Left to right by level: each line's nodes in order.
    xs = {
        key: page.locator(NODE.format(key)).bounding_box()["x"]
        for key in ("l2_read", "l2_keep", "l2_drop", "l2_shape", "l2_name", "l2_send")
    }
    assert list(xs.values()) == sorted(xs.values())
    page.screenshot(path=str(screenshots / "canvas-30-nodes.png"))

    # The admin's dark theme: the nodes follow it.
    light = page.eval_on_selector(".fp-node", "el => getComputedStyle(el).backgroundColor")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    dark = page.eval_on_selector(".fp-node", "el => getComputedStyle(el).backgroundColor")
    assert light != dark
    page.screenshot(path=str(screenshots / "canvas-dark.png"))
