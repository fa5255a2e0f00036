"""The reaper tells orphaned runs (every running node's lease has run out) and idle runs (lost
messages) from runs that are merely busy or waiting, on every platform database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from pytest_httpserver import HTTPServer

from flows import transitions
from flows.engine import lease
from flows.engine.partitions import resend_lost
from flows.engine.tasks import barrier
from flows.models import FlowRun, NodeRun, PartitionRun
from flows.reaper import idle, orphaned, reap
from tests.flows.helpers import (
    SOURCE_DB_URL,
    accepting_crm,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    posted_records,
    queued_run,
)

pytestmark = [
    pytest.mark.usefixtures("transactional_db", "example_connections"),
    pytest.mark.embedded,
]

STALE = timedelta(seconds=120)


def running(run: FlowRun, key: str, lease_s: float) -> None:
    """``key`` taken by a process whose lease ends ``lease_s`` from now (negative: ran out)."""
    claim = transitions.take(str(run.id), key)
    assert claim.outcome == "execute"
    expires = timezone.now() + timedelta(seconds=lease_s)
    NodeRun.objects.filter(run=run, node_key=key).update(lease_expires_at=expires)


def test_a_run_is_orphaned_only_when_every_running_lease_has_run_out(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    now = timezone.now()
    running(run, "orders", 10)
    assert run.id not in orphaned(now, now - STALE)  # busy
    running(run, "paid", -1)
    assert run.id not in orphaned(now, now - STALE)  # one owner is still alive
    NodeRun.objects.filter(run=run, node_key="orders").update(lease_expires_at=now)
    assert run.id in orphaned(now + timedelta(seconds=1), now - STALE)


def test_a_re_dispatch_not_taken_up_yet_is_not_repeated_before_the_staleness(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    running(run, "orders", -1)
    now = timezone.now()
    assert transitions.mark_redispatched(str(run.id), None) == 1
    assert transitions.mark_redispatched(str(run.id), None) == 0  # another reaper: once
    later = now + timedelta(seconds=30)
    assert run.id not in orphaned(later, later - STALE)  # (a backlog: the message waits)
    assert run.id in orphaned(now + STALE + timedelta(seconds=1), now + timedelta(seconds=1))
    # Taken up, and orphaned again: re-dispatched at once.
    NodeRun.objects.filter(run=run, node_key="orders").update(status="pending")
    running(run, "orders", -1)
    assert run.id in orphaned(later, later - STALE)


def test_a_dispatched_run_with_nothing_running_is_idle_after_the_staleness(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    long_ago = timezone.now() - STALE - timedelta(seconds=5)
    FlowRun.objects.filter(pk=run.pk).update(created_at=long_ago)
    assert run.id not in idle(timezone.now() - STALE)  # waiting for a slot: not dispatched
    FlowRun.objects.filter(pk=run.pk).update(dispatched_at=long_ago)
    assert run.id in idle(timezone.now() - STALE)
    NodeRun.objects.filter(run=run, node_key="orders").update(
        status="succeeded", finished_at=timezone.now()
    )
    assert run.id not in idle(timezone.now() - STALE)  # something happened since


def test_an_orphaned_run_is_re_dispatched_and_its_node_taken_over(
    eager: None, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    accepting_crm(httpserver)
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(30) as table:
        point_minimal_flow_at(minimal_flow, table.name)
        run = queued_run(minimal_flow)
        FlowRun.objects.filter(pk=run.pk).update(dispatched_at=timezone.now())
        running(run, "orders", -1)  # its worker died mid-node, the lease ran out
        counts = reap()  # (embedded mode: the re-dispatched canvas runs in-process)
    assert counts["redispatched"] == 1
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.redispatches == 1
    orders = run.node_runs.get(node_key="orders")
    assert (orders.attempts, orders.workers_lost) == (2, 1)
    assert orders.fence > 1  # taken again, under a new fence
    assert len(posted_records(httpserver)) == len(table.expected_paid())


def test_a_fan_out_waiting_for_its_partitions_is_not_orphaned(
    minimal_flow: dict[str, Any],
) -> None:
    """The fan-out's node runs are renewed only by running partitions: one waiting out its
    retry backoff, or queued behind one just finished, keeps the run live."""
    run = queued_run(minimal_flow)
    run_id = str(run.id)
    for key in ("paid", "shape", "push"):
        assert transitions.take(run_id, key, owner=lease.FAN_OUT, lease_s=1).outcome == "execute"
    transitions.add_partitions(run_id, "orders", [0, 1], ["paid", "shape", "push"])
    part = transitions.take_partition(run_id, "orders", 0).partition
    assert part is not None
    # A retry extends the fan-out's leases past its backoff, in the same transaction.
    before = timezone.now()
    assert transitions.retry_node(part, "push: HTTP 503", 30)
    ttl = timedelta(seconds=settings.FLOWPLATFORM_LEASE_TTL_S)
    for node_run in NodeRun.objects.filter(run=run, node_key__in=["paid", "shape", "push"]):
        assert node_run.lease_expires_at >= before + timedelta(seconds=30) + ttl
    # Even with the fan-out's leases run out, a partition waiting for its retry is life ...
    NodeRun.objects.filter(run=run, status="running").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    now = timezone.now()
    assert run.id not in orphaned(now, now - STALE)
    assert reap(now, STALE.total_seconds())["redispatched"] == 0
    # ... and so is one queued behind a partition finished within the staleness ...
    PartitionRun.objects.filter(run=run, index=0).update(
        status="succeeded", heartbeat_at=now - timedelta(seconds=5), finished_at=now
    )
    assert run.id not in orphaned(now, now - STALE)
    # ... but nothing done by any partition for the staleness is a stall.
    later = now + STALE + timedelta(seconds=1)
    assert run.id in orphaned(later, later - STALE)


def test_a_lost_partition_has_its_own_task_sent_again_once_per_loss(
    eager: None, minimal_flow: dict[str, Any]
) -> None:
    """A partition running under a lease that has run out (its worker died) has its task sent
    again at once, the fan-out's node runs left held; once per loss (another reaper, a later
    pass), again after the staleness while no delivery takes it; the delivery takes it over."""
    run = queued_run(minimal_flow)
    run_id = str(run.id)
    for key in ("paid", "shape", "push"):
        assert transitions.take(run_id, key, owner=lease.FAN_OUT, lease_s=3600).outcome == "execute"
    task = dict(barrier.si().set(task_id="partition-0-task"))  # (a task that does nothing)
    transitions.add_partitions(run_id, "orders", [0], ["paid", "shape", "push"], task)
    transitions.add_partitions(run_id, "orders", [1], ["paid", "shape", "push"])  # embedded
    for index in (0, 1):
        assert transitions.take_partition(run_id, "orders", index).outcome == "execute"
    now = timezone.now()
    assert resend_lost(now, now - STALE) == 0  # both leases live
    ttl = timedelta(seconds=settings.FLOWPLATFORM_LEASE_TTL_S)
    beat = now - ttl - timedelta(seconds=1)  # the last heartbeat of the dead worker
    PartitionRun.objects.filter(run=run).update(heartbeat_at=beat, lease_expires_at=beat + ttl)
    assert resend_lost(now, now - STALE) == 1  # (partition 1 has no task to send)
    assert resend_lost(now, now - STALE) == 0  # sent for this loss already
    assert run.id not in orphaned(now, now - STALE)  # the fan-out's node runs stay held
    later = now + STALE + timedelta(seconds=1)
    assert resend_lost(later, later - STALE) == 1  # no delivery took it: sent once more
    claim = transitions.take_partition(run_id, "orders", 0)
    assert claim.outcome == "execute" and claim.took_over
    assert claim.partition is not None and claim.partition.workers_lost == 1
    now = timezone.now()
    assert resend_lost(now, now - STALE) == 0  # taken: its lease is live again


def lost_partition(run: FlowRun, now: Any) -> None:
    """Partition 0 of ``run`` (with a task) running under a lease run out long ago, the
    fan-out's node runs too: its worker died, nothing of the run done since."""
    run_id = str(run.id)
    for key in ("paid", "shape", "push"):
        assert transitions.take(run_id, key, owner=lease.FAN_OUT, lease_s=1).outcome == "execute"
    task = dict(barrier.si().set(task_id="partition-0-task"))  # (a task that does nothing)
    transitions.add_partitions(run_id, "orders", [0], ["paid", "shape", "push"], task)
    assert transitions.take_partition(run_id, "orders", 0).outcome == "execute"
    long_ago = now - 2 * STALE
    PartitionRun.objects.filter(run=run).update(
        started_at=long_ago, heartbeat_at=long_ago, lease_expires_at=long_ago
    )
    NodeRun.objects.filter(run=run, status="running").update(
        started_at=long_ago, heartbeat_at=long_ago, lease_expires_at=long_ago
    )
    FlowRun.objects.filter(id=run.id).update(started_at=long_ago, created_at=long_ago)


def test_a_resent_partition_is_no_sign_of_life_and_fails_after_max_workers_lost_resends(
    eager: None, minimal_flow: dict[str, Any]
) -> None:
    """Sending a lost partition's task again counts a resend, not a heartbeat: a run whose
    resent task no delivery takes is not kept live by it; after
    ``FLOWPLATFORM_MAX_WORKERS_LOST`` resends the partition fails as lost, with its run."""
    run = queued_run(minimal_flow)
    now = timezone.now()
    lost_partition(run, now)
    assert resend_lost(now, now - STALE) == 1
    part = PartitionRun.objects.get(run=run)
    assert (part.resends, part.resent_at, part.heartbeat_at) == (1, now, now - 2 * STALE)
    assert run.id in orphaned(now, now - STALE)  # the resend is no life
    PartitionRun.objects.filter(pk=part.pk).update(
        resends=settings.FLOWPLATFORM_MAX_WORKERS_LOST, resent_at=now - 2 * STALE
    )
    assert resend_lost(now, now - STALE) == 0
    failed = PartitionRun.objects.get(pk=part.pk)
    assert failed.status == "failed" and "sent again" in failed.error
    ended = FlowRun.objects.get(id=run.id)
    assert ended.status == "failed" and "worker lost" in ended.error
    assert not NodeRun.objects.filter(run=run, status="running").exists()
