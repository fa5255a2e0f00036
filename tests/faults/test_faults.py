"""Fault tests: real processes killed, real broker flushed; every run ends right, in bounded time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.engine.handoff import read_batches
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun, PartitionRun
from flows.reaper import reap
from flows.services import cancel_run, rerun, start_run, wait_for_run
from tests.conftest import ROOT, WorkerProcess, platform_db_url, wait_until
from tests.faults.conftest import STALE_AFTER_S
from tests.flows.helpers import (
    SOURCE_DB_URL,
    accepting_crm,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    posted_records,
)
from tests.scheduling.conftest import BeatProcess

pytestmark = pytest.mark.worker

Start = Callable[..., WorkerProcess]


def slow_peer(httpserver: HTTPServer, delay_s: float = 0.15) -> None:
    def handler(request: Request) -> Response:
        time.sleep(delay_s)
        return Response('{"ok": true}', status=200, content_type="application/json")

    httpserver.expect_request("/ingest").respond_with_handler(handler)
    add_connection("crm", httpserver.url_for("/"))


def one_by_one(flow: dict[str, Any]) -> dict[str, Any]:
    flow["nodes"][3]["config"].update(batch_size=1, retry_backoff_s=0.05)
    return flow


def keys_by_order(httpserver: HTTPServer) -> dict[int, set[str]]:
    keys: dict[int, set[str]] = defaultdict(set)
    for request, _ in httpserver.log:
        keys[request.get_json()["order_id"]].add(request.headers["Idempotency-Key"])
    return keys


def reap_until_finished(run: FlowRun, timeout: float) -> FlowRun:
    def finished() -> bool:
        reap(stale_after_s=STALE_AFTER_S)
        run.refresh_from_db()
        return run.is_finished

    wait_until(finished, timeout, 0.5, f"run still {run.status} after {timeout}s")
    return run


@pytest.fixture
def warehouse(transactional_db: None) -> None:
    add_connection("warehouse", SOURCE_DB_URL)


def test_whole_worker_killed_mid_post_the_run_ends_within_30_s_with_the_default_settings(
    fault_workers: Start,
    reaper_beat: BeatProcess,
    warehouse: None,
    httpserver: HTTPServer,
    minimal_flow: dict[str, Any],
) -> None:
    """The whole worker (main process and pool) is SIGKILLed while ``push`` posts: its task
    stays unacknowledged in Redis until the visibility timeout, so the reaper (sent by a real
    beat, default interval) re-dispatches the run once the node's lease (default TTL) has run
    out, and a fresh worker takes the node over from its checkpoint."""
    slow_peer(httpserver)
    first = fault_workers(defaults=True)
    with orders_table(60) as table:
        apply_flow_file(one_by_one(point_minimal_flow_at(minimal_flow, table.name)))
        run = start_run("paid-orders-to-crm")
        wait_until(lambda: len(httpserver.log) >= 3, 30)
        first.kill()
        killed_at = timezone.now()
        fault_workers(defaults=True)
        push = run.node_runs.get(node_key="push")
        wait_until(lambda: NodeRun.objects.get(pk=push.pk).workers_lost, 45, 0.1)
        run = wait_for_run(run, timeout=60)
    assert run.status == "succeeded", run.error
    keys = keys_by_order(httpserver)
    assert sorted(keys) == [e["order_id"] for e in table.expected_paid()]
    assert all(len(k) == 1 for k in keys.values())  # any repeat carried the same key
    push.refresh_from_db()
    assert push.workers_lost == 1 and push.attempts == 2
    assert push.started_at is not None and run.finished_at is not None
    resumed_s = (push.started_at - killed_at).total_seconds()
    recovered_s = (run.finished_at - killed_at).total_seconds()
    print(
        f"whole worker killed: node taken over {resumed_s:.1f}s, run ended {recovered_s:.1f}s later"
    )
    assert recovered_s <= 30


def test_pool_child_killed_is_taken_over_within_5_s_with_the_default_settings(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    """A pool process SIGKILLed mid-post: the worker redelivers the task at once, and the new
    delivery takes the node over without waiting for the lease (its owner, a process of this
    machine, is gone)."""
    slow_peer(httpserver)
    worker = fault_workers(defaults=True)
    with orders_table(60) as table:
        apply_flow_file(one_by_one(point_minimal_flow_at(minimal_flow, table.name)))
        run = start_run("paid-orders-to-crm")
        wait_until(lambda: len(httpserver.log) >= 3, 30)
        os.kill(worker.pool_children()[0], signal.SIGKILL)
        killed_at = timezone.now()
        push = run.node_runs.get(node_key="push")
        wait_until(lambda: NodeRun.objects.get(pk=push.pk).workers_lost, 30, 0.05)
        run = wait_for_run(run, timeout=60)
    assert run.status == "succeeded", run.error
    keys = keys_by_order(httpserver)
    assert sorted(keys) == [e["order_id"] for e in table.expected_paid()]
    assert all(len(k) == 1 for k in keys.values())
    push.refresh_from_db()
    assert push.workers_lost == 1
    # resumed after the last acknowledged batch: at most one batch was sent twice
    assert len(httpserver.log) - len(keys) <= 1
    assert push.started_at is not None and run.finished_at is not None
    resumed_s = (push.started_at - killed_at).total_seconds()
    print(
        f"pool child killed: node taken over {resumed_s:.1f}s, "
        f"run ended {(run.finished_at - killed_at).total_seconds():.1f}s later"
    )
    assert resumed_s <= 5


def test_poison_node_fails_after_capped_deliveries(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    add_connection("crm", httpserver.url_for("/"))
    fault_workers()
    flow = minimal_flow
    flow["nodes"].insert(2, {"key": "poison", "type": "dummy_crash", "config": {}})
    flow["edges"][1:2] = [{"from": "paid", "to": "poison"}, {"from": "poison", "to": "shape"}]
    with orders_table(10) as table:
        apply_flow_file(point_minimal_flow_at(flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=90)
    assert run.status == "failed"
    poison = run.node_runs.get(node_key="poison")
    assert poison.status == "failed"
    assert poison.error == f"worker lost {settings.FLOWPLATFORM_MAX_WORKERS_LOST} times"
    assert run.node_runs.get(node_key="push").status == "skipped"


def test_sql_syntax_error_is_not_retried(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    add_connection("crm", httpserver.url_for("/"))
    fault_workers()
    minimal_flow["nodes"][0]["config"]["query"] = "selec broken"
    minimal_flow["nodes"][0]["policy"] = {"max_retries": 3, "retry_backoff_s": 0.1}
    apply_flow_file(minimal_flow)
    run = wait_for_run(start_run("paid-orders-to-crm"), timeout=30)
    assert run.status == "failed"
    assert run.error.startswith("node 'orders' failed:")
    orders = run.node_runs.get(node_key="orders")
    assert orders.attempts == 1
    assert set(run.node_runs.exclude(node_key="orders").values_list("status", flat=True)) == {
        "skipped"
    }
    assert len(httpserver.log) == 0


def test_peer_503_twice_then_200_succeeds_with_retries_recorded(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    httpserver.expect_ordered_request("/ingest").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/ingest").respond_with_data("busy", status=503)
    accepting_crm(httpserver)
    fault_workers()
    minimal_flow["nodes"][3]["config"].update(batch_size=1000, retry_backoff_s=0.05)
    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=30)
    assert run.status == "succeeded", run.error
    summary = next(read_batches(run.node_runs.get(node_key="push").output_ref))
    assert summary[0]["attempts"] == 3 and summary[0]["status"] == 200


def test_a_node_retried_inside_the_chain_keeps_the_rest_of_the_chain(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    accepting_crm(httpserver)
    fault_workers()
    flow = minimal_flow
    flow["nodes"].insert(
        2,
        {
            "key": "flaky",
            "type": "dummy_flaky",
            "config": {"fail_times": 2},
            "policy": {"max_retries": 2, "retry_backoff_s": 0.1},
        },
    )
    flow["edges"][1:2] = [{"from": "paid", "to": "flaky"}, {"from": "flaky", "to": "shape"}]
    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=30)
    assert run.status == "succeeded", run.error
    assert run.node_runs.get(node_key="flaky").attempts == 3
    assert len(posted_records(httpserver)) == len(table.expected_paid())


def test_fan_in_with_a_failing_branch_fails_and_never_hangs(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    accepting_crm(httpserver)
    fault_workers(concurrency=2)
    flow = minimal_flow
    flow["nodes"].insert(
        2, {"key": "broken", "type": "dummy_flaky", "config": {"fail_times": 99, "permanent": True}}
    )
    flow["edges"] = [
        {"from": "orders", "to": "paid"},
        {"from": "orders", "to": "broken"},
        {"from": "paid", "to": "shape"},
        {"from": "broken", "to": "shape"},
        {"from": "shape", "to": "push"},
    ]
    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=30)
    assert run.status == "failed"
    assert run.error.startswith("node 'broken' failed:")
    # The sibling branch finished first, was never started once the run had failed, or was
    # running then: it ends on its own a moment later (succeeded, or stopped by the cancel).
    statuses = wait_until(
        lambda: (
            (found := dict(run.node_runs.values_list("node_key", "status")))["paid"]
            not in ("pending", "running")
            and found
        ),
        15,
        message="the sibling branch never ended",
    )
    assert statuses["paid"] in ("succeeded", "skipped", "cancelled")
    assert statuses["shape"] == statuses["push"] == "skipped"
    assert len(httpserver.log) == 0


def test_broker_flushed_mid_run_is_resolved_by_the_reaper(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    accepting_crm(httpserver)
    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = start_run("paid-orders-to-crm")  # queued; no worker is consuming yet
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        flushed_at = time.monotonic()
        fault_workers()
        run = reap_until_finished(run, 60)
    assert run.status == "succeeded", run.error
    assert run.redispatches == 1
    assert len(posted_records(httpserver)) == len(table.expected_paid())
    print(f"broker flushed: resolved in {time.monotonic() - flushed_at:.1f}s")


def test_cancel_mid_run_stops_within_seconds(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    slow_peer(httpserver, delay_s=0.1)
    fault_workers()
    with orders_table(300) as table:
        apply_flow_file(one_by_one(point_minimal_flow_at(minimal_flow, table.name)))
        run = start_run("paid-orders-to-crm")
        wait_until(lambda: len(httpserver.log) >= 3, 30)
        asked_at = time.monotonic()
        assert cancel_run(run)
        push = run.node_runs.get(node_key="push")
        wait_until(
            lambda: NodeRun.objects.get(pk=push.pk).status == "cancelled", 5, 0.1,
            "the running node did not stop within 5 s",
        )  # fmt: skip
        stopped_s = time.monotonic() - asked_at
        sent = len(httpserver.log)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert sent < len(table.expected_paid())
    assert len(httpserver.log) == sent  # nothing more was sent after it stopped
    print(f"cancel: node stopped {stopped_s:.1f}s after the request")


def test_rerun_from_the_failed_node_reuses_upstream_outputs(
    fault_workers: Start, warehouse: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    add_connection("crm", httpserver.url_for("/"))
    fault_workers()
    httpserver.expect_oneshot_request("/ingest").respond_with_data("bad gateway config", status=400)
    with orders_table(30) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        failed = wait_for_run(start_run("paid-orders-to-crm"), timeout=30)
        assert failed.status == "failed"
        assert failed.node_runs.get(node_key="push").status == "failed"
        httpserver.clear_log()
        httpserver.expect_request("/ingest").respond_with_json({"ok": True})  # the peer is fixed
        second = wait_for_run(rerun(failed), timeout=30)
    assert second.status == "succeeded", second.error
    assert second.trigger == "rerun" and second.version_id == failed.version_id
    nodes = {n.node_key: n for n in second.node_runs.all()}
    for key in ("orders", "paid", "shape"):
        assert nodes[key].attempts == 0 and nodes[key].reused_from_id == failed.id
    assert nodes["push"].attempts == 1
    assert len(posted_records(httpserver)) == len(table.expected_paid())


def test_starting_a_run_with_the_broker_down_fails_fast(
    transactional_db: None, example_connections: None, minimal_flow: dict[str, Any]
) -> None:
    apply_flow_file(minimal_flow)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": platform_db_url(),
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "runflow", "paid-orders-to-crm"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "broker unavailable" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 15
    run = FlowRun.objects.get()
    assert run.status == "failed" and run.error.startswith("broker unavailable")


def test_pool_child_killed_mid_partition_post_resumes_from_the_partitions_checkpoint(
    fault_workers: Start, httpserver: HTTPServer
) -> None:
    """A pool process SIGKILLed while ``http_post`` posts inside a partition: the redelivered
    partition task takes the partition over at once (its owner is gone) and resumes after the
    last batch the peer acknowledged in that partition, with the same Idempotency-Keys."""
    slow_peer(httpserver)
    worker = fault_workers(concurrency=1, defaults=True)
    apply_flow_file(
        {
            "slug": "sliced-post",
            "name": "Sliced post",
            "nodes": [
                {"key": "ids", "type": "dummy_slices", "config": {"slices": 2, "rows": 20}},
                {
                    "key": "push",
                    "type": "http_post",
                    "config": {
                        "url": "/ingest",
                        "connection": "crm",
                        "batch_size": 1,
                        "retry_backoff_s": 0.05,
                    },
                },
            ],
            "edges": [{"from": "ids", "to": "push"}],
        }
    )
    run = start_run("sliced-post")
    wait_until(lambda: len(httpserver.log) >= 5, 30)
    os.kill(worker.pool_children()[0], signal.SIGKILL)
    first = PartitionRun.objects.filter(run=run, index=0)
    wait_until(lambda: first.get().workers_lost, 30, 0.05)
    run = wait_for_run(run, timeout=60)
    assert run.status == "succeeded", run.error
    keys: dict[int, set[str]] = defaultdict(set)
    for request, _ in httpserver.log:
        keys[request.get_json()["id"]].add(request.headers["Idempotency-Key"])
    assert sorted(keys) == list(range(40))
    assert all(len(k) == 1 for k in keys.values())  # any repeat carried the same key
    # Resumed after the partition's last checkpoint, not from its start (at least 5 of its
    # batches had reached the peer before the kill). Checkpoints are spaced by what saving one
    # costs (http_post's CHECKPOINT_COST_FACTOR): on a slow database a few batches go again.
    assert len(httpserver.log) - len(keys) <= 3
    partition = first.get()
    assert (partition.status, partition.workers_lost, partition.attempts) == ("succeeded", 1, 2)
    assert partition.checkpoint is not None and "push" in partition.checkpoint
    push = run.node_runs.get(node_key="push")
    assert (push.status, push.rows_in, push.checkpoint) == ("succeeded", 40, None)
