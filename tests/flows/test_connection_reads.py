"""A node task reads a connection once per worker process while no connection changes: the
take statement reads the connections' version, and a connection read at that version is not
read again (``nodes.models.lookup_connection``). Any change is read at the next take."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flows import transitions
from flows.models import FlowRun
from nodes.models import (
    Connection,
    ConnectionsVersion,
    connections_read_at,
    lookup_connection,
    version_sql,
)
from nodes.sdk import ConnectionInfo
from tests.flows.helpers import queued_run

pytestmark = [
    pytest.mark.usefixtures("transactional_db", "example_connections"),
    pytest.mark.embedded,
]


def version_now(run: FlowRun, key: str) -> str:
    """The connections' version as a take reads it."""
    claim = transitions.take(str(run.id), key)
    assert claim.connections is not None
    return claim.connections


def test_a_connection_is_read_again_only_when_a_connection_changed(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    version = version_now(run, "orders")
    with connections_read_at(version):
        first = lookup_connection("crm")
        with CaptureQueriesContext(connection) as again:
            assert lookup_connection("crm") == first
    assert len(again) == 0

    crm = Connection.objects.get(name="crm")
    crm.set_url("https://crm.example.com/v2/")
    crm.save()
    changed = version_now(run, "paid")
    assert changed != version
    with connections_read_at(changed), CaptureQueriesContext(connection) as reread:
        assert lookup_connection("crm").url == "https://crm.example.com/v2/"
    assert len(reread) == 1

    Connection.objects.create(name="other", encrypted_url=crm.encrypted_url)  # one more
    assert version_now(run, "shape") != changed


def version_read() -> str | None:
    """The connections' version as the take statement reads it (the same expression)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {version_sql()}")
        return cursor.fetchone()[0]


def test_every_write_of_a_connection_changes_the_version(minimal_flow: dict[str, Any]) -> None:
    """Not only a save that sets ``updated_at``: ``update()`` (as the role check does), key
    rotation saved with ``update_fields``, a host clock behind, a delete."""
    run = queued_run(minimal_flow)
    seen = {version_now(run, "orders")}
    assert seen == {version_read()}

    def changed() -> str:
        version = version_read()
        assert version is not None and version not in seen
        seen.add(version)
        return version

    crm = Connection.objects.get(name="crm")
    stamp = crm.updated_at
    with connections_read_at(version_read()):
        assert lookup_connection("crm").url == crm.secret_url()
    # A password changed through update() (updated_at left alone): read again.
    moved = Connection(name="crm", encrypted_url=crm.encrypted_url)
    moved.set_url("https://crm.example.com/rotated/")
    Connection.objects.filter(pk=crm.pk).update(encrypted_url=moved.encrypted_url)
    assert Connection.objects.get(pk=crm.pk).updated_at == stamp
    with connections_read_at(changed()):
        assert lookup_connection("crm").url == "https://crm.example.com/rotated/"

    crm.refresh_from_db()
    crm.rotate_keys()
    crm.save(update_fields=["encrypted_url", "encrypted_headers"])  # no updated_at
    changed()
    Connection.objects.filter(pk=crm.pk).update(role_check={"checked": True})
    changed()
    # A host clock behind: updated_at goes back, the version still moves on.
    Connection.objects.filter(pk=crm.pk).update(updated_at=stamp - timedelta(days=1))
    changed()
    crm.refresh_from_db()
    crm.description = "saved"
    crm.save()
    changed()
    Connection.objects.bulk_update([crm], ["description"])
    changed()
    Connection.objects.get(name="crm").delete()
    changed()
    Connection.objects.filter(name="nothing").delete()  # (deletes none: a version all the same)
    changed()
    assert version_now(run, "paid") == version_read()


def test_a_version_row_made_again_never_repeats_a_version() -> None:
    before = version_read()
    ConnectionsVersion.objects.all().delete()
    assert version_read() is None  # read every time meanwhile
    Connection.objects.get(name="crm").save()
    again = version_read()
    assert again is not None and again != before
    assert ConnectionsVersion.objects.count() == 1


def test_a_kept_connection_cannot_be_changed_by_a_node(minimal_flow: dict[str, Any]) -> None:
    """The instance kept is shared by the process's runs: its headers are read-only."""
    crm = Connection.objects.get(name="crm")
    crm.set_headers({"X-Api-Key": "k-1"})
    crm.save()
    version = version_now(queued_run(minimal_flow), "orders")
    with connections_read_at(version):
        kept = lookup_connection("crm")
        with pytest.raises(TypeError):
            kept.headers["X-Api-Key"] = "changed"  # type: ignore[index]
        with pytest.raises(AttributeError):
            kept.headers.update({"X-Other": "1"})  # type: ignore[attr-defined]
        assert lookup_connection("crm").headers == {"X-Api-Key": "k-1"}
    given = {"X-Api-Key": "k-2"}
    info = ConnectionInfo("api", "https://api.example/", given)
    given["X-Api-Key"] = "changed"  # (a copy was taken)
    assert info.headers == {"X-Api-Key": "k-2"}
    assert {**info.headers} == {"X-Api-Key": "k-2"}


def test_without_a_version_every_lookup_reads() -> None:
    lookup_connection("crm")
    with CaptureQueriesContext(connection) as reads:
        lookup_connection("crm")
    assert len(reads) == 1
