"""Fault tests inside a partitioned stretch: workers killed while partitions post, with the
default heartbeat, lease and reaper settings; the run ends in bounded time, nothing lost, any
repeat under the same Idempotency-Key."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.flowfile import apply_flow_file
from flows.models import FlowRun, PartitionRun
from flows.services import start_run, wait_for_run
from tests.conftest import WorkerProcess, wait_until
from tests.flows.helpers import (
    SOURCE_DB_URL,
    OrdersTable,
    add_connection,
    orders_table,
    point_minimal_flow_at,
)
from tests.scheduling.conftest import BeatProcess

pytestmark = pytest.mark.worker

Start = Callable[..., WorkerProcess]

#: 160 orders cut by ``id`` into 4 partitions of 40, about 11 paid records each.
ORDERS, ROWS_PER_PARTITION, PARTITIONS = 160, 40, 4


class CountingPeer:
    """A loopback CRM that answers slowly and counts each record and the keys it came under."""

    def __init__(self, httpserver: HTTPServer, delay_s: float = 0.2) -> None:
        self.keys: dict[int, set[str]] = defaultdict(set)
        self.posts = 0

        def handler(request: Request) -> Response:
            time.sleep(delay_s)
            self.keys[request.get_json()["order_id"]].add(request.headers["Idempotency-Key"])
            self.posts += 1
            return Response('{"ok": true}', status=200, content_type="application/json")

        httpserver.expect_request("/ingest").respond_with_handler(handler)
        add_connection("crm", httpserver.url_for("/"))


def partitioned_flow(minimal_flow: dict[str, Any], table: str) -> dict[str, Any]:
    """The minimal flow, its source cut into ranges of ``id`` and each record posted alone."""
    flow = point_minimal_flow_at(minimal_flow, table)
    flow["nodes"][0]["config"].update(
        partition_rows=ROWS_PER_PARTITION, partition_column="id", batch_size=10
    )
    flow["nodes"][3]["config"].update(batch_size=1, retry_backoff_s=0.05)
    return flow


def assert_delivered_once_per_key(peer: CountingPeer, table: OrdersTable) -> None:
    assert sorted(peer.keys) == [e["order_id"] for e in table.expected_paid()]
    assert all(len(keys) == 1 for keys in peer.keys.values())  # any repeat: the same key


def running_partitions(run: FlowRun) -> list[PartitionRun]:
    return list(PartitionRun.objects.filter(run=run, status="running"))


@pytest.fixture
def crm(httpserver: HTTPServer, transactional_db: None) -> CountingPeer:
    add_connection("warehouse", SOURCE_DB_URL)
    return CountingPeer(httpserver)


def test_whole_worker_killed_mid_partition_the_run_ends_within_30_s_with_the_defaults(
    fault_workers: Start,
    reaper_beat: BeatProcess,
    crm: CountingPeer,
    minimal_flow: dict[str, Any],
) -> None:
    """The whole worker (main process and pool) is SIGKILLed while two partitions post: their
    tasks stay unacknowledged in Redis until the visibility timeout (an hour and more), so the
    reaper (a real beat, default interval) sends each partition's task again once its lease
    (default TTL) has run out, and a fresh worker takes it over from its checkpoint."""
    first = fault_workers(concurrency=2, defaults=True)
    with orders_table(ORDERS) as table:
        apply_flow_file(partitioned_flow(minimal_flow, table.name))
        run = start_run("paid-orders-to-crm")
        wait_until(lambda: len(running_partitions(run)) == 2 and crm.posts >= 3, 30, 0.05)
        killed = {p.index for p in running_partitions(run)}
        first.kill()
        killed_at = timezone.now()
        fault_workers(concurrency=2, defaults=True)
        run = wait_for_run(run, timeout=60)
    assert run.status == "succeeded", run.error
    assert_delivered_once_per_key(crm, table)
    partitions = {p.index: p for p in PartitionRun.objects.filter(run=run)}
    assert len(partitions) == PARTITIONS
    taken_over = {i for i, p in partitions.items() if p.workers_lost}
    assert taken_over == killed
    assert all(partitions[i].checkpoint for i in killed)  # resumed after their last batch
    assert run.finished_at is not None
    resumed_s = max((partitions[i].started_at - killed_at).total_seconds() for i in killed)
    recovered_s = (run.finished_at - killed_at).total_seconds()
    print(
        f"whole worker killed mid-partition: partitions taken over {resumed_s:.1f}s, "
        f"run ended {recovered_s:.1f}s later"
    )
    assert recovered_s <= 30


def test_pool_process_killed_mid_partition_is_taken_over_within_5_s_with_the_defaults(
    fault_workers: Start, crm: CountingPeer, minimal_flow: dict[str, Any]
) -> None:
    """A pool process SIGKILLed while its partition posts: the worker sends the task back at
    once, and the new delivery takes the partition over without waiting for its lease (its
    owner, a process of this machine, is gone). (Two partitions on two processes: the task
    sent back goes to the end of its queue, so behind a backlog it would wait its turn.)"""
    worker = fault_workers(concurrency=2, defaults=True)
    with orders_table(2 * ROWS_PER_PARTITION) as table:
        apply_flow_file(partitioned_flow(minimal_flow, table.name))
        run = start_run("paid-orders-to-crm")
        wait_until(lambda: len(running_partitions(run)) == 2 and crm.posts >= 3, 30, 0.05)
        killed = running_partitions(run)[0]
        owner_pid = int(killed.lease_owner.split(":")[1])
        assert owner_pid in worker.pool_children()
        os.kill(owner_pid, signal.SIGKILL)
        killed_at = timezone.now()
        partition = PartitionRun.objects.filter(pk=killed.pk)
        wait_until(lambda: partition.get().workers_lost, 30, 0.05)
        run = wait_for_run(run, timeout=60)
    assert run.status == "succeeded", run.error
    assert_delivered_once_per_key(crm, table)
    taken = partition.get()
    assert (taken.status, taken.workers_lost, taken.attempts) == ("succeeded", 1, 2)
    assert taken.started_at is not None and run.finished_at is not None
    resumed_s = (taken.started_at - killed_at).total_seconds()
    print(
        f"pool process killed mid-partition: partition taken over {resumed_s:.1f}s, "
        f"run ended {(run.finished_at - killed_at).total_seconds():.1f}s later"
    )
    assert resumed_s <= 5
