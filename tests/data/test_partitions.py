"""Partitioned execution: a source cut by row count, the nodes after it run per partition."""

from __future__ import annotations

import copy
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from psycopg import sql
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.api.serializers import RunDetailSerializer
from flows.engine.handoff import flow_data_storage, read_manifest, read_output
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, PartitionRun
from flows.services import cancel_run, rerun, start_run, wait_for_run
from nodes.builtin.sql_query import SqlQueryNode
from nodes.sdk import ConnectionInfo, ExecutionContext
from tests.conftest import WorkerProcess, wait_until
from tests.flows.helpers import (
    SOURCE_DB_URL,
    OrdersTable,
    accepting_crm,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    posted_records,
)

STRETCH = ("paid", "shape", "push")


def partitioned(flow: dict[str, Any], rows: int) -> dict[str, Any]:
    flow = copy.deepcopy(flow)
    flow["nodes"][0]["config"]["partition_rows"] = rows
    return flow


def node_figures(run: FlowRun) -> dict[str, tuple[str, int, int]]:
    return {n.node_key: (n.status, n.rows_in, n.rows_out) for n in run.node_runs.all()}


def delivered(httpserver: HTTPServer) -> list[tuple[Any, ...]]:
    records = posted_records(httpserver)
    return sorted((r["order_id"], r["total"], r["customer"]["email"]) for r in records)


@pytest.fixture
def peers(httpserver: HTTPServer) -> HTTPServer:
    add_connection("warehouse", SOURCE_DB_URL)
    return accepting_crm(httpserver)


def plain_then_split(
    peers: HTTPServer, minimal_flow: dict[str, Any], split_flow: Callable[[dict[str, Any]], Any]
) -> tuple[FlowRun, FlowRun, list[tuple[Any, ...]], OrdersTable]:
    """Run the minimal flow over 2,000 orders as it is, then changed by ``split_flow``; the
    second run's deliveries are left in the peer's log."""
    with orders_table(2000) as table:
        flow = point_minimal_flow_at(minimal_flow, table.name)
        apply_flow_file(flow)
        plain = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
        plain_records = delivered(peers)
        peers.clear_log()
        apply_flow_file(split_flow(flow))
        split = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    return plain, split, plain_records, table


@pytest.mark.worker
def test_partitioned_run_delivers_exactly_what_an_unpartitioned_run_does(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    plain, split, plain_records, table = plain_then_split(
        peers, minimal_flow, lambda flow: partitioned(flow, 300)
    )
    assert plain.status == split.status == "succeeded", split.error
    assert delivered(peers) == plain_records
    assert len(plain_records) == len(table.expected_paid())
    figures = node_figures(split)
    assert figures["orders"] == ("succeeded", 0, 2000)
    for key in ("paid", "shape"):  # same rows as without partitions
        assert figures[key] == node_figures(plain)[key]
    assert figures["push"][:2] == ("succeeded", len(plain_records))
    push = split.node_runs.get(node_key="push")
    parts = read_manifest(push.output_ref)
    assert len(parts) == 7  # 2000 rows in partitions of 300
    assert sum(p.rows_in for p in parts) == len(plain_records)
    keys = {r.headers["Idempotency-Key"] for r, _ in peers.log}
    assert len(keys) == len(peers.log)  # each partition's batches have keys of their own


@pytest.mark.worker
def test_a_failing_partition_fails_its_node_with_the_partition_named(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    flow = partitioned(minimal_flow, 100)
    # One value in the fourth partition (rows 301-400) cannot be cast.
    flow["nodes"][0]["config"]["query"] = (
        "select g as id, case when g = 350 then 'x' else g::text end as code, 'paid' as status,"
        " 1 as amount from generate_series(1, 1000) g where g > %(min_id)s order by g"
    )
    flow["nodes"][2]["config"]["mapping"] = {
        "order_id": "id",
        "code": {"source": "code", "cast": "int"},
    }
    apply_flow_file(flow)
    run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "failed"
    assert run.error.startswith("node 'shape' failed: partition 3: ")
    shape = run.node_runs.get(node_key="shape")
    assert shape.status == "failed"
    assert shape.error.startswith("partition 3: field 'code' of record 49 of partition 3")
    assert shape.traceback
    statuses = dict(run.node_runs.values_list("node_key", "status"))
    assert statuses["push"] == "skipped"
    assert statuses["paid"] in ("succeeded", "cancelled")  # stopped when shape failed


@pytest.mark.embedded
@pytest.mark.parametrize("read_in_slices", [False, True], ids=["read-once", "slices"])
def test_partitioned_run_in_embedded_mode(
    transactional_db: None,
    eager: None,
    peers: HTTPServer,
    minimal_flow: dict[str, Any],
    read_in_slices: bool,
) -> None:
    split = sliced if read_in_slices else partitioned
    with orders_table(500) as table:
        apply_flow_file(split(point_minimal_flow_at(minimal_flow, table.name), 200))
        run = start_run("paid-orders-to-crm")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert len(posted_records(peers)) == len(table.expected_paid())
    figures = node_figures(run)
    assert figures["orders"] == ("succeeded", 0, 500)
    assert figures["paid"] == ("succeeded", 500, len(table.expected_paid()))
    for key in ("orders", "paid"):
        assert len(read_manifest(run.node_runs.get(node_key=key).output_ref)) == 3


def sliced(flow: dict[str, Any], rows: int) -> dict[str, Any]:
    flow = partitioned(flow, rows)
    flow["nodes"][0]["config"]["partition_column"] = "id"
    return flow


@pytest.mark.worker
def test_a_source_read_in_parallel_slices_delivers_exactly_what_one_read_does(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    plain, split, plain_records, _table = plain_then_split(
        peers, minimal_flow, lambda flow: sliced(flow, 300)
    )
    assert plain.status == split.status == "succeeded", split.error
    assert delivered(peers) == plain_records
    figures = node_figures(split)
    for key in ("orders", "paid", "shape"):
        assert figures[key] == node_figures(plain)[key]
    source = split.node_runs.get(node_key="orders")
    parts = read_manifest(source.output_ref)
    # Read by the partition tasks; the table has no statistics: ranges of 300 rows counted.
    assert [p.rows_out for p in parts] == [300] * 6 + [200]
    assert len(read_manifest(split.node_runs.get(node_key="push").output_ref)) == 7


@pytest.mark.worker
@pytest.mark.parametrize("seed", [3, 4])
def test_an_indexed_key_cut_by_statistics_delivers_every_row_once(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any], seed: int
) -> None:
    """``partition_column`` on an indexed integer column of an analyzed table: ranges from the
    statistics (no row counted), every row once whatever the keys (gaps, one value shared by
    a fifth of the rows, others repeated, no key at all)."""
    rng = random.Random(seed)
    with orders_table(3000) as table:
        keys: dict[int, int | None] = {}
        for order_id, *_rest in table.rows:
            draw = rng.random()
            keys[order_id] = (
                None if draw < 0.03 else 777 if draw < 0.23 else rng.randrange(0, 10**6, 7)
            )
        gone = set(rng.sample(sorted(keys), 200))  # gaps in the ids
        with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
            name = sql.Identifier(table.name)
            conn.execute(sql.SQL("alter table {} add column k int").format(name))
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("update {} set k = %s where id = %s").format(name),
                    [(k, i) for i, k in keys.items()],
                )
            conn.execute(sql.SQL("delete from {} where id = any(%s)").format(name), [list(gone)])
            conn.execute(sql.SQL("create index on {} (k)").format(name))
            conn.execute(sql.SQL("analyze {}").format(name))
        flow = sliced(point_minimal_flow_at(minimal_flow, table.name), 300)
        flow["nodes"][0]["config"]["partition_column"] = "k"
        flow["nodes"][0]["config"]["query"] = (
            f"select id, customer, email, status, amount, created_at, k from {table.name}"
            " where id > %(min_id)s order by k"
        )
        apply_flow_file(flow)
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
        # What the source plans: ranges of k from the statistics, not counted rows.
        lookup = ExecutionContext(connection_lookup=lambda n: ConnectionInfo(n, SOURCE_DB_URL))
        planned = list(SqlQueryNode(flow["nodes"][0]["config"]).plan_slices(lookup, 300) or [])
    assert run.status == "succeeded", run.error
    assert planned and all(s["column"] == "k" for s in planned)
    left = [row for row in table.rows if row[0] not in gone]
    expected = OrdersTable(table.name, left).expected_paid()
    assert delivered(peers) == sorted((r["order_id"], r["total"], r["email"]) for r in expected)
    assert len(posted_records(peers)) == len(expected)  # each once
    parts = read_manifest(run.node_runs.get(node_key="orders").output_ref)
    assert sum(p.rows_out for p in parts) == len(left)
    assert len(parts) == len(planned)
    assert 6 <= len(parts) <= 15  # about 2,800 / 300 (the shared value's range is larger)


@pytest.mark.worker
def test_a_failing_slice_fails_the_source_with_the_partition_named(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    flow = sliced(minimal_flow, 100)
    # Reading row 350 (the fourth slice, ids 301-400) divides by zero.
    flow["nodes"][0]["config"]["query"] = (
        "select g as id, 'paid' as status, 100 / (g - 350) as amount"
        " from generate_series(1, 1000) g where g > %(min_id)s order by g"
    )
    flow["nodes"][2]["config"]["mapping"] = {"order_id": "id"}
    apply_flow_file(flow)
    run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "failed"
    assert run.error.startswith("node 'orders' failed: partition 3: query failed: division by zero")
    statuses = dict(run.node_runs.values_list("node_key", "status"))
    assert statuses == {
        "orders": "failed",
        "paid": "skipped",
        "shape": "skipped",
        "push": "skipped",
    }


@pytest.mark.worker
def test_pure_nodes_inside_a_stretch_are_recomputed_when_read_not_stored(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    with orders_table(1000) as table:
        flow = point_minimal_flow_at(minimal_flow, table.name)
        apply_flow_file(flow)
        plain = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
        apply_flow_file(sliced(flow, 300))
        split = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
        assert split.status == "succeeded", split.error
        peers.clear_log()
        again = wait_for_run(rerun(split, from_node="shape"), timeout=60)
    outputs = {n.node_key: n.output_ref for n in split.node_runs.all()}
    for key in ("paid", "shape"):  # filter, map_fields: derived from the node before
        assert not list_output_objects(split, key)
        plain_ref = plain.node_runs.get(node_key=key).output_ref
        assert list(records(outputs[key])) == list(records(plain_ref))
    assert len(list_output_objects(split, "orders")) == 4  # the source's slices are stored
    assert again.status == "succeeded", again.error
    reused = dict(again.node_runs.values_list("node_key", "reused_from"))
    assert reused["paid"] == split.id
    assert delivered(peers) == sorted(
        (r["order_id"], r["total"], r["email"]) for r in table.expected_paid()
    )


def records(ref: str) -> Iterator[dict[str, Any]]:
    for batch in read_output(ref):
        yield from batch


def list_output_objects(run: FlowRun, key: str) -> list[str]:
    _dirs, files = flow_data_storage().listdir(f"runs/{run.id}")
    return [name for name in files if re.fullmatch(rf"{key}\.p\d+\.msgpack", name)]


# --- partitions as node runs: a sliced source planning a list, retries, cancel ---------------
def sliced_list_flow(policy: dict[str, Any] | None = None, **source: Any) -> dict[str, Any]:
    """A ``dummy_slices`` source (its slices planned as a list) posting its ``{"id": n}``
    records to the ``crm`` peer, partition by partition."""
    return {
        "slug": "sliced-list",
        "name": "Sliced list",
        "nodes": [
            {
                "key": "ids",
                "type": "dummy_slices",
                "config": {"slices": 3, "rows": 10, **source},
                "policy": policy or {},
            },
            {
                "key": "push",
                "type": "http_post",
                "config": {"url": "/ingest", "connection": "crm", "batch_size": 5},
            },
        ],
        "edges": [{"from": "ids", "to": "push"}],
    }


def partitions_of(run: FlowRun) -> list[PartitionRun]:
    return list(PartitionRun.objects.filter(run=run).order_by("index"))


@pytest.mark.embedded
def test_a_source_planning_its_slices_as_a_list_runs_one_partition_per_slice(
    transactional_db: None, eager: None, httpserver: HTTPServer, admin_client: Client
) -> None:
    accepting_crm(httpserver)
    apply_flow_file(sliced_list_flow())
    run = start_run("sliced-list")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert sorted(r["id"] for r in posted_records(httpserver)) == list(range(30))
    parts = partitions_of(run)
    assert [(p.index, p.status, p.attempts, p.nodes) for p in parts] == [
        (i, "succeeded", 1, ["ids", "push"]) for i in range(3)
    ]
    # (http_post's output: one summary per batch of 5)
    assert all((p.rows_of("ids"), p.rows_of("push")) == ((0, 10), (10, 2)) for p in parts)
    for key, rows in (("ids", (0, 30)), ("push", (30, 6))):
        node_run = run.node_runs.get(node_key=key)
        assert node_run.partitioned and node_run.status == "succeeded"
        assert (node_run.rows_in, node_run.rows_out) == rows
        assert node_run.checkpoint is None  # nothing of the engine's in the node's checkpoint
    # Each node run shows its partitions, in the API and on the run page.
    shown = {n["node_key"]: n for n in RunDetailSerializer(run).data["node_runs"]}
    assert [(p["partition"], p["status"], p["attempts"], p["rows_in"], p["rows_out"])
            for p in shown["push"]["partitions"]] == [(i, "succeeded", 1, 10, 2) for i in range(3)]  # fmt: skip
    page = admin_client.get(reverse("admin:flows_flowrun_change", args=[run.pk])).content.decode()
    assert page.count('class="fp-partition" data-partition="2" data-status="succeeded"') == 2


@pytest.mark.worker
def test_a_partition_failing_once_is_retried_by_its_node_policy_alone(
    worker: WorkerProcess, httpserver: HTTPServer
) -> None:
    accepting_crm(httpserver)
    policy = {"max_retries": 2, "retry_backoff_s": 0.1}
    apply_flow_file(sliced_list_flow(policy, fail_slice=1, fail_times=1))
    run = wait_for_run(start_run("sliced-list"), timeout=60)
    assert run.status == "succeeded", run.error
    parts = partitions_of(run)
    assert [(p.status, p.attempts) for p in parts] == [
        ("succeeded", 1), ("succeeded", 2), ("succeeded", 1),
    ]  # fmt: skip
    assert parts[1].error == "ids: slice 1 failed on attempt 1"  # the retried attempt's error
    source = run.node_runs.get(node_key="ids")
    assert (source.status, source.attempts, source.rows_out) == ("succeeded", 1, 30)
    records = sorted(r["id"] for r in posted_records(httpserver))
    assert records == list(range(30))  # each partition delivered once


@pytest.mark.worker
def test_a_partition_failing_past_its_policy_fails_its_node_and_the_run(
    worker: WorkerProcess, httpserver: HTTPServer
) -> None:
    accepting_crm(httpserver)
    policy = {"max_retries": 1, "retry_backoff_s": 0.1}
    apply_flow_file(sliced_list_flow(policy, fail_slice=2, fail_times=5))
    run = wait_for_run(start_run("sliced-list"), timeout=60)
    assert run.status == "failed"
    assert run.error == "node 'ids' failed: partition 2: slice 2 failed on attempt 2"
    failed = partitions_of(run)[2]
    assert (failed.status, failed.attempts, failed.failed_node) == ("failed", 2, "ids")
    statuses = dict(run.node_runs.values_list("node_key", "status"))
    assert statuses == {"ids": "failed", "push": "skipped"}


def slow_crm(httpserver: HTTPServer, delay_s: float) -> None:
    def handler(request: Request) -> Response:
        time.sleep(delay_s)
        return Response('{"ok": true}', status=200, content_type="application/json")

    httpserver.expect_request("/ingest").respond_with_handler(handler)
    add_connection("crm", httpserver.url_for("/"))


@pytest.mark.worker
def test_cancel_stops_every_partition_within_seconds(
    worker: WorkerProcess, httpserver: HTTPServer
) -> None:
    slow_crm(httpserver, 0.1)
    flow = sliced_list_flow(slices=4, rows=50)
    flow["nodes"][1]["config"]["batch_size"] = 1
    apply_flow_file(flow)
    run = start_run("sliced-list")
    wait_until(lambda: len(httpserver.log) >= 3, 30)
    assert cancel_run(run)

    def all_stopped() -> bool:
        parts = PartitionRun.objects.filter(run=run)
        nodes = run.node_runs.all()
        return not any(p.status in ("pending", "running") for p in parts) and not any(
            n.status == "running" for n in nodes
        )

    wait_until(all_stopped, 10, 0.1, "partitions still running 10 s after the cancel")
    assert {p.status for p in partitions_of(run)} <= {"cancelled", "succeeded"}
    assert dict(run.node_runs.values_list("node_key", "status")) == {
        "ids": "cancelled", "push": "cancelled",
    }  # fmt: skip
    # A task sees its partition cancelled at its next check (about once a second) and a request
    # already sent is logged when it is answered: the tasks have ended once the requests stop
    # for longer than that, and they stop long before the 200 an uncancelled run sends.
    seen = {"count": -1, "since": time.monotonic()}

    def requests_stopped() -> bool:
        count = len(httpserver.log)
        if count != seen["count"]:
            seen.update(count=count, since=time.monotonic())
        return time.monotonic() - seen["since"] > 2.0

    wait_until(requests_stopped, 15, 0.1, "requests still sent 15 s after the cancel")
    assert len(httpserver.log) < 200


@pytest.mark.embedded
def test_each_partition_is_traced_and_counted_node_by_node(
    transactional_db: None, eager: None, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per partition, a span ``node <key>`` for every node it runs (``flowplatform.partition``)
    and the node metrics, as for a whole node's execution."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
    from opentelemetry.propagate import inject
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode
    from prometheus_client import REGISTRY

    from flowplatform import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(telemetry, "_STATUS_OK", Status(StatusCode.OK))
    # (what telemetry.setup sets, without instrumenting this process's libraries)
    monkeypatch.setattr(telemetry, "_otel_context", otel_context)
    monkeypatch.setattr(telemetry, "_set_span_in_context", trace.set_span_in_context)
    monkeypatch.setattr(telemetry, "_inject", inject)
    monkeypatch.setattr(telemetry, "_QUIET", _SUPPRESS_INSTRUMENTATION_KEY)

    def executions(node_type: str) -> float:
        labels = {"node_type": node_type, "status": "succeeded"}
        return REGISTRY.get_sample_value("flowplatform_node_runs_total", labels) or 0.0

    before = executions("dummy_slices"), executions("http_post")
    accepting_crm(httpserver)
    apply_flow_file(sliced_list_flow())
    run = start_run("sliced-list")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("node ")]
    seen = sorted(
        (s.name, s.attributes["flowplatform.partition"], s.attributes["flowplatform.status"],
         s.attributes["flowplatform.rows_in"], s.attributes["flowplatform.rows_out"])
        for s in spans
    )  # fmt: skip
    assert seen == sorted(
        [("node ids", i, "succeeded", 0, 10) for i in range(3)]
        + [("node push", i, "succeeded", 10, 2) for i in range(3)]
    )
    assert {s.attributes["flowplatform.run_id"] for s in spans} == {str(run.id)}
    assert (executions("dummy_slices"), executions("http_post")) == (before[0] + 3, before[1] + 3)


# --- a sliced source that plans no slice --------------------------------------------------------
@pytest.mark.worker
def test_a_file_source_matching_no_file_succeeds_empty_when_allowed(
    worker: WorkerProcess, peers: HTTPServer
) -> None:
    inbox = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / f"empty-{uuid.uuid4().hex[:10]}"
    inbox.mkdir(parents=True)
    add_connection("empty-inbox", f"file://{inbox}")
    apply_flow_file(
        {
            "slug": "no-files",
            "name": "No files",
            "nodes": [
                {
                    "key": "files",
                    "type": "file_read",
                    "config": {
                        "connection": "empty-inbox",
                        "path": "*.jsonl",
                        "format": "jsonl",
                        "allow_empty": True,
                    },
                },
                {
                    "key": "push",
                    "type": "http_post",
                    "config": {"url": "/ingest", "connection": "crm"},
                },
            ],
            "edges": [{"from": "files", "to": "push"}],
        }
    )
    run = wait_for_run(start_run("no-files"), timeout=60)
    assert run.status == "succeeded", run.error
    assert node_figures(run) == {"files": ("succeeded", 0, 0), "push": ("succeeded", 0, 0)}
    assert all(n.partitioned for n in run.node_runs.all())  # (split per file, by default)
    assert partitions_of(run) == []
    for node_run in run.node_runs.all():
        assert read_manifest(node_run.output_ref) == []
    assert delivered(peers) == []


@pytest.mark.worker
def test_a_source_sliced_over_an_empty_table_succeeds_empty(
    worker: WorkerProcess, peers: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    with orders_table(0) as table:
        apply_flow_file(sliced(point_minimal_flow_at(minimal_flow, table.name), 300))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    figures = node_figures(run)
    assert set(figures.values()) == {("succeeded", 0, 0)}, figures
    assert all(p.status == "succeeded" for p in partitions_of(run))
    assert delivered(peers) == []


@pytest.mark.embedded
def test_a_partition_whose_lease_was_taken_over_counts_cancelled_not_failed(
    transactional_db: None, example_connections: None, minimal_flow: dict[str, Any]
) -> None:
    from prometheus_client import REGISTRY

    from flowplatform import telemetry
    from flows import transitions
    from tests.flows.helpers import queued_run

    def executions(status: str) -> float:
        labels = {"node_type": "http_post", "status": status}
        return REGISTRY.get_sample_value("flowplatform_node_runs_total", labels) or 0.0

    run = queued_run(minimal_flow)
    fan = list(run.node_runs.filter(node_key__in=["shape", "push"]))
    before = executions("cancelled"), executions("failed")
    with (
        pytest.raises(transitions.LeaseLost),
        telemetry.partition_execution(fan, "f", 1, 0, 1, False) as seen,
    ):
        seen.failed_node = "push"  # (what the partition saw last does not matter)
        raise transitions.LeaseLost()
    assert (executions("cancelled"), executions("failed")) == (before[0] + 1, before[1])


@pytest.mark.embedded
def test_the_partitions_of_a_run_are_loaded_once_for_all_its_node_runs(
    transactional_db: None, example_connections: None, minimal_flow: dict[str, Any]
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flows import transitions
    from tests.flows.helpers import queued_run

    run = queued_run(minimal_flow)
    run.node_runs.update(partitioned=True)
    transitions.add_partitions(str(run.id), "orders", [0, 1], ["orders", *STRETCH])
    PartitionRun.objects.filter(run=run).update(traceback="Traceback ...", rows={"push": [3, 1]})
    run = FlowRun.objects.get(id=run.id)
    with CaptureQueriesContext(connection) as queries:
        shown = RunDetailSerializer(run).data["node_runs"]
    loads = [q["sql"] for q in queries.captured_queries if "flows_partitionrun" in q["sql"]]
    assert len(loads) == 1 and "traceback" not in loads[0], loads
    assert [(p["partition"], p["rows_in"], p["rows_out"]) for p in shown[-1]["partitions"]] == [
        (0, 3, 1), (1, 3, 1),
    ]  # fmt: skip
