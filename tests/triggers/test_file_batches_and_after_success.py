"""File triggers: batches of new files as one run read by ``file_read``; each file moved or
tagged once its run succeeded — exactly once however often the run's end is heard — and left
in place when its run failed. A real worker, a watched directory and moto's S3 server."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings

from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun, RunStatus
from flows.services import ensure_current_version, wait_for_run
from scheduling.triggers import settle
from scheduling.triggers.files import poll
from scheduling.triggers.hooks import run_finished
from scheduling.triggers.models import AfterSuccess, FlowTrigger, TriggerEvent
from tests.conftest import WorkerProcess, wait_until
from tests.flows.helpers import add_connection


def orders_flow(**trigger: Any) -> FlowTrigger:
    """Reads the files its run names (declared columns: a non-integer id fails the run)."""
    apply_flow_file(
        {
            "slug": "orders-landed",
            "name": "Orders landed",
            "nodes": [
                {
                    "key": "orders",
                    "type": "file_read",
                    "config": {
                        "connection": "inbox",
                        "path": "orders/*.csv",
                        "run_files": True,
                        "columns": {"id": "integer"},
                        "with_file_name": True,
                    },
                }
            ],
            "triggers": [{"files": "inbox", "path": "orders/*.csv", "every": "1m", **trigger}],
        }
    )
    return FlowTrigger.objects.get(flow__slug="orders-landed")


def finished_runs() -> list[FlowRun]:
    runs = FlowRun.objects.filter(flow__slug="orders-landed").order_by("created_at")
    return [wait_for_run(run, timeout=60) for run in runs]


def events(trigger: FlowTrigger) -> dict[str, TriggerEvent]:
    return {e.details["name"]: e for e in TriggerEvent.objects.filter(trigger=trigger)}


def settled(trigger: FlowTrigger) -> dict[str, TriggerEvent] | None:
    """The trigger's events once none waits any more (moved, tagged, failed or left)."""
    found = events(trigger)
    waiting = {AfterSuccess.PENDING, AfterSuccess.DOING}
    return found if all(e.after_success not in waiting for e in found.values()) else None


def rows_read(run: FlowRun) -> int:
    return NodeRun.objects.get(run=run, node_key="orders").rows_out or 0


@pytest.fixture
def inbox() -> Path:
    """A fresh directory inside the file roots the workers have too (the test settings')."""
    directory = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / f"inbox-{uuid.uuid4().hex[:10]}"
    (directory / "orders").mkdir(parents=True)
    return directory


# --- batches --------------------------------------------------------------------------------
def test_a_batch_is_one_run_whose_file_read_reads_exactly_its_files(
    worker: WorkerProcess, inbox: Path
) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = orders_flow(batch={"max_files": 2})
    for name, rows in (("a.csv", 1), ("b.csv", 2), ("c.csv", 3)):
        (inbox / "orders" / name).write_text("id\n" + "".join(f"{i}\n" for i in range(rows)))

    first = poll(trigger)
    (inbox / "orders" / "d.csv").write_text("id\n7\n")  # after the poll: the next one's
    again = poll(trigger)
    last = poll(trigger)

    assert [len(f.run.params["file_names"]) for f in first.started] == [2, 1]
    assert [f.run.params["file_names"] for f in again.started] == [["orders/d.csv"]]
    assert last.started == [] and last.seen == 4
    runs = finished_runs()
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3
    assert [r.params["file_names"] for r in runs] == [
        ["orders/a.csv", "orders/b.csv"],
        ["orders/c.csv"],
        ["orders/d.csv"],
    ]
    assert [rows_read(r) for r in runs] == [3, 3, 1]  # its files only, not every match
    assert [f["name"] for f in runs[0].payload["files"]] == ["orders/a.csv", "orders/b.csv"]
    # each file is its own event (it triggers once), the batch's with the same run
    by_name = events(trigger)
    assert len(by_name) == 4
    assert by_name["orders/a.csv"].run_id == by_name["orders/b.csv"].run_id == runs[0].id


def test_file_read_refuses_a_named_file_outside_its_path(
    worker: WorkerProcess, inbox: Path
) -> None:
    add_connection("inbox", f"file://{inbox}")
    orders_flow()
    (inbox / "secrets.csv").write_text("id\n1\n")
    from flows.services import start_run

    run = wait_for_run(start_run("orders-landed", params={"file_name": "secrets.csv"}), 60)

    assert run.status == RunStatus.FAILED
    node = NodeRun.objects.get(run=run, node_key="orders")
    assert "run_files: 'secrets.csv' does not match path 'orders/*.csv'" in node.error


# --- after success, on a directory ----------------------------------------------------------
def test_files_move_after_their_run_succeeded_and_stay_after_it_failed(
    worker: WorkerProcess, inbox: Path
) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = orders_flow(after_success={"move_to": "done/"})
    (inbox / "orders" / "a.csv").write_text("id\n1\n")
    (inbox / "orders" / "b.csv").write_text("id\nnot a number\n")

    assert len(poll(trigger).started) == 2
    runs = finished_runs()
    found = wait_until(lambda: settled(trigger), 30, message="the files were never settled")

    assert [r.status for r in runs] == [RunStatus.SUCCEEDED, RunStatus.FAILED]
    assert found["orders/a.csv"].after_success == AfterSuccess.DONE
    assert found["orders/a.csv"].after_success_attempts == 1
    assert (inbox / "done" / "a.csv").read_text() == "id\n1\n"
    assert not (inbox / "orders" / "a.csv").exists()
    assert found["orders/b.csv"].after_success == AfterSuccess.LEFT
    assert (inbox / "orders" / "b.csv").exists()  # the failed run's file stays...
    assert poll(trigger).started == []  # ...and does not run again


def test_a_trigger_never_picks_up_the_files_it_moved(worker: WorkerProcess, inbox: Path) -> None:
    add_connection("inbox", f"file://{inbox}")
    apply_flow_file(
        {
            "slug": "orders-landed",
            "name": "Orders landed",
            "nodes": [{"key": "file", "type": "payload", "config": {"records_path": "file"}}],
            "triggers": [
                {"files": "inbox", "path": "**/*.csv", "after_success": {"move_to": "done"}}
            ],
        }
    )
    trigger = FlowTrigger.objects.get(flow__slug="orders-landed")
    (inbox / "orders" / "a.csv").write_text("id\n1\n")

    assert len(poll(trigger).started) == 1
    wait_until(lambda: (inbox / "done" / "orders" / "a.csv").exists(), 60)  # path kept

    assert poll(trigger).seen == 0  # done/orders/a.csv matches **/*.csv, but is its own


def test_the_run_end_heard_again_and_again_moves_a_file_once(
    worker: WorkerProcess, inbox: Path
) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = orders_flow(after_success={"move_to": "done/"})
    (inbox / "orders" / "a.csv").write_text("id\n1\n")
    poll(trigger)
    run = finished_runs()[0]
    wait_until(lambda: settled(trigger), 30)

    # the hook delivered again (a retried task, a second process), and a poll's sweep
    run_finished(run)
    assert settle.run_finished(run.id) == 0
    poll(trigger)

    event = events(trigger)["orders/a.csv"]
    assert (event.after_success, event.after_success_attempts) == (AfterSuccess.DONE, 1)
    assert event.error == ""


def test_concurrent_deliveries_of_a_run_end_move_the_file_once(
    transactional_db: None, inbox: Path
) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = orders_flow(after_success={"move_to": "done/"})
    (inbox / "orders" / "a.csv").write_text("id\n1\n")
    stamp = str((inbox / "orders" / "a.csv").stat().st_mtime_ns)
    run = succeeded_run_of(trigger, "orders/a.csv", stamp, "done/a.csv")
    start = threading.Barrier(4)
    moved: list[int] = []

    def deliver() -> None:
        from django.db import connection

        start.wait()
        try:
            moved.append(settle.run_finished(run.id))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(moved) == [0, 0, 0, 1]
    event = events(trigger)["orders/a.csv"]
    assert (event.after_success, event.after_success_attempts) == (AfterSuccess.DONE, 1)
    assert (inbox / "done" / "a.csv").exists()


# --- after success, on S3 -------------------------------------------------------------------
def s3_url(endpoint: str, bucket: str) -> str:
    return f"s3://testing:testing@{bucket}/partner?endpoint={quote(endpoint, safe='')}"


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def tags(s3: Any, bucket: str, key: str) -> dict[str, str]:
    found = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in found}


def test_three_s3_objects_are_tagged_once_their_batch_run_succeeded(
    worker: WorkerProcess, s3: Any, s3_endpoint: str, bucket: str
) -> None:
    add_connection("inbox", s3_url(s3_endpoint, bucket))
    trigger = orders_flow(batch={"max_files": 100}, after_success={"tag": {"flowplatform": "done"}})
    for name in ("a.csv", "b.csv", "c.csv"):
        s3.put_object(Bucket=bucket, Key=f"partner/orders/{name}", Body=b"id\n1\n")

    first = poll(trigger)
    runs = finished_runs()
    wait_until(lambda: settled(trigger), 30, message="the objects were never tagged")

    assert len(first.started) == 1 and rows_read(runs[0]) == 3
    assert runs[0].status == RunStatus.SUCCEEDED
    for name in ("a.csv", "b.csv", "c.csv"):
        assert tags(s3, bucket, f"partner/orders/{name}") == {"flowplatform": "done"}
    assert poll(trigger).started == []  # tagged files stay, and are known


def test_s3_objects_move_after_success_and_a_failed_runs_object_stays(
    worker: WorkerProcess, s3: Any, s3_endpoint: str, bucket: str
) -> None:
    add_connection("inbox", s3_url(s3_endpoint, bucket))
    trigger = orders_flow(after_success={"move_to": "done/"})
    s3.put_object(Bucket=bucket, Key="partner/orders/a.csv", Body=b"id\n1\n")
    s3.put_object(Bucket=bucket, Key="partner/orders/b.csv", Body=b"id\nnot a number\n")

    poll(trigger)
    finished_runs()
    found = wait_until(lambda: settled(trigger), 30, message="the objects were never settled")

    assert keys(s3, bucket) == ["partner/done/a.csv", "partner/orders/b.csv"]
    assert found["orders/b.csv"].after_success == AfterSuccess.LEFT
    assert poll(trigger).started == []


def succeeded_run_of(trigger: FlowTrigger, name: str, stamp: str, target: str) -> FlowRun:
    """A run of the trigger's flow that succeeded, for file ``name`` waiting to be moved."""
    run = FlowRun.objects.create(
        flow=trigger.flow,
        version=ensure_current_version(trigger.flow),
        trigger="file",
        status=RunStatus.SUCCEEDED,
    )
    TriggerEvent.objects.create(
        trigger=trigger,
        key=f"file:{name}",
        run=run,
        after_success=AfterSuccess.PENDING,
        details={
            "name": name,
            "size": 5,
            "stamp": stamp,
            "connection": "inbox",
            "after_success": {"move_to": target},
        },
    )
    return run


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_move_that_failed_for_a_reason_a_retry_can_help_is_done_at_a_later_poll(
    db: None, s3: Any, s3_endpoint: str, bucket: str
) -> None:
    add_connection("inbox", s3_url(f"http://127.0.0.1:{closed_port()}", bucket))
    trigger = orders_flow(after_success={"move_to": "done/"})
    put = s3.put_object(Bucket=bucket, Key="partner/orders/a.csv", Body=b"id\n1\n")
    run = succeeded_run_of(trigger, "orders/a.csv", put["ETag"].strip('"'), "done/a.csv")

    assert settle.run_finished(run.id) == 0  # nothing listens at the store's address
    waiting = events(trigger)["orders/a.csv"]
    assert (waiting.after_success, waiting.after_success_attempts) == (AfterSuccess.PENDING, 1)
    assert "S3 could not" in waiting.error

    add_connection("inbox", s3_url(s3_endpoint, bucket))  # the store is back
    poll(trigger)

    done = events(trigger)["orders/a.csv"]
    assert (done.after_success, done.after_success_attempts, done.error) == (
        AfterSuccess.DONE,
        2,
        "",
    )
    assert keys(s3, bucket) == ["partner/done/a.csv"]


def test_a_file_gone_before_its_move_is_a_failure_that_names_it(db: None, inbox: Path) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = orders_flow(after_success={"move_to": "done/"})
    run = succeeded_run_of(trigger, "orders/a.csv", "1", "done/a.csv")

    settle.run_finished(run.id)

    event = events(trigger)["orders/a.csv"]
    assert (event.after_success, event.error) == (
        AfterSuccess.FAILED,
        "file 'orders/a.csv' does not exist",
    )


def test_the_end_of_a_run_nothing_waits_on_costs_one_query(
    db: None, inbox: Path, django_assert_num_queries: Any
) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = orders_flow(after_success={"move_to": "done/"})
    node = {"key": "body", "type": "payload", "config": {}}
    apply_flow_file({"slug": "report", "name": "r", "nodes": [node], "triggers": [{"after": "x"}]})
    run = FlowRun.objects.create(
        flow=trigger.flow, version=ensure_current_version(trigger.flow), trigger="api"
    )
    bare = FlowRun.objects.only("id", "flow_id", "limited").get(pk=run.pk)

    with django_assert_num_queries(1):
        run_finished(bare)
