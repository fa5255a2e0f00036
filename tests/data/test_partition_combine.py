"""A combinable node after a partitioned stretch: each partition stores its partial state at the
end of its stretch and the node's own run combines them (decision 0037)."""

from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from flows import transitions
from flows.api.serializers import RunDetailSerializer
from flows.engine.failures import NodeFailed
from flows.engine.handoff import flow_data_storage, read_output
from flows.engine.partitions import join_partitions
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, PartitionRun
from flows.services import start_run, wait_for_run
from tests.conftest import WorkerProcess
from tests.flows.helpers import (
    SOURCE_DB_URL,
    OrdersTable,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    queued_run,
)

AGGREGATIONS = [
    {"op": "count", "as": "orders"},
    {"op": "sum", "field": "amount", "as": "revenue"},
    {"op": "min", "field": "amount", "as": "smallest"},
    {"op": "max", "field": "amount", "as": "largest"},
    {"op": "count_distinct", "field": "email", "as": "buyers"},
    {"op": "first", "field": "id", "as": "first_id"},
    {"op": "last", "field": "id", "as": "last_id"},
]


PER_DAY = {
    "key": "per_day",
    "type": "aggregate",
    "config": {
        "group_by": [],
        "aggregations": AGGREGATIONS,
        "time_bucket": {"field": "created_at", "every": "1d", "as": "day"},
    },
}


def revenue_per_day(
    minimal_flow: dict[str, Any], table: str, rows: int | None, paid_only: bool = True
) -> dict[str, Any]:
    """orders (partitioned by ``rows``) → paid (filter) → per_day (aggregate per UTC day);
    without the filter when not ``paid_only`` (the aggregate right after the source)."""
    flow = copy.deepcopy(point_minimal_flow_at(minimal_flow, table))
    flow["slug"] = "revenue-per-day"
    if rows is not None:
        flow["nodes"][0]["config"]["partition_rows"] = rows
    if paid_only:
        flow["nodes"] = [*flow["nodes"][:2], PER_DAY]
        flow["edges"] = [{"from": "orders", "to": "paid"}, {"from": "paid", "to": "per_day"}]
    else:
        flow["nodes"] = [flow["nodes"][0], PER_DAY]
        flow["edges"] = [{"from": "orders", "to": "per_day"}]
    return flow


def expected_per_day(table: OrdersTable, paid_only: bool = True) -> dict[dt.date, tuple[Any, ...]]:
    """The figures computed here from the rows the test wrote (paid and positive, by id)."""
    days: dict[dt.date, list[tuple[Any, ...]]] = defaultdict(list)
    for row in table.rows:
        if not paid_only or (row[3] == "paid" and row[4] > 0):
            days[dt.date.fromisoformat(row[5][:10])].append(row)
    return {
        day: (
            len(rows),
            sum((r[4] for r in rows), Decimal(0)),
            min(r[4] for r in rows),
            max(r[4] for r in rows),
            len({r[2] for r in rows}),
            rows[0][0],
            rows[-1][0],
        )
        for day, rows in days.items()
    }


def figures(run: FlowRun) -> dict[dt.date, tuple[Any, ...]]:
    out = run.node_runs.get(node_key="per_day").output_ref
    return {
        r["day"].date(): tuple(r[a["as"]] for a in AGGREGATIONS)
        for batch in read_output(out)
        for r in batch
    }


def check_combined(
    run: FlowRun, table: OrdersTable, partitions: int, paid_only: bool = True
) -> None:
    assert run.status == "succeeded", run.error
    expected = expected_per_day(table, paid_only)
    assert figures(run) == expected
    paid = sum(1 for r in table.rows if not paid_only or (r[3] == "paid" and r[4] > 0))
    node_run = run.node_runs.get(node_key="per_day")
    assert node_run.partitioned and node_run.status == "succeeded"
    assert (node_run.rows_in, node_run.rows_out) == (paid, len(expected))
    parts = list(PartitionRun.objects.filter(run=run).order_by("index"))
    nodes = ["paid", "per_day"] if paid_only else ["per_day"]
    assert [p.nodes for p in parts] == [nodes] * partitions
    assert sum(p.rows_of("per_day")[0] for p in parts) == paid
    shown = {n["node_key"]: n for n in RunDetailSerializer(run).data["node_runs"]}
    assert [p["partition"] for p in shown["per_day"]["partitions"]] == list(range(partitions))
    _dirs, files = flow_data_storage().listdir(f"runs/{run.id}")
    assert len([name for name in files if name.startswith("per_day.partial-")]) == partitions


@pytest.mark.worker
def test_an_aggregate_after_a_partitioned_stretch_combines_the_partitions_partials(
    worker: WorkerProcess, minimal_flow: dict[str, Any]
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(2000) as table:
        apply_flow_file(revenue_per_day(minimal_flow, table.name, None))
        whole = wait_for_run(start_run("revenue-per-day"), timeout=60)
        apply_flow_file(revenue_per_day(minimal_flow, table.name, 300))
        split = wait_for_run(start_run("revenue-per-day"), timeout=60)
    assert whole.status == "succeeded", whole.error
    assert not whole.node_runs.get(node_key="per_day").partitioned
    assert figures(whole) == expected_per_day(table)
    check_combined(split, table, 7)
    # The same output as the whole run's, record for record (avg included).
    assert list(read_output(split.node_runs.get(node_key="per_day").output_ref)) == list(
        read_output(whole.node_runs.get(node_key="per_day").output_ref)
    )


@pytest.mark.embedded
@pytest.mark.parametrize("paid_only", [True, False], ids=["after-a-filter", "after-the-source"])
def test_an_aggregate_after_a_partitioned_stretch_in_embedded_mode(
    transactional_db: None, eager: None, minimal_flow: dict[str, Any], paid_only: bool
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(500) as table:
        apply_flow_file(revenue_per_day(minimal_flow, table.name, 200, paid_only))
        run = start_run("revenue-per-day")
    run.refresh_from_db()
    check_combined(run, table, 3, paid_only)


@pytest.mark.embedded
def test_a_partial_failing_for_good_fails_its_node_and_the_run(
    transactional_db: None, eager: None, minimal_flow: dict[str, Any]
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(300) as table:
        flow = revenue_per_day(minimal_flow, table.name, 100)
        flow["nodes"][2]["config"] = {**PER_DAY["config"], "group_by": ["email"], "max_groups": 5}
        apply_flow_file(flow)
        run = start_run("revenue-per-day")
    run.refresh_from_db()
    assert run.status == "failed"
    node_run = run.node_runs.get(node_key="per_day")
    assert node_run.status == "failed"
    assert node_run.error.startswith("partition 0: ")
    assert "max_groups = 5" in node_run.error


@pytest.mark.embedded
def test_a_join_missing_partitions_before_only_combiners_fails_the_combiner_and_the_run(
    transactional_db: None, example_connections: None, minimal_flow: dict[str, Any]
) -> None:
    """orders (read once, cut in 2) → per_day: the fan-out claims no stretch, only the combiner.
    The chord joins while partition 1 still runs (a redelivered partition task that found
    partition 0 done is counted twice): the join fails the waiting combiner and the run."""
    run = queued_run(revenue_per_day(minimal_flow, "orders", 100, paid_only=False))
    run_id = str(run.id)
    source = transitions.take(run_id, "orders").node_run
    assert source is not None
    assert transitions.finish_node(source, "succeeded", rows_in=0, rows_out=200)
    transitions.add_partitions(run_id, "orders", [0, 1], ["per_day"])
    done = transitions.take_partition(run_id, "orders", 0).partition
    assert done is not None
    assert transitions.finish_partition(done, "succeeded", rows={"per_day": [100, 0]})
    assert transitions.take_partition(run_id, "orders", 1).outcome == "execute"
    with pytest.raises(NodeFailed, match="partitions missing after the join: 1 of 2"):
        join_partitions(run_id, "orders", [], ["per_day"])
    run.refresh_from_db()
    assert (run.status, run.error) == (
        "failed", "node 'per_day' failed: partitions missing after the join: 1 of 2 succeeded",
    )  # fmt: skip
    statuses = dict(run.node_runs.values_list("node_key", "status"))
    assert statuses == {"orders": "succeeded", "per_day": "failed"}
    assert PartitionRun.objects.get(run=run, index=1).status == "cancelled"
