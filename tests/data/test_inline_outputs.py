"""Small outputs kept in the node run's reference (decision 0040): nothing stored in flow-data
storage, read back by every reader of a reference, rerun from, previewed and purged."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from pytest_httpserver import HTTPServer

from flows.engine.handoff import (
    INLINE_MAX_BYTES,
    INLINE_PREFIX,
    INLINE_PURGED,
    first_records,
    flow_data_storage,
    port_ref,
    read_batches,
    read_output,
    run_prefix,
    write_output,
)
from flows.flowfile import apply_flow_file
from flows.models import FlowRun
from flows.services import rerun, run_result, start_run
from tests.flows.helpers import (
    SOURCE_DB_URL,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    posted_records,
)


@pytest.fixture(autouse=True)
def own_storage(settings: Any, tmp_path: Path) -> Path:
    """A flow-data folder of this test's own, to see what is (not) stored."""
    location = tmp_path / "flowdata"
    settings.STORAGES = {
        **settings.STORAGES,
        "flowdata": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location), "allow_overwrite": True},
        },
    }
    return location


def stored_files(location: Path) -> list[str]:
    return sorted(str(p.relative_to(location)) for p in location.rglob("*") if p.is_file())


RECORDS = [
    {"id": 1, "total": Decimal("12.50"), "at": dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)},
    {"id": 2, "total": None, "at": dt.datetime(2026, 1, 3, 11, tzinfo=dt.UTC)},
]


def test_a_small_output_is_its_reference_and_reads_back_with_its_types(
    own_storage: Path,
) -> None:
    ref, rows = write_output("runs/r1/orders.msgpack", [RECORDS[:1], [], RECORDS[1:]])
    assert rows == 2
    assert ref.startswith(INLINE_PREFIX)
    assert stored_files(own_storage) == []  # nothing written
    assert [r for batch in read_output(ref) for r in batch] == RECORDS
    assert [r for batch in read_batches(ref) for r in batch] == RECORDS
    assert first_records(ref, 1) == RECORDS[:1]
    assert port_ref(ref, "out") == ref
    empty, none = write_output("runs/r1/none.msgpack", [])
    assert (none, list(read_output(empty))) == (0, [])


def test_a_larger_output_is_stored_as_before(own_storage: Path) -> None:
    many = [{"id": i, "text": f"record {i:05d}"} for i in range(INLINE_MAX_BYTES // 10)]
    ref, rows = write_output("runs/r2/orders.msgpack", [many])
    assert (ref, rows) == ("runs/r2/orders.msgpack", len(many))
    assert stored_files(own_storage) == ["runs/r2/orders.msgpack"]
    assert [r for batch in read_output(ref) for r in batch] == many


def test_a_purged_inline_output_reads_as_purged() -> None:
    with pytest.raises(FileNotFoundError, match="purged"):
        list(read_output(INLINE_PURGED))


@pytest.mark.embedded
def test_a_run_of_small_outputs_stores_nothing_and_reruns_and_purges(
    transactional_db: None,
    eager: None,
    httpserver: HTTPServer,
    minimal_flow: dict[str, Any],
    own_storage: Path,
) -> None:
    httpserver.expect_request("/ingest").respond_with_json({"ok": True})
    add_connection("crm", httpserver.url_for("/"))
    add_connection("warehouse", SOURCE_DB_URL)
    with orders_table(6) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = start_run("paid-orders-to-crm")  # returns after the in-process execution
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        nodes = {n.node_key: n for n in run.node_runs.all()}
        assert all(n.output_ref.startswith(INLINE_PREFIX) for n in nodes.values())
        assert not flow_data_storage().exists(run_prefix(str(run.id)))
        paid = table.expected_paid()
        assert nodes["orders"].rows_out == 6 and nodes["paid"].rows_out == len(paid) > 0
        assert [r["order_id"] for r in first_records(nodes["shape"].output_ref, 100)] == [
            e["order_id"] for e in paid
        ]
        assert run_result(run)["node"] == "push"

        again = rerun(run, from_node="push")  # the other nodes' outputs are reused
    again.refresh_from_db()
    assert again.status == "succeeded", again.error
    reused = {n.node_key: n for n in again.node_runs.all()}
    assert reused["shape"].output_ref == nodes["shape"].output_ref
    assert reused["push"].attempts == 1 and reused["orders"].attempts == 0
    assert len(posted_records(httpserver)) == 2 * len(paid)

    FlowRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=8))
    out = StringIO()
    call_command("purgerundata", "--older-than", "7d", stdout=out)
    assert "cleared 4 inline outputs" in out.getvalue()
    with pytest.raises(FileNotFoundError):
        list(read_output(run.node_runs.get(node_key="shape").output_ref))
    # The rerun carries its own copy, kept.
    assert [r for b in read_output(again.node_runs.get(node_key="shape").output_ref) for r in b]
