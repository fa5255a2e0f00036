"""A finished run's page offers each node's output: its first records, from flow-data storage."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from flows.engine.handoff import Part, delete_run_data, write_batches, write_bytes, write_manifest
from flows.models import Flow, FlowRun
from nodes.sdk.node import RowBatch
from tests.admin.conftest import staff_user
from tests.admin.records import ALL_SUCCEEDED, recorded_run, run_url
from tests.flows.helpers import add_connection

pytestmark = pytest.mark.django_db


def output_url(run: FlowRun, key: str) -> str:
    return reverse("admin:flows_flowrun_output", args=[run.pk, key])


def stored_run(flow: Flow, rows: int = 250) -> FlowRun:
    run = recorded_run(flow, "succeeded", ALL_SUCCEEDED, with_outputs=True)
    records = [(i, "paid" if i % 2 else "open", Decimal(i) / 4) for i in range(rows)]
    # Two batches, the first as rows: the page reads any output form.
    write_batches(
        f"runs/{run.pk}/orders.msgpack",
        [RowBatch(["id", "status", "amount"], records[:60]), [
            {"id": i, "status": s, "amount": a} for i, s, a in records[60:]
        ]],
    )  # fmt: skip
    write_batches(f"runs/{run.pk}/paid.msgpack", [])
    return run


def test_a_finished_run_links_each_node_to_its_first_100_records(
    admin_client: Client, paid_orders: Flow
) -> None:
    run = stored_run(paid_orders)
    page = admin_client.get(run_url(run)).content.decode()
    assert output_url(run, "orders") in page
    response = admin_client.get(output_url(run, "orders"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<th>id</th><th>status</th><th>amount</th>" in html
    assert html.count("<tr><td>") == 100
    assert "<tr><td>99</td><td>paid</td><td>24.75</td></tr>" in html
    assert "<tr><td>100</td>" not in html
    assert "output port <code>out</code>" in html
    empty = admin_client.get(output_url(run, "paid")).content.decode()
    assert "No records." in empty
    delete_run_data(str(run.pk))
    gone = admin_client.get(output_url(run, "orders")).content.decode()
    assert "no longer retained" in gone


def test_an_active_run_and_a_node_without_output_offer_no_output_link(
    admin_client: Client, paid_orders: Flow
) -> None:
    active = recorded_run(paid_orders, status="running", with_outputs=True)
    assert reverse("admin:flows_flowrun_output", args=[active.pk, "orders"]) not in (
        admin_client.get(run_url(active)).content.decode()
    )
    failed = recorded_run(paid_orders)  # no outputs stored
    html = admin_client.get(output_url(failed, "paid")).content.decode()
    assert "stored no output" in html


def test_reading_a_runs_data_needs_the_run_right(viewer_client: Client, paid_orders: Flow) -> None:
    run = stored_run(paid_orders, rows=3)
    assert output_url(run, "orders") not in viewer_client.get(run_url(run)).content.decode()
    assert viewer_client.get(output_url(run, "orders")).status_code == 403
    runner = Client()
    runner.force_login(staff_user("runner", "view_flow", "view_flowrun", "run_flow"))
    assert runner.get(output_url(run, "orders")).status_code == 200
    assert runner.get(output_url(run, "nope")).status_code == 404


def test_a_file_sources_output_is_read_again_and_names_a_file_changed_since(
    admin_client: Client, paid_orders: Flow
) -> None:
    # The source's output as a file_read read per file keeps it: the slice and the version.
    root = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / f"admin-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    (root / "a.csv").write_text("id,status\n1,paid\n2,open\n")
    add_connection("admin-files", f"file://{root}")
    run = recorded_run(paid_orders, "succeeded", ALL_SUCCEEDED)
    piece = f"runs/{run.pk}/orders.p00000.slice.json"
    stat = (root / "a.csv").stat()
    write_bytes(piece, json.dumps({"slice": {"file": "a.csv"}, "pins": {
        "a.csv": f"{stat.st_size}:{stat.st_mtime_ns}"}}).encode())  # fmt: skip
    config = {"connection": "admin-files", "path": "*.csv"}
    ref = write_manifest(
        f"runs/{run.pk}/orders.partitions.json",
        [Part(piece, 0, 2)],
        reread={"key": "orders", "type": "file_read", "config": config},
    )
    run.node_runs.filter(node_key="orders").update(output_ref=ref)
    html = admin_client.get(output_url(run, "orders")).content.decode()
    assert "<tr><td>1</td><td>paid</td></tr>" in html
    (root / "a.csv").write_text("id,status\n1,paid\n2,open\n3,gone\n")
    changed = admin_client.get(output_url(run, "orders")).content.decode()
    assert "The output cannot be read again: the file &#x27;a.csv&#x27; changed since" in changed
