"""A node task reads a connection once per worker process while no connection changes: the
take statement reads the connections' version, and a connection read at that version is not
read again (``nodes.models.lookup_connection``). Any change is read at the next take."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flows import transitions
from flows.models import FlowRun
from nodes.models import Connection, connections_read_at, lookup_connection
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


def test_without_a_version_every_lookup_reads() -> None:
    lookup_connection("crm")
    with CaptureQueriesContext(connection) as reads:
        lookup_connection("crm")
    assert len(reads) == 1
