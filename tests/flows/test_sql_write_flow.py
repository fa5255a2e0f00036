"""``sql_write`` in a flow, on the real worker: database to database, run twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flows.engine.handoff import read_batches
from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from flows.validation import FlowValidationError
from tests.conftest import ROOT, WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, add_connection, orders_table

pytestmark = pytest.mark.worker


@pytest.fixture
def reporting_schema(worker: WorkerProcess) -> Iterator[str]:
    """A schema of the target database for this test, and the flow's connections."""
    name = f"reporting_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(name)))
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("reporting", SOURCE_DB_URL)
    yield name
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


def example_flow(source: str, target: str) -> dict[str, Any]:
    flow: dict[str, Any] = json.loads((ROOT / "examples" / "orders-to-reporting.json").read_text())
    orders = flow["nodes"][0]["config"]
    orders["query"] = orders["query"].replace("from orders", f"from {source}")
    flow["nodes"][1]["config"].update(table=target, batch_size=400)
    return flow


def target_rows(schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(SOURCE_DB_URL) as conn:
        return conn.execute(
            sql.SQL("select id, customer, status, amount from {} order by id").format(
                sql.Identifier(schema, "orders_copy")
            )
        ).fetchall()


def test_the_example_copies_a_table_and_a_second_run_updates_in_place(
    reporting_schema: str,
) -> None:
    with orders_table(1000) as source:
        apply_flow_file(example_flow(source.name, f"{reporting_schema}.orders_copy"))
        first = wait_for_run(start_run("orders-to-reporting"), timeout=60)
        assert first.status == "succeeded", first.error
        with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("update {} set status = 'shipped' where id <= 100").format(
                    sql.Identifier(source.name)
                )
            )
        second = wait_for_run(start_run("orders-to-reporting"), timeout=60)
        assert second.status == "succeeded", second.error
        expected = [(r[0], r[1], "shipped" if r[0] <= 100 else r[3], r[4]) for r in source.rows]
    assert target_rows(reporting_schema) == expected
    load = second.node_runs.get(node_key="load")
    summaries = [s for batch in read_batches(load.output_ref) for s in batch]
    assert [s["batch"] for s in summaries] == [0, 1, 2]
    assert sum(s["updated"] for s in summaries) == 1000
    assert sum(s["inserted"] for s in summaries) == 0
    assert load.rows_out == 3


def test_saving_a_flow_whose_table_lacks_a_field_fails_at_that_field(
    reporting_schema: str,
) -> None:
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create table {} (id int primary key, customer text)").format(
                sql.Identifier(reporting_schema, "orders_copy")
            )
        )
    flow = example_flow("orders", f"{reporting_schema}.orders_copy")
    flow["nodes"][0]["config"]["columns"] = {
        "id": "integer",
        "customer": "string",
        "vip": "boolean",
    }
    with pytest.raises(FlowValidationError) as caught:
        apply_flow_file(flow)
    assert [str(p) for p in caught.value.problems] == [
        f"nodes[1].inputs.in.vip (node 'load'): table '{reporting_schema}.orders_copy' has no "
        "column 'vip'"
    ]


def marks_by_node(schema: str) -> dict[str, int]:
    with psycopg.connect(SOURCE_DB_URL) as conn:
        rows = conn.execute(
            sql.SQL("select node_key, sum(rows) from {} group by node_key").format(
                sql.Identifier(schema, "flowplatform_write_marks")
            )
        ).fetchall()
    return {key: int(total) for key, total in rows}


def test_insert_runs_once_per_partition_of_a_partitioned_source(reporting_schema: str) -> None:
    with orders_table(1000) as source:
        flow = example_flow(source.name, f"{reporting_schema}.orders_copy")
        flow["nodes"][0]["config"].update(partition_rows=300, partition_column="id")
        flow["nodes"][1]["config"].update(mode="insert", batch_size=100)
        apply_flow_file(flow)
        run = wait_for_run(start_run("orders-to-reporting"), timeout=60)
        assert run.status == "succeeded", run.error
        expected = [(r[0], r[1], r[3], r[4]) for r in source.rows]
    assert target_rows(reporting_schema) == expected
    assert marks_by_node(reporting_schema) == {
        "load[0]": 300,
        "load[1]": 300,
        "load[2]": 300,
        "load[3]": 100,
    }


def test_replace_after_a_partitioned_source_runs_once_on_the_whole_output(
    reporting_schema: str,
) -> None:
    with orders_table(1000) as source:
        flow = example_flow(source.name, f"{reporting_schema}.orders_copy")
        flow["nodes"][0]["config"].update(partition_rows=300, partition_column="id")
        flow["nodes"][1]["config"].update(mode="replace", key=[])
        apply_flow_file(flow)
        for _ in range(2):
            run = wait_for_run(start_run("orders-to-reporting"), timeout=60)
            assert run.status == "succeeded", run.error
        expected = [(r[0], r[1], r[3], r[4]) for r in source.rows]
    assert target_rows(reporting_schema) == expected
    assert set(marks_by_node(reporting_schema)) == {"load"}
