"""The engine end to end on a real Celery worker, PostgreSQL and an HTTP peer on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from flows.services import start_run, wait_for_run
from tests.conftest import WorkerProcess
from tests.flows.helpers import (
    SOURCE_DB_URL,
    accepting_crm,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    posted_records,
)

pytestmark = pytest.mark.worker


def statuses(run: FlowRun) -> dict[str, str]:
    return dict(run.node_runs.values_list("node_key", "status"))


@pytest.fixture
def crm(httpserver: HTTPServer) -> HTTPServer:
    return accepting_crm(httpserver)


@pytest.fixture
def warehouse(worker: WorkerProcess) -> None:
    add_connection("warehouse", SOURCE_DB_URL)


def test_minimal_flow_delivers_exactly_the_paid_orders(
    worker: WorkerProcess, warehouse: None, crm: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    with orders_table(3000) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    delivered = posted_records(crm)
    expected = table.expected_paid()
    assert len(delivered) == len(expected) > 600
    assert [(d["order_id"], d["total"], d["customer"]["email"]) for d in delivered] == [
        (e["order_id"], e["total"], e["email"]) for e in expected
    ]
    assert delivered[0]["customer"]["name"].endswith("✓ Ünïcödé")
    assert delivered[0]["source"] == "flowplatform"
    nodes = {n.node_key: n for n in run.node_runs.all()}
    assert nodes["orders"].rows_out == 3000
    assert nodes["paid"].rows_in == 3000
    assert nodes["paid"].rows_out == len(expected)
    assert nodes["push"].rows_out == -(-len(expected) // 100)  # one summary per request
    assert all(n.status == "succeeded" and n.attempts == 1 for n in nodes.values())


def test_fan_out_and_fan_in(
    worker: WorkerProcess, warehouse: None, crm: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    flow = minimal_flow
    flow["nodes"].insert(
        2,
        {
            "key": "refunded",
            "type": "filter",
            "config": {"conditions": [{"field": "status", "op": "eq", "value": "refunded"}]},
        },
    )
    flow["nodes"][1]["config"]["conditions"] = [{"field": "status", "op": "eq", "value": "paid"}]
    flow["edges"] = [
        {"from": "orders", "to": "paid"},
        {"from": "orders", "to": "refunded"},
        {"from": "paid", "to": "shape"},
        {"from": "refunded", "to": "shape"},
        {"from": "shape", "to": "push"},
    ]
    with orders_table(300) as table:
        apply_flow_file(point_minimal_flow_at(flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    assert len(posted_records(crm)) == 200  # paid and refunded, two thirds of 300
    assert set(statuses(run).values()) == {"succeeded"}


def test_failing_node_fails_the_run_and_downstream_never_runs(
    worker: WorkerProcess, warehouse: None, crm: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["nodes"][0]["config"]["query"] = "selec id from nowhere"
    apply_flow_file(minimal_flow)
    run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "failed"
    assert run.error.startswith("node 'orders' failed:")
    orders = run.node_runs.get(node_key="orders")
    assert "syntax error" in orders.error
    assert orders.traceback
    assert statuses(run) == {
        "orders": "failed",
        "paid": "skipped",
        "shape": "skipped",
        "push": "skipped",
    }
    assert posted_records(crm) == []


def test_http_retries_on_503_then_succeeds(
    worker: WorkerProcess, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    httpserver.expect_ordered_request("/ingest").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/ingest").respond_with_data("busy", status=503)
    httpserver.expect_request("/ingest").respond_with_json({"ok": True})
    add_connection("crm", httpserver.url_for("/"))
    minimal_flow["nodes"][3]["config"].update(batch_size=1000, retry_backoff_s=0.05)
    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    keys = {request.headers["Idempotency-Key"] for request, _ in httpserver.log}
    assert len(httpserver.log) == 3 and len(keys) == 1
    assert run.node_runs.get(node_key="push").rows_out == 1


def test_plugin_node_runs_on_the_worker(
    worker: WorkerProcess, warehouse: None, crm: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    flow = minimal_flow
    flow["nodes"].insert(3, {"key": "loud", "type": "dummy_upper", "config": {"field": "source"}})
    flow["edges"][2:] = [{"from": "shape", "to": "loud"}, {"from": "loud", "to": "push"}]
    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    assert {r["source"] for r in posted_records(crm)} == {"FLOWPLATFORM"}


def test_a_run_executes_its_version_not_later_edits(
    worker: WorkerProcess, warehouse: None, crm: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    with orders_table(30) as table:
        flow, _ = apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        first = start_run(flow)
        minimal_flow["nodes"][1]["config"]["conditions"][0]["value"] = "refunded"
        apply_flow_file(minimal_flow)
        first = wait_for_run(first, timeout=60)
        second = wait_for_run(start_run(flow), timeout=60)
    assert (first.version.number, second.version.number) == (1, 2)
    assert first.version.definition["nodes"][1]["config"]["conditions"][0]["value"] == "paid"
    assert first.status == second.status == "succeeded"


def test_redelivery_of_a_finished_node_changes_nothing(
    worker: WorkerProcess, warehouse: None, crm: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    from flows.engine.tasks import run_node

    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
        before = list(NodeRun.objects.filter(run=run).values("node_key", "attempts", "rows_out"))
        requests_before = len(crm.log)
        run_node.apply(args=(str(run.id), "push"))
    after = list(NodeRun.objects.filter(run=run).values("node_key", "attempts", "rows_out"))
    assert after == before
    assert len(crm.log) == requests_before


@pytest.mark.embedded
def test_embedded_mode_runs_the_canvas_in_process(
    transactional_db: None, eager: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    httpserver.expect_request("/ingest").respond_with_json({"ok": True})
    add_connection("crm", httpserver.url_for("/"))
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(60) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = start_run("paid-orders-to-crm")  # returns after the in-process execution
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert len(posted_records(httpserver)) == len(table.expected_paid())


@pytest.mark.embedded
def test_embedded_mode_records_a_failure(
    transactional_db: None, eager: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    add_connection("crm", httpserver.url_for("/"))
    add_connection("warehouse", SOURCE_DB_URL)
    minimal_flow["nodes"][0]["config"]["query"] = "select 1/0 as id"
    apply_flow_file(minimal_flow)
    run = start_run("paid-orders-to-crm")
    run.refresh_from_db()
    assert run.status == "failed"
    assert "division by zero" in run.error
    assert statuses(run)["push"] == "skipped"


def test_connection_secrets_stay_out_of_logs_and_errors(
    worker: WorkerProcess, crm: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    secret = "sup3r-s3cret-pw"
    add_connection("warehouse", f"postgresql://postgres:{secret}@127.0.0.1:5432/test")
    minimal_flow["nodes"][0]["config"]["query"] = "select * from no_such_table_here"
    apply_flow_file(minimal_flow)
    run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "failed"
    node = run.node_runs.get(node_key="orders")
    assert "no_such_table_here" in node.error
    for text in (run.error, node.error, node.traceback, worker.log()):
        assert secret not in text
