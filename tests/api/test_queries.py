"""List endpoints cost a fixed number of queries, whatever the number of rows (no N+1)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rest_framework.test import APIClient

from flows.flowfile import apply_flow_file
from flows.models import Flow, FlowRun
from flows.services import start_run
from tests.flows.helpers import add_connection

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

ROWS = 30


@pytest.fixture
def many_flows(minimal_flow: dict[str, Any]) -> None:
    for index in range(ROWS):
        apply_flow_file({**copy.deepcopy(minimal_flow), "slug": f"flow-{index:02d}"})


@pytest.fixture
def many_runs(flow: Flow) -> None:
    for _ in range(ROWS):
        start_run(flow)


# auth (token + user) and the page's count and rows: 4; a savepoint pair for writes is not here.
MAX_LIST_QUERIES = 5


def test_flow_list(api: APIClient, many_flows: None, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        body = api.get("/api/v1/flows/", {"limit": ROWS}).json()
    assert len(body["results"]) == ROWS
    assert all(f["version"] == 1 and f["node_count"] == 4 for f in body["results"])


def test_run_list(api: APIClient, many_runs: None, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        body = api.get("/api/v1/runs/", {"limit": ROWS, "status": "queued"}).json()
    assert len(body["results"]) == ROWS
    assert all(r["flow"] == "paid-orders-to-crm" and r["version"] == 1 for r in body["results"])


def test_flow_run_list(api: APIClient, many_runs: None, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(MAX_LIST_QUERIES + 1):  # + the flow itself
        body = api.get("/api/v1/flows/paid-orders-to-crm/runs/", {"limit": ROWS}).json()
    assert len(body["results"]) == ROWS


def test_run_detail_with_node_runs(
    api: APIClient, many_runs: None, django_assert_max_num_queries: Any
) -> None:
    run = FlowRun.objects.first()
    assert run is not None
    with django_assert_max_num_queries(4):  # token, run, node runs, alert deliveries
        body = api.get(f"/api/v1/runs/{run.id}/").json()
    assert len(body["node_runs"]) == 4


def test_version_list(
    api: APIClient, flow: Flow, minimal_flow: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    for size in range(2, ROWS):
        minimal_flow["nodes"][3]["config"]["batch_size"] = size
        apply_flow_file(minimal_flow)
    with django_assert_max_num_queries(MAX_LIST_QUERIES + 1):
        body = api.get("/api/v1/flows/paid-orders-to-crm/versions/", {"limit": ROWS}).json()
    assert len(body["results"]) == ROWS - 1


def test_connection_list(api: APIClient, django_assert_max_num_queries: Any) -> None:
    for index in range(ROWS):
        add_connection(f"c{index}", "https://example.test", {"X-Key": "v"})
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        body = api.get("/api/v1/connections/", {"limit": ROWS}).json()
    assert len(body["results"]) == ROWS
    assert all(c["header_names"] == ["X-Key"] for c in body["results"])


def test_node_catalog_needs_no_query_beyond_auth(
    api: APIClient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(1):
        assert api.get("/api/v1/nodes/").status_code == 200
