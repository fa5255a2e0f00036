"""Waiting for a run: the waiter returns within milliseconds of the run's end (the run-end
channel on Redis), and still returns when Redis cannot tell it (a slow poll)."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from flows import runend, transitions
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, RunStatus
from flows.runend import RunEndListener
from flows.services import start_run, wait_for_run
from flows.versions import ensure_current_version
from tests.conftest import WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, add_connection

#: A short two-node run whose source takes 50 ms, so the waiter is waiting when it ends.
SHORT_FLOW = {
    "slug": "short",
    "name": "Short",
    "nodes": [
        {
            "key": "rows",
            "type": "sql_query",
            "config": {
                "connection": "warehouse",
                "query": "with pause as (select pg_sleep(0.05)) "
                "select n from generate_series(1, 3) n, pause",
            },
        },
        {
            "key": "keep",
            "type": "filter",
            "config": {"conditions": [{"field": "n", "op": "gt", "value": 1}]},
        },
    ],
    "edges": [{"from": "rows", "to": "keep"}],
}
RUNS = 30
#: The goal is 20 ms (about 4 ms median measured on the shared 2-core machine, 22 ms under a
#: load average of 8): the bounds leave room for such load, and fail polling, which (every
#: 200 ms, as before the channel) puts the median near 100 ms and the 95th percentile near 190.
MEDIAN_BOUND_MS = 40
P95_BOUND_MS = 60


def percentile_95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


@pytest.fixture
def short_flow(worker: WorkerProcess) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    apply_flow_file(SHORT_FLOW)


def lag_ms(run: FlowRun, returned_at: float) -> float:
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.finished_at is not None
    return (returned_at - run.finished_at.timestamp()) * 1000


@pytest.mark.worker
def test_wait_for_run_returns_within_milliseconds_of_the_end(short_flow: None) -> None:
    wait_for_run(start_run("short"), timeout=30)  # warm-up: the worker's connections
    lags = []
    for _ in range(RUNS):
        run = wait_for_run(start_run("short"), timeout=30)
        lags.append(lag_ms(run, time.time()))
    median, p95 = statistics.median(lags), percentile_95(lags)
    print(f"wait_for_run lag after finished_at over {RUNS} runs: median {median:.1f} ms, "
          f"p95 {p95:.1f} ms, max {max(lags):.1f} ms")  # fmt: skip
    assert median <= MEDIAN_BOUND_MS
    assert p95 <= P95_BOUND_MS


@pytest.mark.worker
def test_runflow_wait_returns_within_milliseconds_of_the_end(short_flow: None) -> None:
    call_command("runflow", "short", "--wait", stdout=StringIO())  # warm-up
    lags = []
    for _ in range(RUNS):
        out = StringIO()
        call_command("runflow", "short", "--wait", stdout=out)
        returned_at = time.time()
        assert out.getvalue().strip().endswith(": succeeded")
        lags.append(lag_ms(FlowRun.objects.order_by("-created_at").first(), returned_at))  # type: ignore[arg-type]
    median, p95 = statistics.median(lags), percentile_95(lags)
    print(f"runflow --wait lag after finished_at over {len(lags)} runs: median {median:.1f} ms, "
          f"p95 {p95:.1f} ms, max {max(lags):.1f} ms")  # fmt: skip
    assert median <= MEDIAN_BOUND_MS
    assert p95 <= P95_BOUND_MS


@pytest.fixture
def idle_run(transactional_db: None) -> FlowRun:
    """A queued run nobody dispatched: this test's own code ends it."""
    add_connection("warehouse", SOURCE_DB_URL)
    flow, _ = apply_flow_file(SHORT_FLOW)
    return FlowRun.objects.create(flow=flow, version=ensure_current_version(flow))


def end_later(run: FlowRun, delay: float, announce: bool = True) -> threading.Thread:
    """End ``run`` from another thread after ``delay`` seconds: through the transition (which
    announces it), or by a bare update that nobody announces."""

    def end() -> None:
        time.sleep(delay)
        try:
            if announce:
                transitions.finish_run(str(run.id), RunStatus.CANCELLED, "ended by the test")
            else:
                FlowRun.objects.filter(pk=run.pk).update(
                    status=RunStatus.CANCELLED, finished_at=timezone.now()
                )
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=end)
    thread.start()
    return thread


def test_an_announced_end_wakes_the_waiter_at_once(idle_run: FlowRun) -> None:
    thread = end_later(idle_run, 0.3)
    run = wait_for_run(idle_run, timeout=30)
    returned_at = time.time()
    thread.join()
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert returned_at - run.finished_at.timestamp() < runend.FALLBACK_POLL_S / 2


def test_an_unannounced_end_is_found_by_the_fallback_poll(idle_run: FlowRun) -> None:
    started = time.monotonic()
    thread = end_later(idle_run, 0.3, announce=False)
    run = wait_for_run(idle_run, timeout=30)
    thread.join()
    assert run.status == RunStatus.CANCELLED
    assert time.monotonic() - started < 0.3 + runend.FALLBACK_POLL_S + 1.0


def test_an_end_published_between_subscribing_and_waiting_is_not_lost(db: None) -> None:
    with RunEndListener("00000000-0000-0000-0000-00000000beef") as ended:
        assert ended.subscribed
        runend._publish(runend._client(), ended.run_id)  # type: ignore[arg-type]
        started = time.monotonic()
        assert ended.wait(5.0)
        assert time.monotonic() - started < 0.5


def test_another_runs_end_does_not_wake_the_waiter(db: None) -> None:
    with RunEndListener("00000000-0000-0000-0000-00000000beef") as ended:
        runend._publish(runend._client(), "00000000-0000-0000-0000-00000000cafe")  # type: ignore[arg-type]
        assert not ended.wait(0.3)


@pytest.fixture
def redis_down() -> Iterator[str]:
    """A broker URL where nothing listens (a port just closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    with override_settings(CELERY_BROKER_URL=url):
        yield url


def test_ending_a_run_with_redis_down_does_not_fail(
    idle_run: FlowRun, redis_down: str, caplog: Any
) -> None:
    assert transitions.finish_run(str(idle_run.id), RunStatus.CANCELLED, "ended by the test")
    idle_run.refresh_from_db()
    assert idle_run.status == RunStatus.CANCELLED
    assert "its end was not published" in caplog.text


def test_waiting_with_redis_down_polls(idle_run: FlowRun, redis_down: str) -> None:
    started = time.monotonic()
    thread = end_later(idle_run, 0.3)
    run = wait_for_run(idle_run, timeout=30)
    thread.join()
    assert run.status == RunStatus.CANCELLED
    # The listener gave up on Redis (at most its timeout) and polled every POLL_S.
    assert time.monotonic() - started < runend.REDIS_TIMEOUT_S + 0.3 + runend.POLL_S + 1.0


@pytest.mark.django_db(transaction=True)
def test_embedded_mode_needs_no_channel(eager: None) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    apply_flow_file(SHORT_FLOW)
    with override_settings(CELERY_BROKER_URL=""):
        run = start_run("short")
        started = time.monotonic()
        run = wait_for_run(run, timeout=5)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert time.monotonic() - started < 0.5
