"""A partitioned stretch through ``branch``: each port kept per partition and each route's line
run per partition, every record posted to its peer exactly once (decision 0037)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.engine.handoff import port_ref, read_output
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, PartitionRun
from flows.services import start_run, wait_for_run
from tests.conftest import WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, OrdersTable, add_connection, orders_table

ROUTES = ["by_status", "positive", "push_paid", "push_refunds"]
#: The aggregate after the pending port: a partial per partition, one combine.
COMBINED = "pending_total"


def routed_flow(table: str, rows: int) -> dict[str, Any]:
    """orders (partitioned) → by_status (branch): paid → positive (filter) → push_paid;
    refunded → push_refunds; pending → pending_total (aggregate); nothing else."""
    return {
        "slug": "orders-by-status",
        "name": "Orders by status",
        "nodes": [
            {
                "key": "orders",
                "type": "sql_query",
                "config": {
                    "connection": "warehouse",
                    "query": f"select id, status, amount from {table} order by id",
                    "partition_rows": rows,
                    "batch_size": 100,
                },
            },
            {
                "key": "by_status",
                "type": "branch",
                "config": {
                    "routes": [
                        {
                            "port": "paid",
                            "conditions": [{"field": "status", "op": "eq", "value": "paid"}],
                        },
                        {
                            "port": "refunded",
                            "conditions": [{"field": "status", "op": "eq", "value": "refunded"}],
                        },
                        {
                            "port": "pending",
                            "conditions": [{"field": "status", "op": "eq", "value": "pending"}],
                        },
                    ],
                    "otherwise": None,
                },
            },
            {
                "key": "positive",
                "type": "filter",
                "config": {"conditions": [{"field": "amount", "op": "gt", "value": 0}]},
            },
            {
                "key": "push_paid",
                "type": "http_post",
                "config": {"url": "/paid", "connection": "peers", "batch_size": 50},
            },
            {
                "key": "push_refunds",
                "type": "http_post",
                "config": {"url": "/refunds", "connection": "peers", "batch_size": 50},
            },
            {
                "key": COMBINED,
                "type": "aggregate",
                "config": {
                    "aggregations": [
                        {"op": "count", "as": "n"},
                        {"op": "sum", "field": "amount", "as": "total"},
                        {"op": "last", "field": "id", "as": "last_id"},
                    ]
                },
            },
        ],
        "edges": [
            {"from": "orders", "to": "by_status"},
            {"from": "by_status", "from_port": "paid", "to": "positive"},
            {"from": "positive", "to": "push_paid"},
            {"from": "by_status", "from_port": "refunded", "to": "push_refunds"},
            {"from": "by_status", "from_port": "pending", "to": COMBINED},
        ],
    }


def peers(httpserver: HTTPServer) -> None:
    for path in ("/paid", "/refunds"):
        httpserver.expect_request(path, method="POST").respond_with_json({"ok": True})
    add_connection("peers", httpserver.url_for("/"))
    add_connection("warehouse", SOURCE_DB_URL)


def received(httpserver: HTTPServer, path: str) -> Counter[int]:
    """How many times each order id was posted to ``path``."""
    ids: Counter[int] = Counter()
    for request, _response in httpserver.log:
        if request.path == path:
            ids.update(record["id"] for record in json.loads(request.get_data()))
    return ids


def check_routed(run: FlowRun, table: OrdersTable, httpserver: HTTPServer, parts: int) -> None:
    assert run.status == "succeeded", run.error
    paid = [r[0] for r in table.rows if r[3] == "paid"]
    refunded = [r[0] for r in table.rows if r[3] == "refunded"]
    positive = [r[0] for r in table.rows if r[3] == "paid" and r[4] > 0]
    # Each peer gets exactly its records, once each.
    assert received(httpserver, "/paid") == Counter(positive)
    assert received(httpserver, "/refunds") == Counter(refunded)
    nodes = {n.node_key: n for n in run.node_runs.all()}
    assert all(nodes[key].partitioned and nodes[key].status == "succeeded" for key in ROUTES)
    branch = nodes["by_status"]
    pending = [r for r in table.rows if r[3] == "pending"]
    assert (branch.rows_in, branch.rows_out) == (len(table.rows), len(table.rows))
    assert branch.rows_by_port == {
        "paid": len(paid),
        "refunded": len(refunded),
        "pending": len(pending),
    }
    total = nodes[COMBINED]
    assert total.partitioned and (total.rows_in, total.rows_out) == (len(pending), 1)
    figures = [r for batch in read_output(total.output_ref) for r in batch]
    assert figures == [
        {"n": len(pending), "total": sum(r[4] for r in pending), "last_id": pending[-1][0]}
    ]
    assert (nodes["positive"].rows_in, nodes["positive"].rows_out) == (len(paid), len(positive))
    assert nodes["push_refunds"].rows_in == len(refunded)
    # A port's output, read whole after the run, is its partitions' in order.
    paid_ref = port_ref(branch.output_ref, "paid")
    assert [r["id"] for batch in read_output(paid_ref) for r in batch] == paid
    partitions = list(PartitionRun.objects.filter(run=run).order_by("index"))
    assert [p.nodes for p in partitions] == [[*ROUTES, COMBINED]] * parts
    assert sum(p.port_rows_of("by_status")["paid"] for p in partitions) == len(paid)


@pytest.mark.worker
def test_a_branch_in_a_partitioned_stretch_routes_each_partition_to_its_peers_once(
    worker: WorkerProcess, httpserver: HTTPServer
) -> None:
    peers(httpserver)
    with orders_table(2000) as table:
        apply_flow_file(routed_flow(table.name, 300))
        run = wait_for_run(start_run("orders-by-status"), timeout=60)
    check_routed(run, table, httpserver, 7)


@pytest.mark.embedded
def test_a_branch_in_a_partitioned_stretch_in_embedded_mode(
    transactional_db: None, eager: None, httpserver: HTTPServer
) -> None:
    peers(httpserver)
    with orders_table(500) as table:
        apply_flow_file(routed_flow(table.name, 200))
        run = start_run("orders-by-status")
    run.refresh_from_db()
    check_routed(run, table, httpserver, 3)
