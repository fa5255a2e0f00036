"""File connections: a directory on the worker or an S3-compatible bucket, behind one interface.

- ``file:///abs/dir`` — a directory inside one of ``FLOWPLATFORM_FILE_ROOTS``. Symlinks and
  ``..`` are resolved before the check, when the connection is saved and again for every file
  listed, read or written: a link that leads outside the roots is refused.
- ``s3://ACCESS_KEY:SECRET_KEY@bucket/prefix?endpoint=http://minio:9000&region=us-east-1`` —
  a bucket (AWS S3, MinIO, any S3-compatible server). Credentials are URL-encoded in the URL
  (encrypted at rest like every connection URL); without them requests go unsigned, so a
  worker's own AWS credentials are never used for a connection. The endpoint host passes the
  outbound address policy (:mod:`nodes.netguard`) when the store is opened.

A :class:`FileStore` lists keys (paths relative to the connection, ``/``-separated) matching
a glob — with each file's size and stamp when asked (:meth:`FileStore.entries`), opens one for
reading, and writes one atomically: readers see the old file or the new one whole, never a part
(a temporary name then a rename; on S3 a put or a multipart upload, visible only once
complete). It also moves a file, and tags one on S3 — only the version that was seen, when its
stamp is given.

A file's *stamp* tells its versions apart: the modification time in nanoseconds on a
directory, the ETag on S3. A *pin* (:meth:`FileStore.open_pinned`) is the size and stamp of
the version a reader opened: opened again with its pin, a file is read only if it is still
that version (decision 0044).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings

from nodes import netguard
from nodes.sdk.errors import NodeError
from nodes.urls import ConnectionURLError

FILE_SCHEMES = ("file", "s3")
S3_OPTIONS = frozenset({"endpoint", "region"})
#: Upload chunk for S3 (multipart above it).
S3_PART_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class FileInfo:
    """One file: its key, size in bytes and stamp (what tells its versions apart)."""

    key: str
    size: int
    stamp: str


@dataclass(frozen=True)
class Pinned:
    """A file opened for reading and the pin of the version opened (``size:stamp``)."""

    stream: IO[bytes]
    pin: str


def changed(key: str, gone: bool = False) -> NodeError:
    """The permanent error of a file read again that is no longer the version a run read."""
    what = "was moved or removed" if gone else "changed"
    return NodeError(
        f"the file '{key}' {what} since the run read it: its records cannot be read again",
        permanent=True,
    )


#: Files with their sizes and stamps, by key (``list`` would name the stores' own method).
Listing = list[FileInfo]


class FileStore(Protocol):
    """Where a file connection's files live."""

    def list(self, pattern: str) -> list[str]:
        """The keys matching the glob ``pattern``, sorted (names starting with ``.`` skipped)."""
        ...

    def entries(self, pattern: str, limit: int | None = None) -> Listing:
        """As :meth:`list`, with each file's size and stamp; at most ``limit`` files (the
        first found), sorted by key."""
        ...

    def move(self, key: str, target: str, stamp: str | None = None) -> None:
        """Move ``key`` to ``target`` (replacing it). With ``stamp``: only that version of the
        file; a permanent NodeError when it was changed or removed since."""
        ...

    def tag(self, key: str, tags: Mapping[str, str], stamp: str | None = None) -> None:
        """Add ``tags`` to the file's tags (S3 only; a permanent NodeError elsewhere). With
        ``stamp``: only that version, as :meth:`move`."""
        ...

    def open_read(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A binary stream of one file; a permanent NodeError when it is missing or refused."""
        ...

    def open_pinned(
        self, key: str, pin: str | None = None
    ) -> contextlib.AbstractContextManager[Pinned]:
        """As :meth:`open_read`, with the pin of the version opened; given ``pin``, only that
        version is opened: a permanent NodeError (:func:`changed`) when the file was changed,
        moved or removed since."""
        ...

    def open_write(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A binary file to fill; it replaces ``key`` whole when the block ends without an
        exception, and leaves nothing behind otherwise."""
        ...

    def probe(self) -> str:
        """One cheap look at the store (Test connection); a NodeError when it fails."""
        ...


# --- globs --------------------------------------------------------------------------------------
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over ``/``-separated keys: ``*`` and ``?`` stay within a segment, ``**/`` spans
    any number of directories, ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def check_relative(path: str, what: str = "path") -> str:
    """``path`` if it is relative and has no ``..`` segment; ValueError otherwise."""
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"the {what} must be relative to the connection, with '/' separators")
    if any(part == ".." for part in path.split("/")):
        raise ValueError(f"the {what} may not contain '..'")
    return path


def literal_prefix(pattern: str) -> str:
    """The directories of ``pattern`` before its first wildcard (``a/b/`` for ``a/b/c*.csv``)."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head.rpartition("/")[0] + "/" if "/" in head else ""


def _visible(key: str) -> bool:
    return not key.rpartition("/")[2].startswith(".")


# --- local directories ----------------------------------------------------------------------
def file_roots() -> list[Path]:
    """The directories file connections may use (resolved)."""
    return [Path(d).resolve() for d in getattr(settings, "FLOWPLATFORM_FILE_ROOTS", []) if d]


def _inside_roots(path: Path) -> bool:
    return any(path == root or path.is_relative_to(root) for root in file_roots())


def local_directory(url: str) -> Path:
    """The directory of a ``file:///`` URL, resolved, if it lies inside an allowed root;
    ConnectionURLError otherwise."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query:
        raise ConnectionURLError("file URLs name a local directory: file:///absolute/dir")
    raw = unquote(parts.path)
    if not raw.startswith("/") or "\x00" in raw:
        raise ConnectionURLError("file URLs need an absolute directory, e.g. file:///data/inbox")
    path = Path(raw).resolve()
    if not _inside_roots(path):
        where = ", ".join(str(d) for d in file_roots()) or "none are configured"
        raise ConnectionURLError(
            f"file connections are allowed only inside FLOWPLATFORM_FILE_ROOTS ({where}); "
            "this directory is outside"
        )
    return path


class LocalStore:
    """Files under a directory on the worker."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        try:
            path = (self.root / check_relative(key)).resolve()
        except ValueError as exc:
            raise NodeError(f"'{key[:200]}': {exc}", permanent=True) from None
        if not (path.is_relative_to(self.root) and _inside_roots(path)):
            raise NodeError(f"'{key}' leads outside the connection's directory", permanent=True)
        return path

    def probe(self) -> str:
        if not self.root.is_dir():
            raise NodeError("the directory does not exist", permanent=True)
        return f"directory readable, {len(os.listdir(self.root))} entries"

    def list(self, pattern: str) -> list[str]:
        return sorted(self._keys(pattern))

    def _keys(self, pattern: str) -> Iterator[str]:
        regex = glob_regex(check_relative(pattern, "glob"))
        start = self._path(literal_prefix(pattern) or ".")
        for directory, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            base = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                key = name if base == "." else f"{base}/{name}"
                if _visible(key) and regex.match(key):
                    self._path(key)  # a symlink out of the roots is refused, not skipped
                    yield key

    def entries(self, pattern: str, limit: int | None = None) -> Listing:
        found = []
        for key in self._keys(pattern):
            try:
                stat = self._path(key).stat()
            except FileNotFoundError:
                continue  # gone since the walk saw it
            found.append(FileInfo(key, stat.st_size, str(stat.st_mtime_ns)))
            if limit is not None and len(found) >= limit:
                break
        return sorted(found, key=lambda info: info.key)

    def _check_stamp(self, key: str, path: Path, stamp: str | None) -> None:
        try:
            now = str(path.stat().st_mtime_ns)
        except FileNotFoundError:
            raise NodeError(f"file '{key}' does not exist", permanent=True) from None
        if stamp is not None and now != stamp:
            raise NodeError(f"file '{key}' was changed since it was seen", permanent=True)

    def move(self, key: str, target: str, stamp: str | None = None) -> None:
        self._check_stamp(key, self._path(key), stamp)
        self._path(target).parent.mkdir(parents=True, exist_ok=True)
        self._path(target)  # the directories just made may not lead elsewhere either
        try:
            # The names as given (checked above): a link is moved as a link.
            os.replace(self.root / key, self.root / target)
        except FileNotFoundError:
            raise NodeError(f"file '{key}' does not exist", permanent=True) from None
        except OSError as exc:  # a full disk, another file system: a retry may help
            raise NodeError(f"could not move '{key}': {exc.strerror or exc}") from None

    def tag(self, key: str, tags: Mapping[str, str], stamp: str | None = None) -> None:
        raise NodeError("tags exist only on S3 connections (move the file instead)", permanent=True)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        try:
            stream = self._path(key).open("rb")
        except FileNotFoundError:
            raise NodeError(f"file '{key}' does not exist", permanent=True) from None
        with stream:
            yield stream

    @contextlib.contextmanager
    def open_pinned(self, key: str, pin: str | None = None) -> Iterator[Pinned]:
        try:
            stream = self._path(key).open("rb")
        except FileNotFoundError:
            if pin is not None:
                raise changed(key, gone=True) from None
            raise NodeError(f"file '{key}' does not exist", permanent=True) from None
        with stream:
            # The version opened (a file replaced by a rename later is not this one).
            stat = os.fstat(stream.fileno())
            now = f"{stat.st_size}:{stat.st_mtime_ns}"
            if pin is not None and now != pin:
                raise changed(key)
            yield Pinned(stream, now)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._path(key)  # the directories just made may not lead elsewhere either
        temporary = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            with temporary.open("xb") as stream:
                yield stream
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)


# --- S3 -----------------------------------------------------------------------------------------
def s3_parts(url: str) -> dict[str, Any]:
    """Bucket, prefix, credentials, endpoint and region of an ``s3://`` URL (ConnectionURLError
    saying what is wrong, never quoting a secret)."""
    parts = urlsplit(url)
    bucket = parts.hostname or ""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ConnectionURLError("s3 URLs name a bucket: s3://bucket/prefix")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - S3_OPTIONS)
    if unknown:
        raise ConnectionURLError(f"s3 URL option '{unknown[0][:50]}' is not supported")
    endpoint = options.get("endpoint") or ""
    if endpoint and (
        urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).hostname
    ):
        raise ConnectionURLError("the s3 endpoint must be an http(s) URL with a host")
    if (parts.username is None) != (parts.password is None):
        raise ConnectionURLError("s3 URLs carry both an access key and a secret key, or neither")
    return {
        "bucket": bucket,
        "prefix": parts.path.strip("/"),
        "access_key": unquote(parts.username) if parts.username else None,
        "secret_key": unquote(parts.password) if parts.password else None,
        "endpoint": endpoint or None,
        "region": options.get("region") or "us-east-1",
    }


def s3_endpoint(parts: dict[str, Any]) -> str:
    return str(parts["endpoint"] or f"https://s3.{parts['region']}.amazonaws.com")


class S3Store:
    """Objects under a prefix of a bucket; every socket the client opens is checked against the
    address policy once connected (as :class:`nodes.netguard.GuardedSession` does)."""

    def __init__(self, parts: dict[str, Any], allow_private: bool) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self.bucket = parts["bucket"]
        self.prefix = parts["prefix"] + "/" if parts["prefix"] else ""
        signed = parts["access_key"] is not None
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=parts["endpoint"],
            region_name=parts["region"],
            aws_access_key_id=parts["access_key"],
            aws_secret_access_key=parts["secret_key"],
            config=Config(
                signature_version=None if signed else UNSIGNED,
                s3={"addressing_style": "path"} if parts["endpoint"] else {},
                retries={"max_attempts": 3, "mode": "standard"},
                proxies={},
            ),
        )
        _guard_peers(self.client, allow_private)

    def _name(self, key: str) -> str:
        """The object name of ``key`` (a permanent NodeError for an absolute or ``..`` key)."""
        try:
            return self.prefix + check_relative(key)
        except ValueError as exc:
            raise NodeError(f"'{key[:200]}': {exc}", permanent=True) from None

    def probe(self) -> str:
        with _s3_errors("list"):
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        return "bucket listed"

    def list(self, pattern: str) -> list[str]:
        return [info.key for info in self.entries(pattern)]

    def entries(self, pattern: str, limit: int | None = None) -> Listing:
        regex = glob_regex(check_relative(pattern, "glob"))
        paginator = self.client.get_paginator("list_objects_v2")
        found: Listing = []
        with _s3_errors("list"):
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=self.prefix + literal_prefix(pattern)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if _visible(key) and regex.match(key):
                        found.append(FileInfo(key, int(item["Size"]), _etag(item["ETag"])))
                        if limit is not None and len(found) >= limit:
                            return sorted(found, key=lambda info: info.key)
        return sorted(found, key=lambda info: info.key)

    def _check_stamp(self, key: str, stamp: str | None) -> None:
        with _s3_errors(f"find '{key}'", missing=f"file '{key}' does not exist"):
            head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        if stamp is not None and _etag(head["ETag"]) != stamp:
            raise NodeError(f"file '{key}' was changed since it was seen", permanent=True)

    def move(self, key: str, target: str, stamp: str | None = None) -> None:
        """A copy then a delete (S3 has no rename); with ``stamp``, the copy takes only that
        version and the delete removes only that version (a newer one stays)."""
        from botocore.exceptions import ClientError

        source = self._name(key)
        name = self._name(target)
        self._check_stamp(key, stamp)
        copy_args = {"CopySourceIfMatch": f'"{stamp}"'} if stamp is not None else {}
        with _s3_errors(f"copy '{key}'", missing=f"file '{key}' does not exist"):
            self.client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, name, ExtraArgs=copy_args
            )
        delete_args = {"IfMatch": f'"{stamp}"'} if stamp is not None else {}
        with _s3_errors(f"delete '{key}'"):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=source, **delete_args)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "PreconditionFailed":
                    return  # a newer version arrived meanwhile: it stays (and runs as new)
                if code != "NotImplemented" or not delete_args:
                    raise
                # A server without conditional deletes: the plain delete.
                self.client.delete_object(Bucket=self.bucket, Key=source)

    def tag(self, key: str, tags: Mapping[str, str], stamp: str | None = None) -> None:
        """The file's tags with ``tags`` added (S3 replaces a tag set whole, so the others are
        read first and kept; at most 10 in all)."""
        name = self._name(key)
        self._check_stamp(key, stamp)
        with _s3_errors(f"tag '{key}'", missing=f"file '{key}' does not exist"):
            current = self.client.get_object_tagging(Bucket=self.bucket, Key=name)["TagSet"]
            merged = {t["Key"]: t["Value"] for t in current} | dict(tags)
            if len(merged) > 10:
                raise NodeError(
                    f"file '{key}' would have {len(merged)} tags; S3 allows 10", permanent=True
                )
            tag_set = [{"Key": k, "Value": v} for k, v in merged.items()]
            self.client.put_object_tagging(
                Bucket=self.bucket, Key=name, Tagging={"TagSet": tag_set}
            )

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        with _s3_errors(f"read '{key}'"):
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        with contextlib.closing(body["Body"]) as stream:
            yield stream

    @contextlib.contextmanager
    def open_pinned(self, key: str, pin: str | None = None) -> Iterator[Pinned]:
        """With ``pin``, a conditional GET (``If-Match`` its ETag): S3 answers only that
        version, in the same request that reads it."""
        from botocore.exceptions import ClientError

        condition = {}
        if pin is not None:
            condition["IfMatch"] = f'"{pin.partition(":")[2]}"'
        with _s3_errors(f"read '{key}'"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._name(key), **condition)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if pin is not None and code in ("NoSuchKey", "404"):
                    raise changed(key, gone=True) from None
                if pin is not None and code in ("PreconditionFailed", "412"):
                    raise changed(key) from None
                raise
        now = f"{int(body['ContentLength'])}:{_etag(body['ETag'])}"
        with contextlib.closing(body["Body"]) as stream:
            if pin is not None and now != pin:  # a server that ignores If-Match
                raise changed(key)
            yield Pinned(stream, now)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        from boto3.s3.transfer import TransferConfig

        name = self._name(key)
        # Spooled to disk (flat memory), then one put or a multipart upload: the object appears
        # only once the upload completes.
        with tempfile.TemporaryFile() as spool:
            yield spool
            spool.seek(0)
            config = TransferConfig(
                multipart_threshold=S3_PART_BYTES, multipart_chunksize=S3_PART_BYTES
            )
            with _s3_errors(f"write '{key}'"):
                self.client.upload_fileobj(spool, self.bucket, name, Config=config)


def _etag(value: str) -> str:
    return value.strip('"')


@contextlib.contextmanager
def _s3_errors(action: str, missing: str = "") -> Iterator[None]:
    """Botocore's errors as NodeErrors; ``missing``: the message when the object is not there
    (a HEAD answers a bare 404)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        permanent = 400 <= status < 500 and status not in (408, 429)
        if missing and code in ("NoSuchKey", "404"):
            raise NodeError(missing, permanent=True) from None
        if code in ("PreconditionFailed", "412"):
            raise NodeError(
                f"S3 could not {action}: the file was changed since it was seen", permanent=True
            ) from None
        hint = {"NoSuchKey": "no such file", "NoSuchBucket": "no such bucket"}.get(code, code)
        raise NodeError(f"S3 could not {action}: {hint or status}", permanent=permanent) from None
    except BotoCoreError as exc:
        refused = getattr(exc, "kwargs", {}).get("error")
        if isinstance(refused, NodeError):  # the address policy, from inside botocore
            raise NodeError(refused.message, permanent=refused.permanent) from None
        raise NodeError(f"S3 could not {action}: {type(exc).__name__}", permanent=False) from None


# --- connections ------------------------------------------------------------------------------
def check_url(url: str) -> None:
    """Save-time check of a file connection URL (ConnectionURLError when refused)."""
    scheme = url.partition(":")[0].lower()
    if scheme == "file":
        local_directory(url)
    elif scheme == "s3":
        _check_endpoint_now(s3_endpoint(s3_parts(url)))


def _check_endpoint_now(endpoint: str) -> None:
    """The endpoint's addresses, when it resolves now (a host only workers resolve is checked
    when used)."""
    host = urlsplit(endpoint).hostname or ""
    with contextlib.suppress(OSError, UnicodeError):
        for address in netguard.resolve(host, urlsplit(endpoint).port or 443):
            if reason := netguard.refusal(address.partition("%")[0], _allow_private()):
                raise ConnectionURLError(f"s3 endpoint '{host}' resolves to {address}, {reason}")


def _allow_private() -> bool:
    return bool(getattr(settings, "FLOWPLATFORM_HTTP_ALLOW_PRIVATE", False))


def open_store(url: str) -> FileStore:
    """The store of a connection URL, checked now (roots, endpoint address policy); a permanent
    NodeError when refused."""
    scheme = url.partition(":")[0].lower()
    try:
        if scheme == "file":
            return LocalStore(local_directory(url))
        if scheme == "s3":
            parts = s3_parts(url)
            netguard.check_url(s3_endpoint(parts), _allow_private())
            return _s3_store(url, _allow_private())
    except ConnectionURLError as exc:
        raise NodeError(str(exc), permanent=True) from None
    raise NodeError(f"not a file connection (scheme '{scheme}'; use file or s3)", permanent=True)


@lru_cache(maxsize=32)
def _s3_store(url: str, allow_private: bool) -> S3Store:
    # One client per connection URL and process: building one costs ~50 ms.
    return S3Store(s3_parts(url), allow_private)


@cache
def _guarded_pools(allow_private: bool) -> dict[str, type]:
    """botocore's connection pools, with connections that check their peer."""
    from botocore.awsrequest import (
        AWSHTTPConnection,
        AWSHTTPConnectionPool,
        AWSHTTPSConnection,
        AWSHTTPSConnectionPool,
    )

    def guarded(base: Any) -> type:
        def _new_conn(self: Any) -> Any:
            sock = base._new_conn(self)
            netguard.check_peer(sock, self.host, allow_private)
            return sock

        return type(f"Guarded{base.__name__}", (base,), {"_new_conn": _new_conn})

    return {
        "http": type(
            "GuardedAWSHTTPConnectionPool",
            (AWSHTTPConnectionPool,),
            {"ConnectionCls": guarded(AWSHTTPConnection)},
        ),
        "https": type(
            "GuardedAWSHTTPSConnectionPool",
            (AWSHTTPSConnectionPool,),
            {"ConnectionCls": guarded(AWSHTTPSConnection)},
        ),
    }


def _guard_peers(client: Any, allow_private: bool) -> None:
    """Make the client's connections check the address they reach (defeats DNS rebinding).
    botocore keeps the pool classes on its HTTP session (pinned version: see requirements)."""
    session: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if not (hasattr(session, "_pool_classes_by_scheme") and hasattr(session, "_manager")):
        # Fail closed: a botocore whose internals moved would connect unchecked.
        raise NodeError("S3 connections are unavailable: botocore changed", permanent=True)
    pools = _guarded_pools(allow_private)
    session._pool_classes_by_scheme = pools
    session._manager.pool_classes_by_scheme = pools
