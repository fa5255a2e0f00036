"""Connection: a named, encrypted credential that nodes refer to by name."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, models, transaction
from django.db.models import F

from nodes import crypto
from nodes.sdk.context import ConnectionInfo
from nodes.urls import destination, mask_url, validate_url


class ConnectionsVersion(models.Model):
    """One row: the version of the whole set of connections (:func:`version_sql`), raised in
    the transaction of every write of a connection (:func:`connections_changed`). A counter,
    not a clock: a write that leaves ``updated_at`` alone or a host clock behind changes it
    too. A row made again (once deleted) has another ``id``, so no version comes back."""

    one = models.BooleanField(default=True, unique=True, editable=False)  # (at most one row)
    generation = models.BigIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "connections version"


def connections_changed(using: str = DEFAULT_DB_ALIAS) -> None:
    """Raise the connections' version (a connection was saved, added, changed or deleted)."""
    rows = ConnectionsVersion.objects.using(using)
    if not rows.update(generation=F("generation") + 1):
        rows.bulk_create([ConnectionsVersion()], ignore_conflicts=True)
        rows.update(generation=F("generation") + 1)


class ConnectionQuerySet(models.QuerySet["Connection"]):
    """Connections: every write through a query set raises the connections' version too."""

    def update(self, **kwargs: Any) -> int:
        with transaction.atomic(using=self.db):
            count = super().update(**kwargs)
            connections_changed(self.db)
        return count

    def delete(self) -> tuple[int, dict[str, int]]:
        with transaction.atomic(using=self.db):
            deleted = super().delete()
            connections_changed(self.db)
        return deleted

    def bulk_create(self, *args: Any, **kwargs: Any) -> list[Connection]:
        with transaction.atomic(using=self.db):
            created = super().bulk_create(*args, **kwargs)
            connections_changed(self.db)
        return created

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        with transaction.atomic(using=self.db):
            count = super().bulk_update(*args, **kwargs)
            connections_changed(self.db)
        return count


class Connection(models.Model):
    """A named connection (database or HTTP endpoint). Its URL and headers are encrypted at rest.
    Every write (``save``, ``delete``, a query set's ``update``...) raises the connections'
    version (:func:`version_sql`)."""

    name = models.SlugField(
        "name", max_length=100, unique=True, help_text="Referred to by nodes' `connection` config."
    )
    scheme = models.CharField("scheme", max_length=20, editable=False)
    display_url = models.CharField(
        "URL (masked)",
        max_length=2000,
        editable=False,
        help_text="The URL with its password masked.",
    )
    encrypted_url = models.TextField("encrypted URL", editable=False)
    encrypted_headers = models.TextField(
        "encrypted headers", blank=True, default="", editable=False
    )
    description = models.TextField("description", blank=True, default="")
    role_check = models.JSONField(
        "role check",
        default=dict,
        blank=True,
        editable=False,
        help_text="What the last role check found (manage.py checkconnections, Test connection).",
    )
    allowed_groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="usable_connections",
        verbose_name="allowed groups",
        help_text="Only members of these groups may use the connection in flows (empty: everyone).",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "connection"
        permissions = [("use_connection", "Can use every connection in flows")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        using = kwargs.get("using") or self._state.db or DEFAULT_DB_ALIAS
        with transaction.atomic(using=using):
            super().save(*args, **kwargs)
            connections_changed(using)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        using = kwargs.get("using") or self._state.db or DEFAULT_DB_ALIAS
        with transaction.atomic(using=using):
            deleted = super().delete(*args, **kwargs)
            connections_changed(using)
        return deleted

    def set_url(self, url: str) -> bool:
        """Validate and store ``url`` encrypted; keep a masked copy for display.

        Stored headers are meant for the stored destination: when ``url`` goes to another
        scheme, host or port they are removed (give new ones with ``set_headers`` after this
        call). Returns whether headers were removed.
        """
        url = validate_url(url)
        moved = bool(self.encrypted_url) and destination(self.secret_url()) != destination(url)
        dropped = moved and bool(self.encrypted_headers)
        if moved:
            self.set_headers({})
        self.scheme = url.split(":", 1)[0].lower()
        self.display_url = mask_url(url)
        self.encrypted_url = crypto.encrypt(url)
        return dropped

    def set_headers(self, headers: dict[str, str]) -> None:
        self.encrypted_headers = crypto.encrypt(json.dumps(headers)) if headers else ""

    @property
    def header_names(self) -> list[str]:
        return sorted(self.secret_headers())

    def secret_url(self) -> str:
        return crypto.decrypt(self.encrypted_url)

    def secret_headers(self) -> dict[str, str]:
        return _headers(self.encrypted_headers)

    def info(self) -> ConnectionInfo:
        """What a node sees: the decrypted URL and headers."""
        return connection_info(self.name, self.encrypted_url, self.encrypted_headers)

    def rotate_keys(self) -> None:
        self.encrypted_url = crypto.rotate(self.encrypted_url)
        if self.encrypted_headers:
            self.encrypted_headers = crypto.rotate(self.encrypted_headers)


def _headers(encrypted_headers: str) -> dict[str, str]:
    return json.loads(crypto.decrypt(encrypted_headers)) if encrypted_headers else {}


def connection_info(name: str, encrypted_url: str, encrypted_headers: str) -> ConnectionInfo:
    """A connection as a node sees it, from its stored (encrypted) columns."""
    return ConnectionInfo(name, crypto.decrypt(encrypted_url), _headers(encrypted_headers))


#: The most connections a process keeps as read (then it forgets them all and reads again).
KEPT_MAX = 256
#: Connections this process has read, by name: (the connections' version when read, the
#: connection as a node sees it). Held in memory only, like any connection a node uses.
_kept: dict[str, tuple[str, ConnectionInfo]] = {}
#: The connections' version (:func:`version_sql`) just read by the caller, while
#: :func:`connections_read_at` says so.
_version: ContextVar[str | None] = ContextVar("connections_version", default=None)

_VERSION = "(SELECT CAST({id} AS TEXT) || '/' || CAST({generation} AS TEXT) FROM {table})"


def version_sql() -> str:
    """A SQL expression (both PostgreSQL and SQLite) of the version of the whole set of
    connections (:class:`ConnectionsVersion`), raised by every write of a connection, so that
    saving, adding, changing or removing any connection changes it (``NULL`` while no row
    holds it: read every time). The engine reads it with the statement that takes a node (no
    round trip of its own)."""
    quote, meta = connection.ops.quote_name, ConnectionsVersion._meta
    return _VERSION.format(
        id=quote(meta.get_field("id").column),
        generation=quote(meta.get_field("generation").column),
        table=quote(meta.db_table),
    )


@contextlib.contextmanager
def connections_read_at(version: str | None) -> Iterator[None]:
    """Meanwhile, :func:`lookup_connection` reads a connection only when this process has not
    read it at ``version``, the connections' version (:func:`version_sql`) read a moment ago by
    the caller (a node task, as it takes its node). Any change of a connection changes the
    version, so a changed connection is always read again. ``None``: read every time."""
    token = _version.set(version)
    try:
        yield
    finally:
        _version.reset(token)


def lookup_connection(name: str) -> ConnectionInfo:
    """The default ``ExecutionContext.connection_lookup``: read the named Connection (not
    again within :func:`connections_read_at` when this process has read it at that version)."""
    from nodes.sdk.errors import NodeError

    version = _version.get()
    if version is not None:
        kept = _kept.get(name)
        if kept is not None and kept[0] == version:
            return kept[1]
    stored = (
        Connection.objects.filter(name=name)
        .values_list("encrypted_url", "encrypted_headers")
        .first()
    )
    if stored is None:
        raise NodeError(f"connection '{name}' does not exist", permanent=True)
    info = connection_info(name, *stored)
    if version is not None:
        if len(_kept) >= KEPT_MAX:
            _kept.clear()
        _kept[name] = (version, info)
    return info
