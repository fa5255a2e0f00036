"""``file_read`` and ``file_write`` against S3 (moto in server mode on loopback), and files →
filter → Parquet on S3 as a flow on a real worker."""

from __future__ import annotations

import gzip
import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from django.conf import settings

from flows.flowfile import apply_flow_file
from flows.models import NodeRun
from flows.services import start_run, wait_for_run
from nodes.builtin.file_read import FileReadNode
from nodes.builtin.file_write import FileWriteNode
from nodes.models import Connection
from nodes.sdk import ConnectionInfo, ExecutionContext, NodeError
from nodes.urls import ConnectionURLError, validate_url
from tests.conftest import WorkerProcess
from tests.flows.helpers import add_connection

SECRET = "s3cr3t/Key+With=Symbols"
ACCESS_KEY = "AKIATESTING"
INTERVAL = datetime(2026, 3, 1, tzinfo=UTC)
TYPES = {"id": "integer", "status": "string", "amount": "decimal", "at": "datetime"}
STATUSES = ("paid", "pending", "refunded")
CENT = Decimal("0.01")


@pytest.fixture
def root() -> Path:
    path = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / uuid.uuid4().hex[:10]
    path.mkdir(parents=True)
    return path


def s3_url(endpoint: str, bucket: str, prefix: str = "") -> str:
    user = f"{quote(ACCESS_KEY, safe='')}:{quote(SECRET, safe='')}"
    return f"s3://{user}@{bucket}/{prefix}?endpoint={quote(endpoint, safe='')}&region=us-east-1"


def context(urls: dict[str, str], **values: Any) -> ExecutionContext:
    return ExecutionContext(
        connection_lookup=lambda name: ConnectionInfo(name, urls[name]),
        interval_start=INTERVAL,
        **values,
    )


def orders(start: int, count: int) -> list[dict[str, Any]]:
    at = datetime(2026, 3, 1, 8, tzinfo=UTC)
    return [
        {"id": i, "status": STATUSES[i % 3], "amount": (Decimal(i * 7 % 1000) / 100 - 3).quantize(CENT),
         "at": at + timedelta(minutes=i, microseconds=i)}
        for i in range(start, start + count)
    ]  # fmt: skip


def csv_gz(records: list[dict[str, Any]]) -> bytes:
    lines = ["id,status,amount,at"] + [
        f"{r['id']},{r['status']},{r['amount']},{r['at'].isoformat()}" for r in records
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def objects(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listing)


def parquet_records(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body)).to_pylist()


def test_s3_files_are_listed_under_the_prefix_and_read_as_a_stream(
    s3: Any, s3_endpoint: str, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="in/landing/2026-03-01/a.csv.gz", Body=csv_gz(orders(1, 3)))
    s3.put_object(Bucket=bucket, Key="in/landing/2026-03-01/b.csv.gz", Body=csv_gz(orders(4, 2)))
    s3.put_object(Bucket=bucket, Key="in/landing/2026-03-02/c.csv.gz", Body=csv_gz(orders(9, 1)))
    s3.put_object(Bucket=bucket, Key="other/landing/2026-03-01/x.csv.gz", Body=b"")
    node = FileReadNode(
        {"connection": "lake", "path": "landing/{interval_start:%Y-%m-%d}/*.csv.gz",
         "columns": TYPES, "with_file_name": True, "batch_size": 2}
    )  # fmt: skip
    ctx = context({"lake": s3_url(s3_endpoint, bucket, "in")})
    records = [record for batch in node.execute(ctx, {}) for record in batch]
    assert records == [
        {**r, "_file": f"landing/2026-03-01/{'a' if r['id'] < 4 else 'b'}.csv.gz"}
        for r in orders(1, 5)
    ]
    # partitioned per file by default: one slice per file listed, read alone
    slices = list(node.plan_slices(ctx, 1) or [])
    assert slices == [
        {"file": "landing/2026-03-01/a.csv.gz"},
        {"file": "landing/2026-03-01/b.csv.gz"},
    ]
    assert [r for b in node.execute_slice(ctx, slices[1]) for r in b] == records[3:]


def test_s3_writes_are_whole_objects_overwritten_on_rerun(
    s3: Any, s3_endpoint: str, bucket: str
) -> None:
    ctx = context({"lake": s3_url(s3_endpoint, bucket, "out")}, flow="nightly")
    node = FileWriteNode(
        {"connection": "lake", "path": "exports/{flow}/part-{part:05d}.{ext}",
         "format": "parquet", "max_rows_per_file": 40}
    )  # fmt: skip
    first = [r for b in node.execute(ctx, {"in": iter([orders(0, 100)])}) for r in b]
    assert [(f["path"], f["rows"]) for f in first] == [
        ("exports/nightly/part-00000.parquet", 40),
        ("exports/nightly/part-00001.parquet", 40),
        ("exports/nightly/part-00002.parquet", 20),
    ]
    size = s3.head_object(Bucket=bucket, Key="out/exports/nightly/part-00000.parquet")
    assert size["ContentLength"] == first[0]["bytes"]
    again = [r for b in node.execute(ctx, {"in": iter([orders(1000, 100)])}) for r in b]
    assert [f["path"] for f in again] == [f["path"] for f in first]
    back = parquet_records(s3, bucket, "out/exports/nightly/part-00002.parquet")
    assert back == orders(1080, 20)
    assert objects(s3, bucket) == [f"out/{f['path']}" for f in first]


def test_a_failed_s3_write_leaves_no_object(s3: Any, s3_endpoint: str, bucket: str) -> None:
    def failing() -> Iterator[list[dict[str, Any]]]:
        yield orders(0, 10)
        raise NodeError("upstream broke", permanent=True)

    node = FileWriteNode({"connection": "lake", "path": "x.csv"})
    with pytest.raises(NodeError, match="upstream broke"):
        list(node.execute(context({"lake": s3_url(s3_endpoint, bucket)}), {"in": failing()}))
    assert objects(s3, bucket) == []


def test_a_missing_bucket_is_a_permanent_error_without_the_secret(s3_endpoint: str) -> None:
    node = FileReadNode({"connection": "lake", "path": "*.csv"})
    ctx = context({"lake": s3_url(s3_endpoint, "no-such-bucket-here")})
    with pytest.raises(NodeError) as caught:
        list(node.execute(ctx, {}))
    assert caught.value.permanent
    assert str(caught.value) == "S3 could not list: no such bucket"


@pytest.mark.django_db
def test_s3_connections_keep_their_secret_out_of_display_and_refuse_bad_endpoints(
    s3_endpoint: str,
) -> None:
    connection = Connection(name="lake")
    connection.set_url(s3_url(s3_endpoint, "my-bucket", "in"))
    assert quote(SECRET, safe="") not in connection.display_url
    assert SECRET not in connection.display_url
    assert connection.info().url == s3_url(s3_endpoint, "my-bucket", "in")
    refused = {
        "s3://Bad_Bucket/x": "name a bucket",
        "s3://key@my-bucket/x": "both an access key and a secret key",
        "s3://my-bucket/x?endpoint=ftp://h": "http(s) URL",
        "s3://my-bucket/x?acl=public": "option 'acl' is not supported",
        "s3://my-bucket/x?endpoint=http://169.254.169.254": "link-local or metadata",
    }
    for url, message in refused.items():
        with pytest.raises(ConnectionURLError, match=re.escape(message)):
            validate_url(url)


def test_an_endpoint_refused_by_the_address_policy_is_refused_when_used(
    s3_endpoint: str, settings: Any
) -> None:
    settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = False
    node = FileReadNode({"connection": "lake", "path": "*.csv"})
    with pytest.raises(NodeError, match="a private, loopback or reserved address") as caught:
        list(node.execute(context({"lake": s3_url(s3_endpoint, "b-1")}), {}))
    assert caught.value.permanent


# --- on a worker --------------------------------------------------------------------------------
def export_node() -> dict[str, Any]:
    return {"key": "export", "type": "file_write", "config": {
        "connection": "exports",
        "path": "exports/{flow}/{interval_start:%Y/%m/%d}/part-{part:05d}.{ext}",
        "format": "parquet", "max_rows_per_file": 300}}  # fmt: skip


def landing_node(**options: Any) -> dict[str, Any]:
    return {"key": "remote", "type": "file_read", "config": {
        "connection": "landing", "path": "{interval_start:%Y-%m-%d}/*.csv.gz", "columns": TYPES,
        **options}}  # fmt: skip


PAID = {"key": "paid", "type": "filter",
        "config": {"conditions": [{"field": "status", "op": "eq", "value": "paid"}]}}  # fmt: skip


def land(s3: Any, bucket: str) -> None:
    """600 orders in four files for the run's day on S3, and one file of the day before."""
    for index, start in enumerate(range(600, 1200, 150)):
        key = f"landing/2026-03-01/batch-{index}.csv.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=csv_gz(orders(start, 150)))
    s3.put_object(Bucket=bucket, Key="landing/2026-02-28/old.csv.gz", Body=csv_gz(orders(5000, 9)))


def exported(s3: Any, bucket: str, slug: str) -> tuple[list[str], list[dict[str, Any]]]:
    keys = objects(s3, bucket, "exports/")
    assert all(key.startswith(f"exports/{slug}/2026/03/01/part-") for key in keys)
    return keys, [r for key in keys for r in parquet_records(s3, bucket, key)]


@pytest.mark.worker
def test_csv_gz_files_in_a_directory_and_a_bucket_become_parquet_files_in_a_bucket(
    worker: WorkerProcess, s3: Any, s3_endpoint: str, bucket: str, root: Path
) -> None:
    (root / "orders-1.csv.gz").write_bytes(csv_gz(orders(0, 400)))
    (root / "orders-2.csv.gz").write_bytes(csv_gz(orders(400, 200)))
    land(s3, bucket)
    add_connection("inbox", f"file://{root}")
    add_connection("landing", s3_url(s3_endpoint, bucket, "landing"))
    add_connection("exports", s3_url(s3_endpoint, bucket))
    local = {
        "key": "local",
        "type": "file_read",
        "config": {"connection": "inbox", "path": "orders-*.csv.gz", "columns": TYPES},
    }
    apply_flow_file({
        "slug": "files-to-bucket", "name": "Files to bucket",
        "nodes": [local, landing_node(), PAID, export_node()],
        "edges": [{"from": "local", "to": "paid"}, {"from": "remote", "to": "paid"},
                  {"from": "paid", "to": "export"}],
    })  # fmt: skip
    expected = [r for r in orders(0, 1200) if r["status"] == "paid"]
    for _attempt in range(2):  # a re-run writes the same files, whole
        run = wait_for_run(start_run("files-to-bucket", interval_start=INTERVAL), timeout=90)
        assert run.status == "succeeded", run.error
        keys, back = exported(s3, bucket, "files-to-bucket")
        assert [key.rpartition("/")[2] for key in keys] == [
            "part-00000.parquet",
            "part-00001.parquet",
        ]
        assert back == expected  # value for value: decimals and aware datetimes
        assert [str(r["amount"]) for r in back] == [str(r["amount"]) for r in expected]
        export = NodeRun.objects.get(run=run, node_key="export")
        assert (export.rows_in, export.rows_out) == (400, 2)


@pytest.mark.worker
def test_one_partition_per_file_reads_the_files_in_parallel_tasks(
    worker: WorkerProcess, s3: Any, s3_endpoint: str, bucket: str
) -> None:
    land(s3, bucket)
    add_connection("landing", s3_url(s3_endpoint, bucket, "landing"))
    add_connection("exports", s3_url(s3_endpoint, bucket))
    apply_flow_file({
        "slug": "landing-per-file", "name": "Landing, a partition per file",
        "nodes": [landing_node(partition_rows=100, partition_per_file=True), PAID, export_node()],
        "edges": [{"from": "remote", "to": "paid"}, {"from": "paid", "to": "export"}],
    })  # fmt: skip
    run = wait_for_run(start_run("landing-per-file", interval_start=INTERVAL), timeout=90)
    assert run.status == "succeeded", run.error
    _keys, back = exported(s3, bucket, "landing-per-file")
    assert back == [r for r in orders(600, 600) if r["status"] == "paid"]
    source = NodeRun.objects.get(run=run, node_key="remote")
    assert source.rows_out == 600
    assert f"runs/{run.id}/remote.partitions.json" in (source.output_ref or "")


@pytest.mark.django_db
def test_test_connection_lists_the_bucket_or_the_directory(
    s3_endpoint: str, bucket: str, root: Path
) -> None:
    from nodes.probe import probe

    assert probe(add_connection("lake", s3_url(s3_endpoint, bucket, "in"))).ok
    missing = probe(add_connection("gone", s3_url(s3_endpoint, "no-such-bucket-here")))
    assert not missing.ok
    assert missing.message == "S3 could not list: no such bucket"
    assert SECRET not in missing.message
    local = probe(add_connection("inbox", f"file://{root}"))
    assert local.ok
    assert local.message.startswith("directory readable, 0 entries")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_every_format_reads_back_from_s3_what_was_written(
    s3: Any, s3_endpoint: str, bucket: str, fmt: str
) -> None:
    urls = {"lake": s3_url(s3_endpoint, bucket, "data")}
    records = orders(0, 2500)
    if fmt == "json":  # file_write has no JSON-array format: the file is put as is
        body = json.dumps(records, default=str).encode()
        s3.put_object(Bucket=bucket, Key="data/out/orders.json", Body=body)
    else:
        writer = FileWriteNode({"connection": "lake", "path": "out/orders.{ext}", "format": fmt})
        list(writer.execute(context(urls), {"in": iter([records[:1000], records[1000:]])}))
    reader = FileReadNode(
        {"connection": "lake", "path": f"out/*.{fmt}", "format": fmt, "columns": TYPES}
    )
    batches = list(reader.execute(context(urls), {}))
    assert [r for b in batches for r in b] == records
    assert max(map(len, batches)) == 1000


def test_the_node_runs_redactor_learns_the_secret_key(s3_endpoint: str, bucket: str) -> None:
    ctx = context({"lake": s3_url(s3_endpoint, bucket)})
    list(
        FileReadNode({"connection": "lake", "path": "*.csv", "allow_empty": True}).execute(ctx, {})
    )
    for text in (SECRET, quote(SECRET, safe=""), f"Credential={SECRET[3:15]}"):
        assert SECRET[3:11] not in ctx.redactor.redact(f"the server said: {text}")


def test_the_s3_client_checks_the_address_it_actually_connected_to(
    s3_endpoint: str, bucket: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the endpoint looks public when checked, then connects to loopback.
    from nodes import netguard

    settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = False
    monkeypatch.setattr(netguard, "_resolve", lambda host, port: ["93.184.216.34"])
    node = FileReadNode({"connection": "lake", "path": "*.csv", "allow_empty": True})
    with pytest.raises(NodeError, match=r"connected to 127\.0\.0\.1") as caught:
        list(node.execute(context({"lake": s3_url(s3_endpoint, bucket)}), {}))
    assert caught.value.permanent


def test_a_connection_without_keys_never_signs_with_the_workers_credentials(
    s3: Any, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodes.filestore import open_store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWORKERSOWNKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-workers-own-secret")
    s3.put_object(Bucket=bucket, Key="pub/a.csv", Body=b"id\n1\n")
    url = f"s3://{bucket}/pub?endpoint={quote(s3_endpoint, safe='')}"
    store: Any = open_store(url)
    sent: list[dict[str, str]] = []
    store.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(dict(request.headers))
    )
    assert store.list("*.csv") == ["a.csv"]
    assert sent
    assert all("Authorization" not in headers for headers in sent)
    signed: Any = open_store(s3_url(s3_endpoint, bucket, "pub"))
    signed.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(dict(request.headers))
    )
    signed.list("*.csv")
    assert "AKIATESTING" in str(sent[-1].get("Authorization"))
