"""The README's API walk-through on a real worker: connections, flow, run, poll until done."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.api.conftest import make_user, token_client
from tests.conftest import WorkerProcess, wait_until
from tests.flows.helpers import SOURCE_DB_URL, orders_table, point_minimal_flow_at, posted_records

pytestmark = pytest.mark.worker


def finished(run: dict[str, Any]) -> dict[str, Any] | None:
    return None if run["status"] in ("queued", "running") else run


def test_create_the_minimal_flow_run_it_and_watch_it_finish(
    worker: WorkerProcess, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    api = token_client(make_user("ci", superuser=True))
    httpserver.expect_request("/ingest", method="POST").respond_with_json({"ok": True})
    for name, url in (("warehouse", SOURCE_DB_URL), ("crm", httpserver.url_for("/"))):
        response = api.post("/api/v1/connections/", {"name": name, "url": url}, format="json")
        assert response.status_code == 201, response.json()
    with orders_table(500) as table:
        flow = point_minimal_flow_at(minimal_flow, table.name)
        assert api.post("/api/v1/flows/", flow, format="json").status_code == 201
        started = api.post(
            "/api/v1/flows/paid-orders-to-crm/runs/", {"params": {"min_id": 0}}, format="json"
        )
        assert started.status_code == 202, started.json()
        run_url = started["Location"]
        run = wait_until(lambda: finished(api.get(run_url).json()), timeout=60, interval=0.2)
    assert run["status"] == "succeeded", run
    nodes = {n["node_key"]: n for n in run["node_runs"]}
    assert nodes["orders"]["rows_out"] == 500
    assert nodes["paid"]["rows_out"] == len(table.expected_paid())
    assert all(n["status"] == "succeeded" and n["duration_ms"] is not None for n in nodes.values())
    assert len(posted_records(httpserver)) == len(table.expected_paid())
