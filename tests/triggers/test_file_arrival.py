"""File arrival: a run per new file of a watched directory or S3 prefix, each file once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.flowfile import apply_flow_file
from flows.models import FlowRun, RunStatus
from flows.services import wait_for_run
from nodes.crypto import encrypt
from nodes.filestore import glob_regex
from nodes.models import Connection
from nodes.urls import ConnectionURLError
from scheduling.triggers.files import poll, poll_due
from scheduling.triggers.models import FlowTrigger
from tests.conftest import WorkerProcess
from tests.flows.helpers import add_connection


def watching(path: str = "orders/*.csv") -> FlowTrigger:
    apply_flow_file(
        {
            "slug": "orders-landed",
            "name": "Orders landed",
            "nodes": [{"key": "file", "type": "payload", "config": {"records_path": "file"}}],
            "triggers": [{"files": "inbox", "path": path, "every": "1m"}],
        }
    )
    return FlowTrigger.objects.get(flow__slug="orders-landed")


def runs() -> list[FlowRun]:
    return list(FlowRun.objects.filter(flow__slug="orders-landed").order_by("created_at"))


@pytest.fixture
def inbox(tmp_path: Path, settings: Any) -> Path:
    settings.FLOWPLATFORM_FILE_ROOTS = [str(tmp_path)]
    directory = tmp_path / "inbox"
    (directory / "orders").mkdir(parents=True)
    return directory


def test_three_files_in_a_watched_directory_give_three_runs_and_a_fourth_poll_none(
    worker: WorkerProcess, inbox: Path
) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = watching()
    for name in ("a.csv", "b.csv", "c.csv"):
        (inbox / "orders" / name).write_text("id\n1\n")
    (inbox / "orders" / "notes.txt").write_text("not matched")
    (inbox / "orders" / ".d.csv").write_text("hidden: being written")

    first = poll(trigger)
    again = poll(trigger)

    assert len(first.started) == 3 and first.error == ""
    assert again.started == [] and again.seen == 3
    done = [wait_for_run(run, timeout=60) for run in runs()]
    assert [r.status for r in done] == [RunStatus.SUCCEEDED] * 3
    assert sorted(r.params["file_name"] for r in done) == [
        "orders/a.csv",
        "orders/b.csv",
        "orders/c.csv",
    ]
    assert {r.trigger for r in done} == {"file"}
    assert done[0].payload["file"]["size"] == 5


def test_a_rewritten_file_runs_again_and_an_unchanged_one_does_not(db: None, inbox: Path) -> None:
    add_connection("inbox", f"file://{inbox}")
    trigger = watching()
    (inbox / "orders" / "a.csv").write_text("id\n1\n")
    (inbox / "orders" / "b.csv").write_text("id\n1\n")
    assert len(poll(trigger).started) == 2

    (inbox / "orders" / "a.csv").write_text("id\n1\n2\n")

    assert [f.run.params["file_name"] for f in poll(trigger).started] == ["orders/a.csv"]


def test_a_directory_outside_the_file_roots_is_never_listed(db: None, inbox: Path) -> None:
    with pytest.raises(ConnectionURLError, match="only inside FLOWPLATFORM_FILE_ROOTS"):
        add_connection("inbox", "file:///etc")  # refused when saved
    connection = add_connection("inbox", f"file://{inbox}")
    # ... and when listed, for a connection stored before the rule (or the roots changed)
    Connection.objects.filter(pk=connection.pk).update(encrypted_url=encrypt("file:///etc"))
    trigger = watching("*")

    result = poll(trigger)

    assert result.started == []
    assert "allowed only inside FLOWPLATFORM_FILE_ROOTS" in result.error


def test_a_due_trigger_is_polled_once_then_waits_its_interval(db: None, inbox: Path) -> None:
    add_connection("inbox", f"file://{inbox}")
    watching()
    (inbox / "orders" / "a.csv").write_text("id\n")

    assert poll_due() == 1
    (inbox / "orders" / "b.csv").write_text("id\n")
    assert poll_due() == 0  # polled less than a minute ago
    assert len(runs()) == 1


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("orders/*.csv", ["orders/a.csv"], ["orders/x/a.csv", "a.csv", "orders/a.csvx"]),
        ("**/*.csv", ["a.csv", "x/y/a.csv"], ["a.txt"]),
        ("day-?.json", ["day-1.json"], ["day-10.json"]),
        ("[!x]*.csv", ["a.csv"], ["x.csv"]),
    ],
)
def test_globs(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = glob_regex(pattern)
    assert all(regex.match(m) for m in matches)
    assert not any(regex.match(m) for m in misses)


def test_three_objects_under_a_watched_s3_prefix_give_three_runs_and_a_fourth_poll_none(
    worker: WorkerProcess, s3: Any, s3_endpoint: str, bucket: str
) -> None:
    add_connection("inbox", f"s3://testing:testing@{bucket}/partner?endpoint={s3_endpoint}")
    trigger = watching()
    for name in ("a.csv", "b.csv", "c.csv"):
        s3.put_object(Bucket=bucket, Key=f"partner/orders/{name}", Body=b"id\n1\n")
    s3.put_object(Bucket=bucket, Key="elsewhere/orders/d.csv", Body=b"id\n")

    first = poll(trigger)
    again = poll(trigger)

    assert (len(first.started), first.error) == (3, "")
    assert again.started == []
    done = [wait_for_run(run, timeout=60) for run in runs()]
    assert [r.status for r in done] == [RunStatus.SUCCEEDED] * 3
    assert sorted(r.params["file_name"] for r in done) == [
        "orders/a.csv",
        "orders/b.csv",
        "orders/c.csv",
    ]
    assert all(len(r.payload["file"]["stamp"]) == 32 for r in done)  # the ETag


def test_a_wrong_s3_secret_is_reported_without_the_secret(db: None, s3_endpoint: str) -> None:
    add_connection("inbox", f"s3://testing:hunter2@missing-bucket/p?endpoint={s3_endpoint}")
    trigger = watching()

    result = poll(trigger)

    assert result.started == [] and "no such bucket" in result.error
    assert "hunter2" not in result.error


def test_an_s3_listing_follows_the_outbound_address_policy(
    db: None, s3_endpoint: str, settings: Any
) -> None:
    add_connection("inbox", f"s3://testing:testing@landing/p?endpoint={s3_endpoint}")
    trigger = watching()
    settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = False  # loopback is no longer allowed

    result = poll(trigger)

    assert result.started == []
    assert result.error.startswith("connection 'inbox': ") and "127.0.0.1" in result.error
