"""Routing and run slots: a flow (or one node) runs on the workers consuming its queue;
max_active_runs holds a burst of webhook calls to two runs at a time, every one completing;
waiting runs start highest priority first."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connections, transaction

from flows.flowfile import apply_flow_file
from flows.models import ACTIVE_RUN_STATUSES, FlowRun, RunStatus
from flows.services import start_run, wait_for_run
from tests.conftest import WorkerProcess, wait_until
from tests.triggers.conftest import caller_for

HEAVY = "heavy"


def payload_flow(slug: str, **extra: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug,
        "nodes": [{"key": "body", "type": "payload", "config": {}}],
        **extra,
    }


@pytest.fixture
def heavy_worker(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    """A second worker, consuming only the queue ``heavy``."""
    process = WorkerProcess(settings.DATABASES["default"]["NAME"], concurrency=1)
    process.args[process.args.index("--queues") + 1] = HEAVY
    process.start()
    yield process
    process.stop()


def ran_on(process: WorkerProcess, run: FlowRun, node: str) -> bool:
    return f"{run.id}:{node}:0" in process.log()


def test_a_flow_routed_to_heavy_runs_only_on_the_worker_consuming_it(
    worker: WorkerProcess, heavy_worker: WorkerProcess
) -> None:
    apply_flow_file(payload_flow("export", queue=HEAVY))

    run = wait_for_run(start_run("export", payload={"id": 1}), timeout=60)

    assert run.status == RunStatus.SUCCEEDED
    assert run.queue == HEAVY
    assert ran_on(heavy_worker, run, "body")
    assert not ran_on(worker, run, "body")


def test_one_node_can_name_its_own_queue(
    worker: WorkerProcess, heavy_worker: WorkerProcess
) -> None:
    data = payload_flow("mixed")
    data["nodes"].append(
        {
            "key": "crunch",
            "type": "filter",
            "config": {"conditions": [{"field": "id", "op": "gt", "value": 0}]},
            "policy": {"queue": HEAVY},
        }
    )
    data["edges"] = [{"from": "body", "to": "crunch"}]
    apply_flow_file(data)

    run = wait_for_run(start_run("mixed", payload={"id": 1}), timeout=60)

    assert run.status == RunStatus.SUCCEEDED
    assert ran_on(worker, run, "body") and not ran_on(heavy_worker, run, "body")
    assert ran_on(heavy_worker, run, "crunch") and not ran_on(worker, run, "crunch")


class Watcher(threading.Thread):
    """Samples how many runs of a flow are active (dispatched and unfinished) and running."""

    def __init__(self, slug: str) -> None:
        super().__init__(daemon=True)
        self.slug = slug
        self.stop = threading.Event()
        self.most_active = self.most_running = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                runs = FlowRun.objects.filter(flow__slug=self.slug, status__in=ACTIVE_RUN_STATUSES)
                active = runs.filter(dispatched_at__isnull=False).count()
                running = runs.filter(status=RunStatus.RUNNING).count()
                self.most_active = max(self.most_active, active)
                self.most_running = max(self.most_running, running)
                self.stop.wait(0.02)
        finally:
            connections.close_all()


def test_a_burst_of_50_webhook_calls_keeps_to_max_active_runs_and_all_complete(
    worker: WorkerProcess, live_server: Any
) -> None:
    flow, caller = caller_for(
        {
            "slug": "orders-sync",
            "name": "Orders sync",
            "max_active_runs": 2,
            "nodes": [
                {
                    "key": "wait",
                    "type": "filter",
                    "config": {"conditions": [{"field": "id", "op": "not_null"}]},
                },
                {"key": "body", "type": "payload", "config": {}},
            ],
            "edges": [{"from": "body", "to": "wait"}],
            "triggers": [{"webhook": "order"}],
        },
        "order",
    )
    url = f"{live_server.url}/hooks/{flow.slug}/order"
    watcher = Watcher(flow.slug)
    watcher.start()

    def call(index: int) -> int:
        headers = {"Authorization": f"Bearer {caller.secret}", "Idempotency-Key": f"o-{index}"}
        return requests.post(url, json={"id": index}, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(call, range(50)))

    assert codes == [202] * 50
    runs = FlowRun.objects.filter(flow=flow)
    wait_until(
        lambda: runs.filter(status=RunStatus.SUCCEEDED).count() == 50,
        180,
        message=f"not every run completed: {list(runs.values_list('status', flat=True))}",
    )
    watcher.stop.set()
    watcher.join(10)
    assert 1 <= watcher.most_active <= 2
    assert watcher.most_running <= 2
    assert sorted(runs.values_list("payload__id", flat=True)) == list(range(50))


def test_waiting_runs_start_highest_priority_first(
    transactional_db: None, eager: None, settings: Any
) -> None:
    settings.FLOWPLATFORM_MAX_ACTIVE_RUNS = 1
    apply_flow_file(payload_flow("routine"))
    apply_flow_file(payload_flow("urgent", priority=10))

    with transaction.atomic():  # all three wait for the one slot together
        first = start_run("routine")
        second = start_run("routine")
        urgent = start_run("urgent")
        assert first.dispatched_at is None

    order = list(FlowRun.objects.order_by("started_at").values_list("pk", flat=True))
    assert order == [urgent.pk, first.pk, second.pk]
    assert set(FlowRun.objects.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}


def test_without_a_limit_a_run_is_dispatched_as_it_is_recorded(db: None) -> None:
    flow = apply_flow_file(payload_flow("free"))[0]

    assert start_run(flow).dispatched_at is not None


def test_with_a_limit_a_run_waits_for_a_slot(db: None) -> None:
    flow = apply_flow_file(payload_flow("limited", max_active_runs=1))[0]

    assert start_run(flow).dispatched_at is None  # admitted once the transaction commits
