"""A file source read per file in partitions stores no records: only each partition's slice
and the version of each file it read (decision 0044). Reading its output later — the run's
view of it, a rerun that reuses it — reads the files again, and fails clearly once a file
changed or went away. In a directory and on S3 (moto on loopback), on a real worker."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from flows.engine.handoff import flow_data_storage, read_bytes, read_output
from flows.flowfile import apply_flow_file
from flows.models import FlowRun
from flows.services import rerun, start_run, wait_for_run
from nodes.sdk import NodeError
from nodes.sdk.batches import as_records
from tests.conftest import WorkerProcess
from tests.flows.helpers import SOURCE_DB_URL, add_connection

COLUMNS = {"id": "integer", "name": "string"}


def csv_gz(first: int, count: int) -> bytes:
    lines = [f"{i},name {i}" for i in range(first, first + count)]
    return gzip.compress(("id,name\n" + "\n".join(lines) + "\n").encode())


@pytest.fixture
def target() -> Iterator[str]:
    add_connection("reread-target", SOURCE_DB_URL)
    name = f"file_reread_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create table {} (id bigint primary key, name text)").format(
                sql.Identifier(name)
            )
        )
    yield name
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))


@pytest.fixture
def inbox() -> Path:
    path = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / f"reread-{uuid.uuid4().hex[:10]}"
    path.mkdir(parents=True)
    add_connection("reread-files", f"file://{path}")
    return path


def s3_url(endpoint: str, bucket: str) -> str:
    return f"s3://testing:testing@{bucket}/in?endpoint={quote(endpoint, safe='')}&region=us-east-1"


def load(table: str, keep_above: int | None = None) -> FlowRun:
    """Run files -> sql_write (upsert: a rerun writes the same rows again, harmlessly); with
    ``keep_above``, files -> filter (id above it) -> sql_write."""
    keep = {"key": "keep", "type": "filter", "config": {"conditions": [
        {"field": "id", "op": "gt", "value": keep_above}]}}  # fmt: skip
    chain = ["files", "keep", "load"] if keep_above is not None else ["files", "load"]
    apply_flow_file(
        {
            "slug": "reread-files",
            "name": "Files read again",
            "nodes": [
                {
                    "key": "files",
                    "type": "file_read",
                    "config": {
                        "connection": "reread-files",
                        "path": "*.csv.gz",
                        "columns": COLUMNS,
                    },
                },
                *([keep] if keep_above is not None else []),
                {
                    "key": "load",
                    "type": "sql_write",
                    "config": {
                        "connection": "reread-target",
                        "table": table,
                        "mode": "upsert",
                        "key": ["id"],
                    },
                },
            ],
            "edges": [{"from": a, "to": b} for a, b in pairwise(chain)],
        }
    )
    run = wait_for_run(start_run("reread-files"), timeout=120)
    assert run.status == "succeeded", run.error
    return run


def source_records(run: FlowRun, node: str = "files") -> list[dict[str, Any]]:
    ref = run.node_runs.get(node_key=node).output_ref
    return sorted((r for b in read_output(ref) for r in as_records(b)), key=lambda r: r["id"])


def expected(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"name {i}"} for i in range(1, count + 1)]


def rerun_load(run: FlowRun) -> FlowRun:
    return wait_for_run(rerun(run, from_node="load"), timeout=120)


@pytest.mark.worker
def test_a_file_sources_partitions_keep_slices_and_versions_not_records(
    worker: WorkerProcess, inbox: Path, target: str
) -> None:
    (inbox / "a.csv.gz").write_bytes(csv_gz(1, 300))
    (inbox / "b.csv.gz").write_bytes(csv_gz(301, 200))
    run = load(target)
    _dirs, stored = flow_data_storage().listdir(f"runs/{run.id}")
    assert not [name for name in stored if name.startswith("files.p") and name.endswith(".msgpack")]
    piece = json.loads(read_bytes(f"runs/{run.id}/files.p00000.slice.json"))
    size = (inbox / "a.csv.gz").stat()
    assert piece == {
        "slice": {"file": "a.csv.gz"},
        "pins": {"a.csv.gz": f"{size.st_size}:{size.st_mtime_ns}"},
    }
    source = run.node_runs.get(node_key="files")
    assert (source.rows_out, run.node_runs.get(node_key="load").rows_in) == (500, 500)


@pytest.mark.worker
def test_the_runs_view_and_a_rerun_read_unchanged_files_again(
    worker: WorkerProcess, inbox: Path, target: str
) -> None:
    (inbox / "a.csv.gz").write_bytes(csv_gz(1, 300))
    (inbox / "b.csv.gz").write_bytes(csv_gz(301, 200))
    run = load(target)
    assert source_records(run) == expected(500)
    again = rerun_load(run)
    assert again.status == "succeeded", again.error
    assert again.node_runs.get(node_key="load").rows_in == 500


@pytest.mark.worker
def test_a_derived_output_after_the_source_is_recomputed_from_the_files_read_again(
    worker: WorkerProcess, inbox: Path, target: str
) -> None:
    (inbox / "a.csv.gz").write_bytes(csv_gz(1, 300))
    (inbox / "b.csv.gz").write_bytes(csv_gz(301, 200))
    run = load(target, keep_above=250)
    assert run.node_runs.get(node_key="load").rows_in == 250
    assert source_records(run, "keep") == expected(500)[250:]


@pytest.mark.worker
def test_a_file_changed_since_the_run_fails_reading_and_the_rerun_clearly(
    worker: WorkerProcess, inbox: Path, target: str
) -> None:
    (inbox / "a.csv.gz").write_bytes(csv_gz(1, 300))
    (inbox / "b.csv.gz").write_bytes(csv_gz(301, 200))
    run = load(target)
    (inbox / "b.csv.gz").write_bytes(csv_gz(301, 250))
    message = "the file 'b.csv.gz' changed since the run read it"
    with pytest.raises(NodeError, match=re.escape(message)):
        source_records(run)
    again = rerun_load(run)
    assert again.status == "failed"
    assert message in again.error


@pytest.mark.worker
def test_a_file_removed_since_the_run_fails_reading_clearly(
    worker: WorkerProcess, inbox: Path, target: str
) -> None:
    (inbox / "a.csv.gz").write_bytes(csv_gz(1, 300))
    run = load(target)
    (inbox / "a.csv.gz").rename(inbox / "done.csv.gz.bak")
    with pytest.raises(
        NodeError, match=re.escape("the file 'a.csv.gz' was moved or removed since the run read it")
    ):
        source_records(run)


@pytest.mark.worker
def test_objects_in_a_bucket_are_read_again_only_in_the_version_the_run_read(
    worker: WorkerProcess, s3: Any, s3_endpoint: str, bucket: str, target: str
) -> None:
    add_connection("reread-files", s3_url(s3_endpoint, bucket))
    s3.put_object(Bucket=bucket, Key="in/a.csv.gz", Body=csv_gz(1, 300))
    s3.put_object(Bucket=bucket, Key="in/b.csv.gz", Body=csv_gz(301, 200))
    run = load(target)
    assert source_records(run) == expected(500)
    assert rerun_load(run).status == "succeeded"
    # Other contents under the same name: another ETag.
    s3.put_object(Bucket=bucket, Key="in/a.csv.gz", Body=csv_gz(2, 300))
    message = "the file 'a.csv.gz' changed since the run read it"
    with pytest.raises(NodeError, match=re.escape(message)):
        source_records(run)
    again = rerun_load(run)
    assert again.status == "failed"
    assert message in again.error
    s3.delete_object(Bucket=bucket, Key="in/a.csv.gz")
    with pytest.raises(
        NodeError, match=re.escape("the file 'a.csv.gz' was moved or removed since")
    ):
        source_records(run)
