"""Listing the files of a file connection, with what identifies a version of each file.

- ``file:///abs/dir``: a directory inside one of ``FLOWPLATFORM_FILE_ROOTS`` (resolved, so a
  symlink or ``..`` cannot lead outside); a file's stamp is its modification time (ns);
- ``s3://ACCESS_KEY:SECRET_KEY@bucket/prefix?endpoint=http://host:9000&region=us-east-1``: a
  bucket prefix; a file's stamp is its ETag. The endpoint passes the outbound address policy.

The URL forms are those of the file connections the file nodes use; ``list_files`` is the one
thing file triggers need of them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings

from nodes import netguard
from nodes.filestore import glob_regex
from nodes.sdk.errors import NodeError

#: Most files one listing returns (the rest are seen on the next poll).
MAX_FILES = 10_000


class ListingError(Exception):
    """The connection cannot be listed (the message names why, never a secret)."""


@dataclass(frozen=True)
class FileEntry:
    """One file: its key relative to the connection (``/``-separated), size and stamp."""

    name: str
    size: int
    stamp: str


def _prefix(pattern: str) -> str:
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head.rpartition("/")[0] + "/" if "/" in head else ""


def list_files(url: str, pattern: str) -> list[FileEntry]:
    """The files of connection ``url`` matching ``pattern``, sorted by name (names starting
    with ``.`` skipped). Raises ListingError."""
    scheme = url.partition(":")[0].lower()
    if scheme == "file":
        return _local(url, pattern)
    if scheme == "s3":
        return _s3(url, pattern)
    raise ListingError(f"not a file connection (scheme '{scheme}'; use file or s3)")


# --- local directories --------------------------------------------------------------------------
def _roots() -> list[Path]:
    return [Path(d).resolve() for d in getattr(settings, "FLOWPLATFORM_FILE_ROOTS", []) if d]


def _inside_roots(path: Path) -> bool:
    return any(path == root or path.is_relative_to(root) for root in _roots())


def local_directory(url: str) -> Path:
    parts = urlsplit(url)
    raw = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not raw.startswith("/") or "\x00" in raw:
        raise ListingError("file URLs name an absolute local directory: file:///data/inbox")
    path = Path(raw).resolve()
    if not _inside_roots(path):
        raise ListingError("the directory is outside FLOWPLATFORM_FILE_ROOTS")
    return path


def _local(url: str, pattern: str) -> list[FileEntry]:
    root = local_directory(url)
    regex = glob_regex(pattern)
    start = (root / _prefix(pattern)).resolve()
    if not start.is_relative_to(root):
        raise ListingError("the path leads outside the connection's directory")
    found: list[FileEntry] = []
    for directory, dirs, files in os.walk(start):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(directory) / name
            key = path.relative_to(root).as_posix()
            if name.startswith(".") or not regex.match(key):
                continue
            if not _inside_roots(path.resolve()):
                continue  # a symlink out of the roots is never listed
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # gone since the walk saw it
            found.append(FileEntry(key, stat.st_size, str(stat.st_mtime_ns)))
            if len(found) >= MAX_FILES:
                return sorted(found, key=lambda e: e.name)
    return sorted(found, key=lambda e: e.name)


# --- S3 -----------------------------------------------------------------------------------------
def s3_parts(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    bucket = parts.hostname or ""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ListingError("s3 URLs name a bucket: s3://bucket/prefix")
    options = dict(parse_qsl(parts.query))
    endpoint = options.get("endpoint") or None
    region = options.get("region") or "us-east-1"
    return {
        "bucket": bucket,
        "prefix": parts.path.strip("/"),
        "access_key": unquote(parts.username) if parts.username else None,
        "secret_key": unquote(parts.password) if parts.password else None,
        "endpoint": endpoint,
        "region": region,
    }


def _s3(url: str, pattern: str) -> list[FileEntry]:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    parts = s3_parts(url)
    endpoint = parts["endpoint"] or f"https://s3.{parts['region']}.amazonaws.com"
    try:
        netguard.check_url(endpoint, settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE)
    except NodeError as exc:
        raise ListingError(f"s3 endpoint refused: {exc}") from None
    signed = parts["access_key"] is not None
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=parts["endpoint"],
        region_name=parts["region"],
        aws_access_key_id=parts["access_key"],
        aws_secret_access_key=parts["secret_key"],
        config=Config(
            signature_version=None if signed else UNSIGNED,
            s3={"addressing_style": "path"} if parts["endpoint"] else {},
        ),
    )
    prefix = parts["prefix"] + "/" if parts["prefix"] else ""
    regex = glob_regex(pattern)
    found: list[FileEntry] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=parts["bucket"], Prefix=prefix + _prefix(pattern)
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(prefix) :]
                if key.rpartition("/")[2].startswith(".") or not regex.match(key):
                    continue
                found.append(FileEntry(key, int(item["Size"]), item["ETag"].strip('"')))
                if len(found) >= MAX_FILES:
                    return sorted(found, key=lambda e: e.name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ListingError(f"s3 listing of bucket '{parts['bucket']}' failed: {code}") from None
    except BotoCoreError as exc:
        raise ListingError(f"s3 listing failed: {type(exc).__name__}") from None
    return sorted(found, key=lambda e: e.name)
