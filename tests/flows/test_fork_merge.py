"""Flows that fork and merge, run by the engine: a branch's output kept per port, several nodes
fed by one port, a join fed by two parents, a port with no records feeding nodes that succeed on
nothing, rows counted per port, and a rerun reusing a branch's ports."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from flows.engine.handoff import port_ref, read_output
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from flows.services import rerun, start_run
from nodes.sdk.node import as_records

PAYLOAD = {
    "orders": [
        {"id": i, "customer_id": i % 4, "status": ("paid", "refunded")[i % 5 == 0],
         "amount": i * 25}
        for i in range(1, 41)
    ],
    "customers": [{"id": 0, "country": "ES"}, {"id": 1, "country": "FR"},
                  {"id": 2, "country": "ES"}],
}  # fmt: skip

FLOW: dict[str, Any] = {
    "slug": "fork-merge",
    "name": "Fork and merge",
    "nodes": [
        {"key": "orders", "type": "payload", "config": {"records_path": "orders"}},
        {"key": "customers", "type": "payload", "config": {"records_path": "customers"}},
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
                        "port": "lost",
                        "conditions": [{"field": "status", "op": "eq", "value": "lost"}],
                    },
                ]
            },
        },
        {
            "key": "paid_total",
            "type": "aggregate",
            "config": {
                "aggregations": [
                    {"op": "count", "as": "n"},
                    {"op": "sum", "field": "amount", "as": "total"},
                ]
            },
        },
        {
            "key": "paid_customers",
            "type": "join",
            "config": {
                "on": [{"left": "customer_id", "right": "id"}],
                "how": "left",
                "select": ["id", "country"],
            },
        },
        {"key": "refunds", "type": "dedupe", "config": {"key": ["customer_id"]}},
        {
            "key": "lost_count",
            "type": "aggregate",
            "config": {"aggregations": [{"op": "count", "as": "n"}]},
        },
    ],
    "edges": [
        {"from": "orders", "to": "by_status"},
        {"from": "by_status", "from_port": "paid", "to": "paid_total"},
        {"from": "by_status", "from_port": "paid", "to": "paid_customers", "to_port": "left"},
        {"from": "customers", "to": "paid_customers", "to_port": "right"},
        {"from": "by_status", "from_port": "refunded", "to": "refunds"},
        {"from": "by_status", "from_port": "lost", "to": "lost_count"},
    ],
}


def output(node_run: NodeRun, port: str | None = None) -> list[dict[str, Any]]:
    ref = node_run.output_ref if port is None else port_ref(node_run.output_ref, port)
    return [record for batch in read_output(ref) for record in as_records(batch)]


def nodes_of(run: FlowRun) -> dict[str, NodeRun]:
    return {n.node_key: n for n in run.node_runs.all()}


@pytest.fixture
def forked_run(transactional_db: None, eager: None) -> FlowRun:
    apply_flow_file(FLOW)
    run = start_run("fork-merge", payload=PAYLOAD)
    run.refresh_from_db()
    return run


def test_each_port_feeds_its_own_nodes_and_a_join_merges_two_parents(forked_run: FlowRun) -> None:
    assert forked_run.status == "succeeded", forked_run.error
    nodes = nodes_of(forked_run)
    orders = PAYLOAD["orders"]
    paid = [o for o in orders if o["status"] == "paid"]
    refunded = [o for o in orders if o["status"] == "refunded"]
    assert output(nodes["by_status"], "paid") == paid
    assert output(nodes["by_status"], "refunded") == refunded
    assert output(nodes["by_status"], "lost") == []
    # one port, two nodes: each got all of it
    assert output(nodes["paid_total"]) == [
        {"n": len(paid), "total": sum(o["amount"] for o in paid)}
    ]
    assert nodes["paid_total"].rows_in == len(paid)
    assert nodes["paid_customers"].rows_in == len(paid) + len(PAYLOAD["customers"])  # both sides
    countries = {c["id"]: c["country"] for c in PAYLOAD["customers"]}
    assert output(nodes["paid_customers"]) == [
        {"id": o["id"], "country": countries.get(o["customer_id"])} for o in paid
    ]
    assert [r["customer_id"] for r in output(nodes["refunds"])] == sorted(
        {o["customer_id"] for o in refunded}, key=[o["customer_id"] for o in refunded].index
    )


def test_a_port_without_records_still_runs_its_nodes(forked_run: FlowRun) -> None:
    lost = nodes_of(forked_run)["lost_count"]
    assert lost.status == "succeeded"
    assert lost.rows_in == 0
    assert output(lost) == [{"n": 0}]


def test_rows_out_are_counted_per_port(forked_run: FlowRun) -> None:
    branch = nodes_of(forked_run)["by_status"]
    assert branch.rows_by_port == {"paid": 32, "refunded": 8, "lost": 0, "else": 0}
    assert branch.rows_in == branch.rows_out == 40
    assert nodes_of(forked_run)["paid_total"].rows_out_by_port is None


def test_text_to_sum_fails_the_run_naming_the_aggregation(
    transactional_db: None, eager: None
) -> None:
    # A payload's schema is unknown, so text amounts cannot be refused when the flow is saved:
    # summing them fails the run, permanently, naming the aggregation.
    flow, _ = apply_flow_file({**FLOW, "slug": "fork-merge-text"})
    run = start_run(flow, payload={"orders": [{"status": "paid", "amount": "1"}], "customers": []})
    run.refresh_from_db()
    assert run.status == "failed"
    assert "aggregations[1] (sum of 'amount'): '1' is not a number" in run.error
    assert nodes_of(run)["paid_total"].attempts == 1


def test_a_rerun_from_after_the_branch_reuses_its_ports(forked_run: FlowRun) -> None:
    again = rerun(forked_run, from_node="paid_customers")
    again.refresh_from_db()
    assert again.status == "succeeded", again.error
    old, new = nodes_of(forked_run), nodes_of(again)
    assert new["by_status"].reused_from_id == forked_run.id
    assert new["by_status"].rows_by_port == old["by_status"].rows_by_port
    assert new["paid_customers"].reused_from_id is None
    assert new["paid_customers"].attempts == 1
    assert output(new["paid_customers"]) == output(old["paid_customers"])


def test_decimal_amounts_sum_exactly(transactional_db: None, eager: None) -> None:
    flow = {**FLOW, "slug": "fork-merge-decimal", "nodes": list(FLOW["nodes"])}
    # JSON text made decimal first, as a flow reading a webhook would
    cast = {"amount": {"source": "amount", "cast": "decimal"}}
    typed = {
        "key": "typed",
        "type": "map_fields",
        "config": {"keep_unmapped": True, "mapping": cast},
    }
    flow["nodes"].insert(1, typed)
    flow["edges"] = [
        {"from": "orders", "to": "typed"}, {"from": "typed", "to": "by_status"}, *FLOW["edges"][1:]
    ]  # fmt: skip
    apply_flow_file(flow)
    orders = [{"id": i, "customer_id": 0, "status": "paid", "amount": "0.1"} for i in range(3)]
    run = start_run("fork-merge-decimal", payload={"orders": orders, "customers": []})
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert output(nodes_of(run)["paid_total"]) == [{"n": 3, "total": Decimal("0.3")}]


def test_runflow_and_the_api_show_rows_per_port(forked_run: FlowRun) -> None:
    from flows.watch import node_line, summary_table
    from tests.api.conftest import make_user, token_client

    line = next(line for line in summary_table(forked_run) if line.startswith("by_status"))
    assert line.endswith("ports: paid 32 · refunded 8 · lost 0 · else 0")
    assert "ports: paid 32" in node_line(nodes_of(forked_run)["by_status"])
    api = token_client(make_user("root", superuser=True))
    body = api.get(f"/api/v1/runs/{forked_run.id}/").json()
    by_port = {n["node_key"]: n["rows_out_by_port"] for n in body["node_runs"]}
    assert by_port["by_status"] == {"paid": 32, "refunded": 8, "lost": 0, "else": 0}
    assert by_port["paid_total"] == {"out": 1}
