"""The designer knows a branch node's ports from its config: it draws them, its edges leave by
them, and a route added to the config is a new port once the live check has seen it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.flowfile import apply_flow_file
from tests.e2e.test_admin_journey import log_in
from tests.e2e.test_canvas import NODE
from tests.flows.helpers import SOURCE_DB_URL, add_connection

ROOT = Path(__file__).resolve().parents[2]


def ports(page: Any, key: str) -> list[str]:
    found: list[str] = page.locator(f"{NODE.format(key)} .fp-port-out").evaluate_all(
        "els => els.map((el) => el.dataset.port)"
    )
    return found


def test_branch_ports_follow_the_config(
    page: Any, live_server: Any, admin_user: Any, screenshots: Path
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("crm", "http://127.0.0.1:9/")
    flow, _ = apply_flow_file(
        json.loads((ROOT / "examples" / "orders-by-country.json").read_text())
    )
    base = live_server.url
    log_in(page, base)
    page.goto(f"{base}/admin/flows/flow/{flow.pk}/change/")
    page.wait_for_selector(".fp-canvas-root[data-ready=true]")
    page.wait_for_function("window.fpCanvas.graph.derivedPorts.has('by_country')")
    assert ports(page, "by_country") == ["spain", "rest"]
    assert ports(page, "with_customer") == ["out"]
    edge = page.locator(".fp-edge[data-from=by_country][data-to=rest_daily] title")
    assert edge.text_content().startswith("by_country.rest → rest_daily.in")

    # A third route, typed in the node's JSON: the port appears after the live check.
    page.click(f"{NODE.format('by_country')} .fp-node-head")
    page.check(".fp-json-toggle")
    config = json.loads(page.input_value(".fp-json-area"))
    config["config"]["routes"].append(
        {"port": "france", "conditions": [{"field": "country", "op": "eq", "value": "FR"}]}
    )
    page.fill(".fp-json-area", json.dumps(config))
    page.wait_for_function(
        "document.querySelectorAll(\"[data-key='by_country'] .fp-port-out\").length === 3"
    )
    assert ports(page, "by_country") == ["spain", "france", "rest"]
    page.screenshot(path=str(screenshots / "canvas-branch-ports.png"))
