"""The file store's listing with sizes and stamps, moving a file and tagging an S3 object —
only the version that was seen — on a local directory and on S3 (moto in server mode)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings

from nodes.filestore import FileStore, open_store
from nodes.sdk import NodeError


@pytest.fixture
def root() -> Path:
    path = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / uuid.uuid4().hex[:10]
    (path / "orders").mkdir(parents=True)
    return path


def s3_store(endpoint: str, bucket: str) -> FileStore:
    return open_store(f"s3://testing:testing@{bucket}/in?endpoint={quote(endpoint, safe='')}")


def refused(call: Any) -> str:
    with pytest.raises(NodeError) as caught:
        call()
    assert caught.value.permanent
    return str(caught.value)


# --- a local directory ----------------------------------------------------------------------
def test_entries_give_each_files_size_and_modification_time(root: Path) -> None:
    (root / "orders/b.csv").write_text("id\n1\n2\n")
    (root / "orders/a.csv").write_text("id\n1\n")
    (root / "orders/.c.csv").write_text("being written")
    store = open_store(f"file://{root}")

    found = store.entries("orders/*.csv")

    assert [(f.key, f.size) for f in found] == [("orders/a.csv", 5), ("orders/b.csv", 7)]
    assert found[0].stamp == str((root / "orders/a.csv").stat().st_mtime_ns)
    assert [f.key for f in store.entries("orders/*.csv", limit=1)] == ["orders/a.csv"]


def test_a_file_is_moved_into_a_new_folder(root: Path) -> None:
    (root / "orders/a.csv").write_text("id\n1\n")
    store = open_store(f"file://{root}")
    seen = store.entries("orders/*.csv")[0]

    store.move("orders/a.csv", "done/2026/a.csv", seen.stamp)

    assert (root / "done/2026/a.csv").read_text() == "id\n1\n"
    assert not (root / "orders/a.csv").exists()


def test_a_file_changed_since_it_was_seen_is_not_moved(root: Path) -> None:
    (root / "orders/a.csv").write_text("id\n1\n")
    store = open_store(f"file://{root}")
    seen = store.entries("orders/*.csv")[0]
    (root / "orders/a.csv").write_text("id\n1\n2\n")
    os.utime(root / "orders/a.csv", ns=(1, int(seen.stamp) + 1_000_000))

    message = refused(lambda: store.move("orders/a.csv", "done/a.csv", seen.stamp))

    assert message == "file 'orders/a.csv' was changed since it was seen"
    assert (root / "orders/a.csv").exists() and not (root / "done").exists()


def test_a_move_may_not_leave_the_connections_directory(root: Path) -> None:
    (root / "orders/a.csv").write_text("id\n")
    store = open_store(f"file://{root}")

    assert "may not contain '..'" in refused(lambda: store.move("orders/a.csv", "../a.csv"))
    assert "does not exist" in refused(lambda: store.move("orders/gone.csv", "done/gone.csv"))
    assert (root / "orders/a.csv").exists()


def test_a_directory_has_no_tags(root: Path) -> None:
    (root / "orders/a.csv").write_text("id\n")

    message = refused(lambda: open_store(f"file://{root}").tag("orders/a.csv", {"k": "v"}))

    assert message == "tags exist only on S3 connections (move the file instead)"


# --- S3 -------------------------------------------------------------------------------------
def test_s3_entries_give_sizes_and_etags(s3: Any, s3_endpoint: str, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="in/orders/a.csv", Body=b"id\n1\n")
    s3.put_object(Bucket=bucket, Key="out/orders/b.csv", Body=b"id\n")

    found = s3_store(s3_endpoint, bucket).entries("orders/*.csv")

    assert [(f.key, f.size, f.stamp) for f in found] == [
        ("orders/a.csv", 5, put["ETag"].strip('"'))
    ]


def test_an_s3_object_is_moved_copy_then_delete(s3: Any, s3_endpoint: str, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="in/orders/a.csv", Body=b"id\n1\n")
    store = s3_store(s3_endpoint, bucket)
    seen = store.entries("orders/*.csv")[0]

    store.move("orders/a.csv", "done/a.csv", seen.stamp)

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["in/done/a.csv"]
    assert s3.get_object(Bucket=bucket, Key="in/done/a.csv")["Body"].read() == b"id\n1\n"


def test_an_s3_object_rewritten_since_it_was_seen_is_neither_moved_nor_tagged(
    s3: Any, s3_endpoint: str, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="in/orders/a.csv", Body=b"id\n1\n")
    store = s3_store(s3_endpoint, bucket)
    seen = store.entries("orders/*.csv")[0]
    s3.put_object(Bucket=bucket, Key="in/orders/a.csv", Body=b"id\n1\n2\n")

    moved = refused(lambda: store.move("orders/a.csv", "done/a.csv", seen.stamp))
    tagged = refused(lambda: store.tag("orders/a.csv", {"k": "v"}, seen.stamp))

    assert moved == tagged == "file 'orders/a.csv' was changed since it was seen"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["in/orders/a.csv"]
    assert s3.get_object_tagging(Bucket=bucket, Key="in/orders/a.csv")["TagSet"] == []


def test_tags_are_added_to_an_objects_own(s3: Any, s3_endpoint: str, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=b"id\n", Tagging="owner=partner")
    store = s3_store(s3_endpoint, bucket)

    store.tag("a.csv", {"flowplatform": "done"}, store.entries("a.csv")[0].stamp)

    tags = s3.get_object_tagging(Bucket=bucket, Key="in/a.csv")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"owner": "partner", "flowplatform": "done"}
    assert "does not exist" in refused(lambda: store.tag("gone.csv", {"k": "v"}))
