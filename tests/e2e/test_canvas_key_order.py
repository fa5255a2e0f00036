"""The canvas saves a flow with the key order it was given: a mapping edited in the browser
keeps its rows' order, and what the page did not touch (headers, params) keeps its own."""

from __future__ import annotations

from typing import Any

from flows.flowfile import apply_flow_file, export_flow
from flows.models import Flow, FlowVersion
from tests.e2e.test_admin_journey import log_in
from tests.flows.helpers import SOURCE_DB_URL, add_connection

NODE = ".fp-node[data-key='{}']"
MAPPING_FIELD = ".fp-panel .fp-field[data-field='mapping']"

#: Keys in an order PostgreSQL's jsonb would change (it sorts shortest first).
MAPPING = {
    "zz_last_but_long": "id",
    "total_amount": {"source": "amount", "cast": "float"},
    "b": "email",
    "status_text": "status",
}
HEADERS = {"X-Zeta": "1", "X-A": "2", "X-Long-Header-Name": "3"}
PARAMS = {"zeta": 0, "a": 1}


def flow_file() -> dict[str, Any]:
    return {
        "slug": "ordered",
        "name": "Ordered keys",
        "nodes": [
            {
                "key": "orders",
                "type": "sql_query",
                "config": {
                    "connection": "warehouse",
                    "query": "select 1 as id where %(zeta)s < %(a)s",
                    "params": PARAMS,
                },
            },
            {"key": "shape", "type": "map_fields", "config": {"mapping": MAPPING}},
            {
                "key": "push",
                "type": "http_post",
                "config": {"url": "/ingest", "connection": "crm", "headers": HEADERS},
            },
        ],
        "edges": [{"from": "orders", "to": "shape"}, {"from": "shape", "to": "push"}],
    }


def test_the_canvas_saves_mappings_headers_and_params_in_their_order(
    page: Any, live_server: Any, admin_user: Any
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("crm", "http://127.0.0.1:9/")
    flow, _ = apply_flow_file(flow_file())
    base = live_server.url
    log_in(page, base)
    page.goto(f"{base}/admin/flows/flow/{flow.pk}/change/")
    page.wait_for_selector(".fp-canvas-root[data-ready=true]")

    # The panel shows the mapping's rows in the file's order; one more is added at the end.
    page.click(f"{NODE.format('shape')} .fp-node-head")
    page.wait_for_selector(f"{MAPPING_FIELD} .fp-row[data-row='3']")
    targets = page.locator(f"{MAPPING_FIELD} .fp-map-target")
    assert [targets.nth(i).input_value() for i in range(4)] == list(MAPPING)
    page.click(f"{MAPPING_FIELD} .fp-row-add")
    row = f"{MAPPING_FIELD} .fp-row[data-row='4']"
    page.fill(f"{row} .fp-map-target", "added")
    source = page.locator(f"{row} .fp-source-field")
    if source.evaluate("el => el.tagName") == "SELECT":
        source.select_option("id")
    else:
        source.fill("id")

    page.click(".fp-save-btn")
    page.wait_for_selector("text=The graph is saved as version 2.")
    saved = export_flow(Flow.objects.get(slug="ordered"))
    assert list(saved["nodes"][1]["config"]["mapping"]) == [*MAPPING, "added"]
    assert list(saved["nodes"][2]["config"]["headers"]) == list(HEADERS)
    assert list(saved["nodes"][0]["config"]["params"]) == list(PARAMS)
    version = FlowVersion.objects.get(flow__slug="ordered", number=2)
    assert list(version.definition["nodes"][1]["config"]["mapping"]) == [*MAPPING, "added"]
