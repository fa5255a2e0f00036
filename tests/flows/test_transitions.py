"""Node-run state changes under leases and fencing tokens (``flows.transitions``), driven by
hand on the platform database, whichever backend it is (the suite runs them on PostgreSQL,
through PgBouncer and on SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from django.conf import settings
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flows import dialect, transitions
from flows.engine import lease
from flows.models import FlowRun, NodeRun, PartitionRun
from flows.services import cancel_run
from nodes import models as nodes_models
from tests.conftest import PGBOUNCER, wait_until
from tests.flows.helpers import queued_run

pytestmark = [
    pytest.mark.usefixtures("transactional_db", "example_connections"),
    pytest.mark.embedded,
]


def clock_us(at: datetime) -> int:
    """A time as the take's fence reads the clock: microseconds since 1970."""
    return int(at.timestamp() * 1_000_000)


def node(run: FlowRun, key: str) -> NodeRun:
    return NodeRun.objects.get(run=run, node_key=key)


def expire_lease(node_run: NodeRun) -> None:
    past = timezone.now() - timedelta(seconds=1)
    NodeRun.objects.filter(pk=node_run.pk).update(lease_expires_at=past)


def test_take_claims_a_pending_node_under_a_lease_and_starts_the_run(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    before = timezone.now()
    claim = transitions.take(str(run.id), "orders")
    assert claim.outcome == "execute" and claim.node_run is not None and not claim.took_over
    taken = node(run, "orders")
    assert (taken.status, taken.attempts, taken.deliveries) == ("running", 1, 1)
    assert taken.lease_owner == lease.owner()
    ttl = timedelta(seconds=settings.FLOWPLATFORM_LEASE_TTL_S)
    assert before + ttl <= taken.lease_expires_at <= timezone.now() + ttl
    # the fence: the database server's clock, in microseconds (the servers of the tests are
    # this machine, whose clock the test reads; SQLite's clock counts milliseconds)
    assert clock_us(before) - 1000 <= taken.fence <= clock_us(timezone.now())
    assert claim.node_run.fence == taken.fence and claim.node_run.run.params == {}
    assert FlowRun.objects.get(id=run.id).status == "running"
    assert transitions.take(str(run.id), "orders").outcome == "busy"  # not twice at once
    assert node(run, "orders").attempts == 1


def test_finish_records_the_node_ends_its_lease_and_leaves_the_run_to_its_last_node(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    claim = transitions.take(str(run.id), "orders")
    assert claim.node_run is not None
    assert transitions.finish_node(
        claim.node_run, "succeeded", close=True, rows_in=0, rows_out=3, output_ref="x"
    )
    done = node(run, "orders")
    assert (done.status, done.rows_out, done.output_ref) == ("succeeded", 3, "x")
    assert (done.lease_owner, done.lease_expires_at) == ("", None)
    assert done.duration_ms is not None and done.duration_ms >= 0
    # close=True and the other nodes have not run: the run fails ("not every node succeeded")
    assert FlowRun.objects.get(id=run.id).status == "failed"
    assert transitions.take(str(run.id), "orders").outcome == "done"


def test_the_last_node_closes_the_run_when_every_node_succeeded(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    for key in ("orders", "paid", "shape"):
        NodeRun.objects.filter(run=run, node_key=key).update(
            status="succeeded", output_ref=f"runs/{key}"
        )
    claim = transitions.take(str(run.id), "push")
    assert claim.node_run is not None
    assert claim.outputs == {k: f"runs/{k}" for k in ("orders", "paid", "shape")}
    assert transitions.finish_node(
        claim.node_run, "succeeded", close=True, rows_in=1, rows_out=1, output_ref="y"
    )
    finished = FlowRun.objects.get(id=run.id)
    assert finished.status == "succeeded" and finished.finished_at is not None


def test_the_taken_node_run_and_its_run_are_what_the_orm_reads_of_them(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(params={"day": "2026-01-02"}, payload=[1, "a"])
    claim = transitions.take(str(run.id), "paid")
    taken = claim.node_run
    assert taken is not None and not taken._state.adding and taken._state.db == "default"
    read = NodeRun.objects.get(pk=taken.pk)
    fields = transitions._NODE_FIELDS
    assert taken.get_deferred_fields() == {f.attname for f in NodeRun._meta.concrete_fields} - {
        NodeRun._meta.get_field(name).attname for name in fields
    }
    for name in fields:
        attname = NodeRun._meta.get_field(name).attname
        assert getattr(taken, attname) == getattr(read, attname), name
    assert taken.fence > 0 and taken.status == "running" and taken.started_at is not None
    its_run = taken.run
    assert not its_run._state.adding and its_run.pk == run.pk
    assert (its_run.params, its_run.payload) == ({"day": "2026-01-02"}, [1, "a"])
    assert its_run.created_at == FlowRun.objects.get(id=run.id).created_at
    assert "finished_at" in its_run.get_deferred_fields()


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_take_and_finish_are_one_statement_each_on_postgresql(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    NodeRun.objects.filter(run=run).exclude(node_key="push").update(status="succeeded")
    with CaptureQueriesContext(connection) as take:
        claim = transitions.take(str(run.id), "push")
    assert claim.node_run is not None
    with CaptureQueriesContext(connection) as finish:
        transitions.finish_node(
            claim.node_run, "succeeded", close=True, rows_in=0, rows_out=0, output_ref=""
        )
    assert len(take) == 1
    # the node's success and the run's close in one statement (then the run's end is announced)
    assert finish[0]["sql"].count("UPDATE") == 2
    assert FlowRun.objects.get(id=run.id).status == "succeeded"


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_take_reads_the_run_once_besides_starting_it(
    minimal_flow: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # (each table read is parsed, planned and executed by the server on every take: the run's
    # row is read with the node, and the claim and the result read it from there)
    run = queued_run(minimal_flow)
    chained: list[tuple[Any, ...]] = []

    def chain(*args: Any) -> list[tuple[Any, ...]]:
        chained.append(args)
        return run_chain(*args)

    run_chain = dialect.chain
    monkeypatch.setattr(dialect, "chain", chain)
    assert transitions.take(str(run.id), "orders").outcome == "execute"
    steps, final, params = chained[0]
    statement = "WITH " + ", ".join(f"{name} AS ({sql})" for name, sql in steps) + " " + final
    with dialect._bound_cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        plan = cursor.fetchone()[0]
    reads: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node["Node Type"] != "ModifyTable" and "Relation Name" in node:
            reads.append(node["Relation Name"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"] if isinstance(plan, list) else plan)
    # the run: with the node, then the start's locking read and its update; the node runs:
    # the node, its claim and the outputs of the run's succeeded nodes
    assert reads.count(FlowRun._meta.db_table) == 3
    assert reads.count(NodeRun._meta.db_table) == 3


#: The suite's second pass reaches PostgreSQL through PgBouncer (transaction mode).
BEHIND_PGBOUNCER = bool(os.environ.get(PGBOUNCER))


def run_through(run: FlowRun) -> None:
    for key in ("orders", "paid", "shape", "push"):
        claim = transitions.take(str(run.id), key)
        assert claim.node_run is not None
        assert transitions.finish_node(
            claim.node_run, "succeeded", close=key == "push", rows_in=1, rows_out=1
        )
    assert FlowRun.objects.get(id=run.id).status == "succeeded"


def prepared_here() -> dict[str, str]:
    """The statements prepared on this session: name -> text."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        return dict(cursor.fetchall())


@pytest.fixture
def preparing() -> Any:
    """Each test starts from a process that prepares, and leaves it so."""
    dialect._preparing = True
    yield
    dialect._preparing = True


@pytest.mark.skipif("connection.vendor != 'postgresql' or BEHIND_PGBOUNCER")
@pytest.mark.usefixtures("preparing")
def test_the_engine_statements_are_prepared_once_under_names_that_say_what_they_are(
    minimal_flow: dict[str, Any],
) -> None:
    run_through(queued_run(minimal_flow))
    first = prepared_here()
    names = [name for name in first if name.startswith("flowplatform_")]
    assert names and len(names) == len(first)  # the ORM's statements are never prepared
    takes = {name for name in names if "claimed AS" in first[name]}
    assert len(takes) == 1
    # Another run: the same statement, planned once for the session.
    run_through(queued_run(minimal_flow))
    assert {name for name, text in prepared_here().items() if "claimed AS" in text} == takes
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            ["%claimed AS%"],
        )
        # 8 takes: PostgreSQL planned the first 5 for their values, then kept one plan
        assert cursor.fetchall() == [(3, 5)]
    # A new session names each statement the same (a pooler's server connection that another
    # client prepared it on runs exactly it).
    connection.close()
    run_through(queued_run(minimal_flow))
    assert {name for name, text in prepared_here().items() if "claimed AS" in text} == takes


@pytest.mark.skipif("connection.vendor != 'postgresql' or BEHIND_PGBOUNCER")
@pytest.mark.usefixtures("preparing")
def test_a_prepared_statement_stays_prepared_when_it_fails_or_a_transaction_rolls_back(
    minimal_flow: dict[str, Any],
) -> None:
    # (its name is what it is: preparing it again would be refused, "already exists")
    with pytest.raises(DataError):
        dialect.rows("SELECT 1 / %(divisor)s", {"divisor": 0})  # prepared, then it fails
    assert dialect.rows("SELECT 1 / %(divisor)s", {"divisor": 1}) == [(1,)]
    run_through(queued_run(minimal_flow))
    kept = prepared_here()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        NodeRun.objects.update(rows_in=0)
        raise ZeroDivisionError  # rolled back
    assert prepared_here() == kept
    run_through(queued_run(minimal_flow))
    assert dialect._preparing


@pytest.mark.skipif("connection.vendor != 'postgresql' or BEHIND_PGBOUNCER")
@pytest.mark.usefixtures("preparing")
def test_past_its_limit_a_connection_prepares_no_more_statements(
    minimal_flow: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialect, "PREPARED_PER_CONNECTION", 2)
    connection.close()
    run_through(queued_run(minimal_flow))
    assert len(prepared_here()) == 2
    assert dialect._preparing


@pytest.mark.skipif("connection.vendor != 'postgresql' or BEHIND_PGBOUNCER")
@pytest.mark.usefixtures("preparing")
@pytest.mark.parametrize("server_side", ["forgotten", "taken"])
def test_a_session_that_does_not_keep_the_statements_runs_them_unprepared_from_then_on(
    minimal_flow: dict[str, Any], server_side: str, caplog: pytest.LogCaptureFixture
) -> None:
    # What a transaction-mode pooler that does not track prepared statements does: the next
    # transaction lands on a server connection where a name is missing ("forgotten"), or
    # where it was prepared already ("taken": by another client, the same statement).
    run_through(queued_run(minimal_flow))
    names = list(prepared_here())
    pgconn = connection.connection.pgconn  # (behind psycopg's back, as a pooler would be)
    pgconn.exec_(b"DEALLOCATE ALL")
    if server_side == "taken":
        connection.connection._prepared._names.clear()
        for name in names:
            pgconn.exec_(f"PREPARE {name} AS SELECT 1".encode())
    run = queued_run(minimal_flow)
    run_through(run)  # every state change made, once
    assert not dialect._preparing
    assert "does not keep prepared statements" in caplog.text
    node_runs = NodeRun.objects.filter(run=run)
    assert [n.attempts for n in node_runs] == [1, 1, 1, 1]
    assert {n.status for n in node_runs} == {"succeeded"}
    kept = prepared_here()
    run_through(queued_run(minimal_flow))
    assert prepared_here() == kept  # nothing prepared any more


@pytest.mark.skipif("connection.vendor != 'postgresql' or BEHIND_PGBOUNCER")
@pytest.mark.usefixtures("preparing")
def test_inside_a_transaction_the_engine_statements_run_unprepared(
    minimal_flow: dict[str, Any],
) -> None:
    # (a statement that failed there would abort the caller's transaction: no second try)
    run = queued_run(minimal_flow)
    connection.close()
    with transaction.atomic():
        claim = transitions.take(str(run.id), "orders")
        assert claim.node_run is not None
        assert prepared_here() == {}


def test_a_lease_run_out_is_taken_over_and_the_first_owner_can_change_nothing(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    first = transitions.take(str(run.id), "push").node_run
    assert first is not None
    expire_lease(first)  # its owner stopped beating (paused, cut off, dead)
    second = transitions.take(str(run.id), "push")
    assert second.outcome == "execute" and second.took_over and second.node_run is not None
    now = node(run, "push")
    assert (now.attempts, now.workers_lost) == (2, 1) and now.fence > first.fence
    # Every change the first owner tries is refused: its fence is gone.
    assert not transitions.heartbeat(first, rows_in=5)
    assert not transitions.save_checkpoint(first, {"sent": 5})
    assert not transitions.retry_node(first, "boom", 1)
    assert not transitions.fail_node(first, "boom")
    assert not transitions.finish_node(first, "succeeded", rows_in=1, rows_out=1, output_ref="z")
    assert transitions.heartbeat_many({first.pk: first.fence}) == set()
    unchanged = node(run, "push")
    assert (unchanged.status, unchanged.fence, unchanged.rows_in) == ("running", now.fence, 0)
    assert unchanged.checkpoint is None and unchanged.error == ""
    assert FlowRun.objects.get(id=run.id).status == "running"
    # The second owner's changes go through.
    assert transitions.save_checkpoint(second.node_run, {"sent": 7})
    assert transitions.heartbeat_many({first.pk: now.fence}) == {first.pk}
    assert transitions.finish_node(second.node_run, "succeeded", rows_in=1, rows_out=1)
    assert node(run, "push").status == "succeeded"


def test_a_node_whose_owner_on_this_machine_is_gone_is_taken_over_at_once(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    transitions.take(str(run.id), "push")
    fence = node(run, "push").fence
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    machine = lease.owner().split(":")[0]
    NodeRun.objects.filter(run=run, node_key="push").update(
        lease_owner=f"{machine}:{int(dead.stdout)}:0123abcd"
    )
    claim = transitions.take(str(run.id), "push")  # the lease is live, its owner is not
    assert claim.outcome == "execute" and claim.took_over
    assert node(run, "push").workers_lost == 1 and node(run, "push").fence > fence


def test_a_node_leased_by_a_live_or_unknown_owner_is_left_to_it(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    transitions.take(str(run.id), "push")
    fence = node(run, "push").fence
    for owner in ("other-host/4026531836:4242:0123abcd", lease.FAN_OUT, lease.owner()):
        NodeRun.objects.filter(run=run, node_key="push").update(lease_owner=owner)
        assert transitions.take(str(run.id), "push").outcome == "busy", owner
    assert node(run, "push").fence == fence


def test_nothing_is_taken_in_a_cancelled_run(minimal_flow: dict[str, Any]) -> None:
    run = queued_run(minimal_flow)
    cancel_run(run)
    assert transitions.take(str(run.id), "orders").outcome == "stop"
    assert transitions.take(str(run.id), "no-such-node").outcome == "missing"
    assert node(run, "orders").attempts == 0


def test_a_retry_ends_the_lease_and_the_retry_takes_the_node_under_a_new_fence(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    first = transitions.take(str(run.id), "orders").node_run
    assert first is not None
    assert transitions.retry_node(first, "peer busy", 30)
    waiting = node(run, "orders")
    assert (waiting.status, waiting.error, waiting.lease_owner) == ("pending", "peer busy", "")
    assert waiting.heartbeat_at is not None and waiting.heartbeat_at > timezone.now()
    retried = transitions.take(str(run.id), "orders")
    assert retried.outcome == "execute" and not retried.took_over
    assert node(run, "orders").attempts == 2 and node(run, "orders").fence > first.fence


def test_a_failure_skips_the_descendants_and_fails_the_run_with_a_clipped_error(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    failing = transitions.take(str(run.id), "paid").node_run
    assert failing is not None
    assert transitions.fail_node(failing, "x" * 20_000, "Traceback ...", ["shape", "push"])
    statuses = dict(NodeRun.objects.filter(run=run).values_list("node_key", "status"))
    assert statuses == {"orders": "skipped", "paid": "failed", "shape": "skipped",
                        "push": "skipped"}  # fmt: skip
    failed = node(run, "paid")
    assert len(failed.error) == transitions.ERROR_MAX_CHARS
    assert failed.traceback == "Traceback ..."
    ended = FlowRun.objects.get(id=run.id)
    assert ended.status == "failed" and ended.error.startswith("node 'paid' failed: xxx")
    assert len(ended.error) == transitions.ERROR_MAX_CHARS


def test_partition_progress_adds_to_every_running_node_in_one_statement(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    NodeRun.objects.filter(run=run).update(status="running", rows_in=5, rows_out=1, fence=3)
    NodeRun.objects.filter(run=run, node_key="push").update(status="succeeded")
    NodeRun.objects.filter(run=run, node_key="shape").update(fence=4)  # taken over since
    nodes = {n.node_key: n for n in NodeRun.objects.filter(run=run)}
    for key in ("orders", "paid", "shape", "push"):
        nodes[key].fence = 3
    deltas = {nodes["orders"]: (0, 100), nodes["paid"]: (100, 30), nodes["shape"]: (7, 7),
              nodes["push"]: (30, 1)}  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        assert transitions.add_rows(deltas) == 2  # not a finished node, nor one taken over
    assert len(queries) == 1
    rows = {n.node_key: (n.rows_in, n.rows_out) for n in NodeRun.objects.filter(run=run)}
    assert rows == {"orders": (5, 101), "paid": (105, 31), "shape": (5, 1), "push": (5, 1)}


# --- partitions: leased and fenced as node runs are -----------------------------------------
def partition_of(run: FlowRun, index: int = 0) -> PartitionRun:
    return PartitionRun.objects.get(run=run, source="orders", index=index)


def test_a_partition_is_taken_under_a_lease_and_a_stale_owner_cannot_finish_it(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(status="running")
    transitions.add_partitions(str(run.id), "orders", [0, 1], ["paid", "shape", "push"])
    transitions.add_partitions(str(run.id), "orders", [1], ["paid"])  # re-planned: kept as is
    assert partition_of(run, 1).nodes == ["paid", "shape", "push"]
    first = transitions.take_partition(str(run.id), "orders", 0)
    assert first.outcome == "execute" and first.partition is not None and not first.took_over
    assert transitions.take_partition(str(run.id), "orders", 0).outcome == "busy"
    stale = first.partition
    assert (stale.status, stale.attempts, stale.fence) == ("running", 1, 1)
    assert stale.lease_owner == lease.owner()
    # Its lease runs out (the owner paused, cut off): the next delivery takes it over.
    past = timezone.now() - timedelta(seconds=1)
    PartitionRun.objects.filter(pk=stale.pk).update(lease_expires_at=past)
    second = transitions.take_partition(str(run.id), "orders", 0)
    assert second.outcome == "execute" and second.took_over and second.partition is not None
    assert (second.partition.fence, second.partition.workers_lost) == (2, 1)
    # The first owner can change nothing any more.
    assert not transitions.save_checkpoint(stale, {"push": {"acked": 3}})
    assert transitions.heartbeat_many({stale.pk: stale.fence}, PartitionRun) == set()
    assert not transitions.retry_node(stale, "peer busy", 1)
    assert not transitions.finish_partition(stale, "succeeded", rows={"push": [1, 1]})
    assert not transitions.fail_fan_out(node(run, "push"), "boom", "", [], [], stale)
    assert partition_of(run).status == "running" and partition_of(run).rows == {}
    assert node(run, "push").status == "pending"
    # The new owner can.
    assert transitions.save_checkpoint(second.partition, {"push": {"acked": 3}})
    assert transitions.finish_partition(second.partition, "succeeded", rows={"push": [4, 4]})
    done = partition_of(run)
    assert (done.status, done.checkpoint, done.rows_of("push")) == (
        "succeeded", {"push": {"acked": 3}}, (4, 4),
    )  # fmt: skip
    assert transitions.take_partition(str(run.id), "orders", 0).outcome == "done"


def test_taking_a_partition_reads_it_its_run_and_its_node_runs_in_one_statement(
    minimal_flow: dict[str, Any],
) -> None:
    """What a partition task reads before it streams: the partition under its new fence, its
    run, the connections' version (a connection read once per process, decision 0038) and the
    node runs it executes with their fences — in the statement that claims it (two on SQLite,
    one transaction)."""
    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(status="running")
    NodeRun.objects.filter(run=run, node_key__in=["paid", "push"]).update(status="running", fence=7)
    transitions.add_partitions(str(run.id), "orders", [0, 1], ["paid", "shape", "push"])
    keys = ["orders", "paid", "shape", "push", "absent"]
    with CaptureQueriesContext(connection) as taking:
        claim = transitions.take_partition(str(run.id), "orders", 0, node_keys=keys)
    if connection.vendor == "postgresql":
        assert len(taking) == 1
    assert claim.outcome == "execute" and claim.partition is not None and not claim.took_over
    part = claim.partition
    assert (part.index, part.nodes, part.fence, part.attempts) == (
        0,
        ["paid", "shape", "push"],
        1,
        1,
    )
    assert part.run.id == run.id and part.run.status == "running"
    assert part.run.version_id == run.version_id and part.run.params == run.params
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {nodes_models.version_sql()}")
        assert claim.connections == cursor.fetchone()[0]
    assert sorted(claim.node_runs) == ["orders", "paid", "push", "shape"]
    for key, node_run in claim.node_runs.items():
        stored = node(run, key)
        assert (node_run.pk, node_run.fence, node_run.status) == (
            stored.pk, stored.fence, stored.status,
        )  # fmt: skip
        assert node_run.run is part.run
    # Not taken: nothing read beside what decides (the partition's other delivery is busy).
    busy = transitions.take_partition(str(run.id), "orders", 0, node_keys=keys)
    assert (busy.outcome, busy.partition, busy.node_runs) == ("busy", None, {})
    # The run ends: a partition recorded but not started never starts.
    FlowRun.objects.filter(id=run.id).update(status="cancelled")
    assert transitions.take_partition(str(run.id), "orders", 1).outcome == "stop"
    assert partition_of(run, 1).status == "cancelled"
    assert transitions.take_partition(str(run.id), "orders", 2).outcome == "missing"


def test_a_checkpoint_and_progress_commit_without_waiting_for_the_disk_and_nothing_else(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(status="running")
    push = transitions.take(str(run.id), "push", owner=lease.FAN_OUT).node_run
    assert push is not None
    transitions.add_partitions(str(run.id), "orders", [0], ["paid", "shape", "push"])
    relaxed = "set_config('synchronous_commit', 'off', true)"
    postgres = connection.vendor == "postgresql"
    with CaptureQueriesContext(connection) as taking:
        part = transitions.take_partition(str(run.id), "orders", 0).partition
    assert part is not None
    assert not any(relaxed in q["sql"] for q in taking.captured_queries)  # a lease: durable
    with CaptureQueriesContext(connection) as saving:
        assert transitions.save_checkpoint(part, {"push": {"acked": 1}})
        assert transitions.add_rows({push: (3, 2)}) == 1
    # One statement each, relaxed on PostgreSQL, and the relaxation ends with it.
    assert [relaxed in q["sql"] for q in saving.captured_queries] == [postgres, postgres]
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("on",)
    assert partition_of(run).checkpoint == {"push": {"acked": 1}}
    assert (node(run, "push").rows_in, node(run, "push").rows_out) == (3, 2)
    # Inside a transaction, that transaction's own commit decides.
    with transaction.atomic(), CaptureQueriesContext(connection) as inside:
        assert transitions.save_checkpoint(part, {"push": {"acked": 2}})
    assert not any(relaxed in q["sql"] for q in inside.captured_queries)
    assert partition_of(run).checkpoint == {"push": {"acked": 2}}


def test_a_node_take_commits_without_waiting_for_the_disk_and_its_finish_waits(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    relaxed = "set_config('synchronous_commit', 'off', true)"
    postgres = connection.vendor == "postgresql"
    with CaptureQueriesContext(connection) as taking:
        claim = transitions.take(str(run.id), "orders")
    assert claim.node_run is not None
    with CaptureQueriesContext(connection) as finishing:
        assert transitions.finish_node(claim.node_run, "succeeded", rows_in=1, rows_out=1)
    # (one statement on PostgreSQL; SQLite commits what it writes as it always does)
    assert any(relaxed in q["sql"] for q in taking.captured_queries) == postgres
    assert not any(relaxed in q["sql"] for q in finishing.captured_queries)
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("on",)


def test_a_take_lost_in_a_crash_of_the_database_never_has_its_fence_handed_out_again(
    minimal_flow: dict[str, Any],
) -> None:
    # A take whose commit did not reach the disk before the server crashed: its worker got a
    # fence and went on; the row came back as it was before. The next take must not hand the
    # same fence to another worker (the first one's changes would pass the fence check).
    run = queued_run(minimal_flow)
    for _ in range(3):  # (and however often it happens to the same node)
        before = node(run, "orders")
        lost = transitions.take(str(run.id), "orders").node_run
        assert lost is not None and lost.fence > before.fence
        NodeRun.objects.filter(pk=before.pk).update(  # what the server had on disk
            status=before.status, fence=before.fence, attempts=before.attempts,
            lease_owner=before.lease_owner, lease_expires_at=before.lease_expires_at,
        )  # fmt: skip
        # (a restart; SQLite's clock counts milliseconds)
        wait_until(lambda lost=lost: clock_us(timezone.now()) > lost.fence + 2000, 1.0)
        again = transitions.take(str(run.id), "orders").node_run
        assert again is not None and again.fence > lost.fence
        assert not transitions.finish_node(lost, "succeeded", rows_in=1, rows_out=1)
        NodeRun.objects.filter(pk=before.pk).update(status="pending", lease_owner="")


def test_a_retried_partition_is_taken_again_under_a_new_fence_with_its_checkpoint(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(status="running")
    transitions.add_partitions(str(run.id), "orders", [0], ["paid", "shape", "push"])
    first = transitions.take_partition(str(run.id), "orders", 0).partition
    assert first is not None
    assert transitions.save_checkpoint(first, {"push": {"acked": 0}})
    assert transitions.retry_node(first, "push: HTTP 503", 5)
    waiting = partition_of(run)
    assert (waiting.status, waiting.error, waiting.lease_owner) == ("pending", "push: HTTP 503", "")
    again = transitions.take_partition(str(run.id), "orders", 0)
    assert again.outcome == "execute" and not again.took_over and again.partition is not None
    assert (again.partition.attempts, again.partition.fence) == (2, 2)
    assert again.partition.checkpoint == {"push": {"acked": 0}}


def test_a_failed_partition_fails_its_node_and_the_run_and_closes_the_fan_out(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    for key in ("paid", "shape", "push"):
        transitions.take(str(run.id), key, owner=lease.FAN_OUT)
    transitions.add_partitions(str(run.id), "orders", [0, 1], ["paid", "shape", "push"])
    part = transitions.take_partition(str(run.id), "orders", 1).partition
    assert part is not None
    fan = list(NodeRun.objects.filter(run=run, status="running"))
    assert transitions.fail_fan_out(
        node(run, "shape"), "bad cast", "Traceback", fan, ["push"], part
    )
    statuses = dict(NodeRun.objects.filter(run=run).values_list("node_key", "status"))
    assert statuses == {"orders": "skipped", "paid": "cancelled", "shape": "failed",
                        "push": "skipped"}  # fmt: skip
    assert node(run, "shape").error == "partition 1: bad cast"
    assert (partition_of(run, 1).status, partition_of(run, 1).failed_node) == ("failed", "shape")
    ended = FlowRun.objects.get(id=run.id)
    assert (ended.status, ended.error) == ("failed", "node 'shape' failed: partition 1: bad cast")
    # A partition not started yet never starts: it is cancelled when its task comes.
    assert transitions.take_partition(str(run.id), "orders", 0).outcome == "stop"
    assert partition_of(run, 0).status == "cancelled"


@pytest.mark.parametrize("end", ["cancel", "timeout"])
def test_a_run_ending_cancels_its_unfinished_partitions_with_it(
    minimal_flow: dict[str, Any], end: str
) -> None:
    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(status="running")
    transitions.add_partitions(str(run.id), "orders", [0, 1, 2], ["paid", "shape", "push"])
    done = transitions.take_partition(str(run.id), "orders", 0).partition
    running = transitions.take_partition(str(run.id), "orders", 1).partition
    assert done is not None and running is not None
    assert transitions.finish_partition(done, "succeeded", rows={"push": [1, 1]})
    if end == "cancel":
        assert cancel_run(FlowRun.objects.get(id=run.id))
    else:
        assert transitions.finish_run(str(run.id), "failed", "run timed out after 1s")
    shown = {p.index: (p.status, p.lease_owner, p.lease_expires_at) for p in
             PartitionRun.objects.filter(run=run)}  # fmt: skip
    assert shown == {0: ("succeeded", "", None), 1: ("cancelled", "", None),
                     2: ("cancelled", "", None)}  # fmt: skip
    assert partition_of(run, 2).finished_at is not None
    # The delivery still executing partition 1 changes nothing more; a late task does nothing.
    assert not transitions.finish_partition(running, "succeeded", rows={"push": [1, 1]})
    assert transitions.take_partition(str(run.id), "orders", 2).outcome == "stop"
    assert partition_of(run, 2).status == "cancelled"


def test_a_partition_recorded_after_its_run_ended_is_cancelled_when_its_task_comes(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(status="running")
    assert cancel_run(FlowRun.objects.get(id=run.id))
    transitions.add_partitions(str(run.id), "orders", [0], ["paid", "shape", "push"])
    assert transitions.take_partition(str(run.id), "orders", 0).outcome == "stop"
    assert (partition_of(run).status, partition_of(run).error) == ("cancelled", "run ended")


def fanned_out(run: FlowRun, partitions: int) -> None:
    """The run's source ``orders`` (read in slices) handed to its fan-out with the stretch
    ``paid → shape → push``, as ``partitions.fan_out`` leaves them, and its partitions recorded."""
    FlowRun.objects.filter(id=run.id).update(status="running")
    source = transitions.take(str(run.id), "orders").node_run
    stretch = [transitions.take(str(run.id), key, owner=lease.FAN_OUT).node_run
               for key in ("paid", "shape", "push")]  # fmt: skip
    assert source is not None and None not in stretch
    assert transitions.mark_partitioned([source, *stretch]) == 4  # type: ignore[list-item]
    assert transitions.hand_over(source, lease.FAN_OUT, 60)
    nodes = ["orders", "paid", "shape", "push"]
    transitions.add_partitions(str(run.id), "orders", range(partitions), nodes)


@pytest.mark.parametrize("first", ["partition", "cancel"])
def test_the_last_partition_finishing_as_its_run_is_cancelled_leaves_nothing_running(
    minimal_flow: dict[str, Any], first: str
) -> None:
    """Whichever commits first, the last partition's success or the run's cancel, every node
    run and partition of the fan-out ends (the join, coming after, finds the run ended)."""
    run = queued_run(minimal_flow)
    fanned_out(run, 2)
    done = transitions.take_partition(str(run.id), "orders", 0).partition
    last = transitions.take_partition(str(run.id), "orders", 1).partition
    assert done is not None and last is not None
    assert transitions.finish_partition(done, "succeeded", rows={"push": [1, 1]})
    if first == "partition":
        assert transitions.finish_partition(last, "succeeded", rows={"push": [1, 1]})
        assert cancel_run(FlowRun.objects.get(id=run.id))
    else:
        assert cancel_run(FlowRun.objects.get(id=run.id))
        assert not transitions.finish_partition(last, "succeeded", rows={"push": [1, 1]})
    assert FlowRun.objects.get(id=run.id).status == "cancelled"
    ended = {n.node_key: (n.status, n.lease_owner, n.lease_expires_at is None, n.error)
             for n in NodeRun.objects.filter(run=run)}  # fmt: skip
    stopped = ("cancelled", "", True, "run ended")
    assert ended == dict.fromkeys(("orders", "paid", "shape", "push"), stopped)
    assert all(n.finished_at and n.duration_ms is not None for n in NodeRun.objects.filter(run=run))
    shown = dict(PartitionRun.objects.filter(run=run).values_list("index", "status"))
    assert shown == {0: "succeeded", 1: "succeeded" if first == "partition" else "cancelled"}


def at_once(*changes: Callable[[], Any]) -> list[BaseException]:
    """Run each change in a thread of its own (its own connection), released together; what
    they raised."""
    start, errors = threading.Barrier(len(changes)), []

    def run(change: Callable[[], Any]) -> None:
        try:
            start.wait(10)
            change()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(change,)) for change in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_last_partition_and_the_cancel_committing_at_once_leave_nothing_running(
    minimal_flow: dict[str, Any],
) -> None:
    """The same two changes from two connections released together, a few times over."""
    for _round in range(5):
        run = queued_run(minimal_flow)
        fanned_out(run, 1)
        last = transitions.take_partition(str(run.id), "orders", 0).partition
        assert last is not None
        errors = at_once(
            partial(transitions.finish_partition, last, "succeeded", rows={"push": [1, 1]}),
            partial(transitions.finish_run, str(run.id), "cancelled", "cancelled by request"),
        )
        assert errors == []
        assert FlowRun.objects.get(id=run.id).status == "cancelled"
        assert not NodeRun.objects.filter(run=run, status="running").exists()
        assert PartitionRun.objects.get(run=run).status in ("succeeded", "cancelled")


def blocked_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("select wait_event_type from pg_stat_activity where pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row and row[0] == "Lock")


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_cancel_waiting_behind_a_partitions_retry_does_not_deadlock_with_it(
    minimal_flow: dict[str, Any],
) -> None:
    """A partition's retry locks the partition, then its fan-out's node runs; a run's end,
    started in between on another connection, waits for the partition before it locks any of
    those node runs: both commit (they deadlocked when the end locked the node runs first)."""
    run = queued_run(minimal_flow)
    fanned_out(run, 1)
    part = transitions.take_partition(str(run.id), "orders", 0).partition
    assert part is not None
    pid: list[int] = []
    errors: list[BaseException] = []

    def cancel() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("select pg_backend_pid()")
                pid.append(cursor.fetchone()[0])
            transitions.finish_run(str(run.id), "cancelled", "cancelled by request")
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    canceller = threading.Thread(target=cancel)
    with transaction.atomic():
        # (The partition's row only, as retry_node's first statement locks it.)
        PartitionRun.objects.filter(pk=part.pk).update(error="")
        canceller.start()
        wait_until(lambda: bool(pid) and blocked_on_a_lock(pid[0]), 10, 0.05, "cancel waits")
        assert transitions.retry_node(part, "push: HTTP 503", 5)
    canceller.join(30)
    assert not canceller.is_alive() and errors == []
    assert FlowRun.objects.get(id=run.id).status == "cancelled"
    assert not NodeRun.objects.filter(run=run, status="running").exists()
    assert partition_of(run).status == "cancelled"


def test_a_run_cancelled_while_its_source_plans_hands_nothing_over_and_ends_the_source(
    minimal_flow: dict[str, Any],
) -> None:
    """A cancel coming while a source plans its partitions finds no node run the fan-out
    holds: the hand-over then fails (nothing runs), and the source ends, fenced, rather than
    staying running for good; so does a partition producer coming after the run ended."""
    from flows.engine.partitions import produce_partitions

    run = queued_run(minimal_flow)
    FlowRun.objects.filter(id=run.id).update(status="running")
    source = transitions.take(str(run.id), "orders").node_run
    assert source is not None
    assert cancel_run(FlowRun.objects.get(id=run.id))
    assert node(run, "orders").status == "running"  # (still its own delivery's)
    assert not transitions.hand_over(source, lease.FAN_OUT, 60)
    assert node(run, "orders").lease_owner != lease.FAN_OUT
    produce_partitions.apply(args=[str(run.id), "orders", []])
    ended = node(run, "orders")
    assert (ended.status, ended.error, ended.lease_owner) == ("cancelled", "run ended", "")


def test_a_checkpoint_cleared_is_stored_as_sql_null(minimal_flow: dict[str, Any]) -> None:
    """``None`` saved as a checkpoint (of a node run or a partition) is SQL NULL, as saving
    the model stores it, not the JSON value ``null``."""
    run = queued_run(minimal_flow)
    taken = transitions.take(str(run.id), "orders").node_run
    assert taken is not None
    assert transitions.save_checkpoint(taken, {"sent": 1})
    assert transitions.save_checkpoint(taken, None)
    assert NodeRun.objects.filter(pk=taken.pk, checkpoint__isnull=True).exists()
    transitions.add_partitions(str(run.id), "push", [0], ["push"])
    part = transitions.take_partition(str(run.id), "push", 0).partition
    assert part is not None
    assert transitions.save_checkpoint(part, {"push": {"acked": 1}})
    assert transitions.save_checkpoint(part, None)
    assert PartitionRun.objects.filter(pk=part.pk, checkpoint__isnull=True).exists()


def test_a_partition_recording_a_node_outside_its_stretch_fails_with_a_clear_error(
    minimal_flow: dict[str, Any],
) -> None:
    """A partition whose ``nodes`` name a node the delivery does not run in it (planned by
    an older release) fails, with its fan-out and the run, saying which: no ``KeyError``."""
    from flows.engine.failures import NodeFailed
    from flows.engine.partitions import run_partition

    run = queued_run(minimal_flow)
    run_id = str(run.id)
    for key in ("paid", "shape", "push"):
        assert transitions.take(run_id, key, owner=lease.FAN_OUT, lease_s=60).outcome == "execute"
    transitions.add_partitions(run_id, "orders", [0], ["paid", "shape", "push"])
    with pytest.raises(NodeFailed, match="records node\\(s\\) 'push'"):
        run_partition(run_id, "orders", ["paid", "shape"], 0)
    part = partition_of(run)
    assert part.status == "failed" and "'push', not of the stretch after 'orders'" in part.error
    assert (part.failed_node, node(run, "paid").status) == ("paid", "failed")
    assert FlowRun.objects.get(id=run.id).status == "failed"
