"""Flow data on S3: a real S3-compatible server (moto in server mode) on loopback."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import boto3
import pytest
from django.conf import settings
from pytest_httpserver import HTTPServer
from storages.backends.s3 import S3Storage

from flows.engine.handoff import (
    delete_run_data,
    manifest_name,
    read_batches,
    read_output,
    write_batches,
    write_manifest,
    write_partitions,
)
from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from tests.conftest import WorkerProcess
from tests.flows.helpers import (
    SOURCE_DB_URL,
    add_connection,
    orders_table,
    point_minimal_flow_at,
    posted_records,
)
from tests.s3 import CREDENTIALS


def keys_in(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS)
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def s3_storage(endpoint: str, bucket: str) -> S3Storage:
    """Configured as FLOW_DATA_STORAGE=s3://BUCKET/flows configures it (see settings)."""
    options: dict[str, Any] = dict(settings.STORAGES["flowdata"].get("OPTIONS", {}))
    return S3Storage(
        bucket_name=bucket,
        location="flows",
        endpoint_url=endpoint,
        region_name="us-east-1",
        addressing_style="path",
        access_key="testing",
        secret_key="testing",
        file_overwrite=True,
        default_acl=None,
        max_memory_size=options.get("max_memory_size", 8 * 1024 * 1024),
    )


def records(count: int, start: int = 0) -> list[dict[str, Any]]:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [
        {"id": i, "name": f"Zoë {i}", "amount": Decimal(i) / 4, "at": at + dt.timedelta(hours=i)}
        for i in range(start, start + count)
    ]


def test_outputs_round_trip_through_s3(s3_endpoint: str, bucket: str) -> None:
    storage = s3_storage(s3_endpoint, bucket)
    batches = [records(500, i * 500) for i in range(4)]
    assert write_batches("runs/r1/a.msgpack", batches, storage) == 2000
    assert list(read_batches("runs/r1/a.msgpack", storage)) == batches
    assert write_batches("runs/r1/a.msgpack", batches[:1], storage) == 500  # overwritten
    assert list(read_batches("runs/r1/a.msgpack", storage)) == batches[:1]

    parts = write_partitions("r1", "b", batches, 700, storage=storage)
    ref = write_manifest(manifest_name("r1", "b"), parts, storage)
    assert [p.rows_out for p in parts] == [700, 700, 600]
    assert [r for b in read_output(ref, storage) for r in b] == [r for b in batches for r in b]
    assert "flows/runs/r1/b.p00002.msgpack" in keys_in(s3_endpoint, bucket)

    write_batches("runs/r2/keep.msgpack", batches[:1], storage)
    assert delete_run_data("r1", storage) == 5  # a, three partitions, the manifest
    assert keys_in(s3_endpoint, bucket) == ["flows/runs/r2/keep.msgpack"]
    assert delete_run_data("r1", storage) == 0


@pytest.mark.worker
def test_a_partitioned_run_on_a_worker_keeps_its_data_in_s3(
    worker_process: WorkerProcess,
    transactional_db: None,
    s3_endpoint: str,
    bucket: str,
    httpserver: HTTPServer,
    minimal_flow: dict[str, Any],
) -> None:
    httpserver.expect_request("/ingest", method="POST").respond_with_json({"ok": True})
    add_connection("crm", httpserver.url_for("/"))
    add_connection("warehouse", SOURCE_DB_URL)
    s3_env = {
        "FLOW_DATA_STORAGE": f"s3://{bucket}/flows",
        "AWS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    worker_process.stop()  # every task of this run must go to the S3 worker (until the next
    # test needing the session worker starts it again)
    s3_worker = WorkerProcess(settings.DATABASES["default"]["NAME"], extra_env=s3_env).start()
    try:
        with orders_table(600) as table:
            minimal_flow["nodes"][0]["config"]["partition_rows"] = 250
            apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
            run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    finally:
        s3_worker.stop()
    assert run.status == "succeeded", run.error
    assert len(posted_records(httpserver)) == len(table.expected_paid())
    stored = keys_in(s3_endpoint, bucket)
    assert f"flows/runs/{run.id}/orders.p00002.msgpack" in stored
    assert f"flows/runs/{run.id}/push.partitions.json" in stored
