"""A join whose left side runs per partition: the right side is done first, each partition
probes it (built once per worker process), and its rows are counted once (decision 0037)."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import pytest
from django.conf import settings

from flows import transitions
from flows.engine.handoff import read_output
from flows.engine.heartbeat import Heartbeat, forget_ended_runs
from flows.engine.partitions import forget_other_runs
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, PartitionRun
from flows.services import cancel_run, start_run, wait_for_run
from nodes.builtin.join import RIGHT_TABLES
from nodes.sdk.run_cache import RunCache
from tests.conftest import WorkerProcess, wait_until
from tests.flows.helpers import (
    SOURCE_DB_URL,
    OrdersTable,
    add_connection,
    orders_table,
    queued_run,
)

#: 50 customers over 45 ids (ids 1 to 5 twice): orders of customers 45 to 59 have none.
CUSTOMERS = "select g % 45 as cid, 'C' || g as name from generate_series(1, 50) g order by g"


def joined_flow(table: str, rows: int, how: str) -> dict[str, Any]:
    return {
        "slug": "orders-with-customers",
        "name": "Orders with customers",
        "nodes": [
            {
                "key": "orders",
                "type": "sql_query",
                "config": {
                    "connection": "warehouse",
                    "query": f"select id, id % 60 as cid, amount from {table} order by id",
                    "partition_rows": rows,
                    "batch_size": 100,
                },
            },
            {
                "key": "customers",
                "type": "sql_query",
                "config": {"connection": "warehouse", "query": CUSTOMERS},
            },
            {
                "key": "joined",
                "type": "join",
                "config": {"on": [{"left": "cid", "right": "cid"}], "how": how},
            },
        ],
        "edges": [
            {"from": "orders", "to": "joined", "to_port": "left"},
            {"from": "customers", "to": "joined", "to_port": "right"},
        ],
    }


def nested_loop(table: OrdersTable, how: str) -> list[dict[str, Any]]:
    """The join's reference: every left record against every right record, in left order."""
    right = [{"cid": g % 45, "name": f"C{g}"} for g in range(1, 51)]
    out: list[dict[str, Any]] = []
    for row in table.rows:
        left = {"id": row[0], "cid": row[0] % 60, "amount": row[4]}
        matches = [r for r in right if r["cid"] == left["cid"]]
        if (how == "semi" and matches) or (how == "anti" and not matches):
            out.append(left)
        elif how in ("inner", "left"):
            if not matches and how == "left":
                matches = [{"cid": None, "name": None}]
            out.extend({**left, "right_cid": m["cid"], "name": m["name"]} for m in matches)
    return out


def check_joined(run: FlowRun, table: OrdersTable, how: str, parts: int) -> None:
    assert run.status == "succeeded", run.error
    node_run = run.node_runs.get(node_key="joined")
    assert [r for batch in read_output(node_run.output_ref) for r in batch] == nested_loop(
        table, how
    )
    assert node_run.partitioned
    # The right side's 50 rows are counted once, whatever the partitions.
    assert (node_run.rows_in, node_run.rows_out) == (
        len(table.rows) + 50,
        len(nested_loop(table, how)),
    )
    partitions = list(PartitionRun.objects.filter(run=run).order_by("index"))
    assert [p.nodes for p in partitions] == [["joined"]] * parts
    assert sum(p.rows_of("joined")[0] for p in partitions) == len(table.rows)


@pytest.mark.worker
@pytest.mark.parametrize("how", ["inner", "left", "anti"])
def test_a_join_with_its_left_side_partitioned_gives_the_nested_loop_reference(
    worker: WorkerProcess, how: str
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(2000) as table:
        apply_flow_file(joined_flow(table.name, 300, how))
        run = wait_for_run(start_run("orders-with-customers"), timeout=60)
    check_joined(run, table, how, 7)


@pytest.mark.embedded
@pytest.mark.parametrize("how", ["inner", "semi"])
def test_a_join_with_its_left_side_partitioned_in_embedded_mode(
    transactional_db: None, eager: None, how: str
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(500) as table:
        apply_flow_file(joined_flow(table.name, 200, how))
        run = start_run("orders-with-customers")
    run.refresh_from_db()
    check_joined(run, table, how, 3)


def test_a_task_of_another_run_drops_the_right_tables_of_the_run_before() -> None:
    RIGHT_TABLES.clear()
    forget_other_runs("run-a")
    RIGHT_TABLES.get("run-a", "key", lambda: object())  # type: ignore[arg-type]
    forget_other_runs("run-a")  # the same run: kept
    assert len(RIGHT_TABLES) == 1
    forget_other_runs("run-b")
    assert len(RIGHT_TABLES) == 0


class Table:
    """A value a node built for a run (weakly referenceable: its release can be seen)."""


@pytest.mark.embedded
def test_an_idle_process_drops_a_runs_values_once_the_run_has_ended(
    transactional_db: None, example_connections: None, minimal_flow: dict[str, Any]
) -> None:
    """A worker process that built a right table for a run, then gets no task, drops it when
    the run ends (its heartbeat thread asks, idle, every beat); another run's values stay."""
    forget_ended_runs()  # (what earlier tests left in this process's caches)
    values: RunCache[Table] = RunCache("test values", size=3)
    ending, going_on = queued_run(minimal_flow), queued_run(minimal_flow)
    FlowRun.objects.filter(id__in=[ending.id, going_on.id]).update(status="running")
    built = values.get(str(ending.id), "right", Table)
    released = weakref.ref(built)
    values.get(str(going_on.id), "right", Table)
    values.get("not-a-run", "right", Table)  # (never looked up)
    assert forget_ended_runs() == 0 and len(values) == 3
    # A task of the run ran here and returned: the heartbeat thread beats on, idle.
    node_run = transitions.take(str(ending.id), "orders").node_run
    assert node_run is not None
    with Heartbeat(node_run):
        pass
    assert cancel_run(FlowRun.objects.get(id=ending.id))
    del built
    bound = 2 * settings.FLOWPLATFORM_HEARTBEAT_S + 5
    wait_until(lambda: released() is None, bound, 0.1, f"the table was held {bound}s after")
    assert values.runs() == {str(going_on.id), "not-a-run"}
    assert forget_ended_runs() == 0


@pytest.mark.embedded
def test_the_idle_check_never_waits_behind_a_build_and_drops_deleted_runs(
    transactional_db: None, example_connections: None, minimal_flow: dict[str, Any]
) -> None:
    """The heartbeat thread's idle check skips a cache busy building a value (it renews leases:
    waiting seconds behind a build would let them expire), and drops the values of a run that
    no longer exists."""
    forget_ended_runs()  # (what earlier tests left in this process's caches)
    values: RunCache[Table] = RunCache("test values", size=2)
    gone = queued_run(minimal_flow)
    values.get(str(gone.id), "right", Table)
    FlowRun.objects.filter(id=gone.id).delete()
    building, release = threading.Event(), threading.Event()

    def slow_build() -> Table:
        building.set()
        release.wait(30)
        return Table()

    builder = threading.Thread(target=values.get, args=("another", "right", slow_build))
    builder.start()
    try:
        assert building.wait(10)
        started = time.monotonic()
        assert forget_ended_runs() == 0  # the cache is busy: skipped, at once
        assert time.monotonic() - started < 2
    finally:
        release.set()
        builder.join(10)
    assert forget_ended_runs() == 1  # the deleted run's value, once the cache is free
    assert values.runs() == {"another"}
