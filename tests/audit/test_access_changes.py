"""Changes of who may do what leave entries: flow grants (API and admin) and connection groups."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from flowplatform.audit.models import AuditEntry
from flows.models import Flow, FlowAccess
from nodes.models import Connection
from tests.admin.forms import page_post_data
from tests.audit.conftest import SECRET_HEADER, SECRET_PASSWORD, SECRET_URL

pytestmark = pytest.mark.django_db
GRANTS, CONNECTION = "flows.flowaccess", "nodes.connection"


def crm(*groups: Group) -> Connection:
    connection = Connection(name="crm")
    connection.set_url(SECRET_URL)
    connection.set_headers({"Authorization": SECRET_HEADER})
    connection.save()
    connection.allowed_groups.set(groups)
    return connection


def new_entries(after: int, **filters: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(pk__gt=after, **filters).order_by("id"))


def mark() -> int:
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_a_grants_put_records_one_entry_with_the_new_list(
    api: APIClient, root: User, paid_orders: Flow
) -> None:
    alice = User.objects.create_user("alice")
    Group.objects.create(name="sales-ops")
    FlowAccess.objects.create(flow=paid_orders, user=alice, can_view=True)
    before = mark()
    body = [
        {"group": "sales-ops", "view": True, "change": True, "run": True},
        {"user": "alice", "view": True, "change": False, "run": False},
    ]
    url = f"/api/v1/flows/{paid_orders.slug}/access/"
    assert api.put(url, body, format="json").status_code == 200
    [entry] = new_entries(before)
    assert (entry.action, entry.object_type, entry.object_id) == (
        "change",
        GRANTS,
        str(paid_orders.pk),
    )
    assert (entry.actor, entry.source, entry.remote_addr) == (root, "api", "10.4.5.6")
    assert entry.details["grants"] == [
        {"user": None, "group": "sales-ops", "view": True, "change": True, "run": True},
        {"user": "alice", "group": None, "view": True, "change": False, "run": False},
    ]
    # Removing every grant is recorded too.
    assert api.put(url, [], format="json").status_code == 200
    [cleared] = new_entries(before + 1, object_type=GRANTS)
    assert cleared.details["grants"] == []


def test_admin_grant_inline_changes_are_recorded(
    admin_web: Client, root: User, paid_orders: Flow
) -> None:
    bob = User.objects.create_user("bob")
    url = reverse("admin:flows_flow_change", args=[paid_orders.pk])
    data = page_post_data(admin_web.get(url))
    data.update(
        {
            "access_grants-TOTAL_FORMS": "1",
            "access_grants-0-user": str(bob.pk),
            "access_grants-0-can_view": "on",
            "access_grants-0-can_run": "on",
        }
    )
    before = mark()
    response = admin_web.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    [entry] = new_entries(before, object_type=GRANTS)
    assert (entry.action, entry.object_id, entry.source) == ("create", str(paid_orders.pk), "admin")
    assert entry.actor == root
    assert "user bob: view, run" in entry.object_repr
    grant = FlowAccess.objects.get(flow=paid_orders, user=bob)

    data = page_post_data(admin_web.get(url))
    data["access_grants-0-DELETE"] = "on"
    before = mark()
    assert admin_web.post(url, data).status_code == 302
    [removed] = new_entries(before, object_type=GRANTS)
    assert (removed.action, removed.object_id) == ("delete", str(paid_orders.pk))
    assert not FlowAccess.objects.filter(pk=grant.pk).exists()


def test_widening_a_connection_through_the_api_is_recorded_without_secrets(
    api: APIClient, root: User
) -> None:
    connection = crm(Group.objects.create(name="dw-readers"))
    before = mark()
    response = api.patch("/api/v1/connections/crm/", {"allowed_groups": []}, format="json")
    assert response.status_code == 200
    entries = new_entries(before, object_type=CONNECTION)
    assert len(entries) == 1
    [entry] = entries
    assert (entry.action, entry.object_id, entry.actor) == ("change", str(connection.pk), root)
    assert entry.details["fields"] == ["allowed_groups"]
    assert entry.details["allowed_groups"] == []
    assert entry.details["removed"] == ["dw-readers"]
    text = str(entry.details) + entry.object_repr
    assert SECRET_PASSWORD[:8] not in text and SECRET_HEADER[7:15] not in text


def test_connection_groups_changed_in_the_admin_are_recorded(admin_web: Client) -> None:
    readers = Group.objects.create(name="dw-readers")
    writers = Group.objects.create(name="dw-writers")
    connection = crm(readers)
    url = reverse("admin:nodes_connection_change", args=[connection.pk])
    before = mark()
    body = {"name": "crm", "description": "", "url": "", "headers": ""}
    body["allowed_groups"] = [str(readers.pk), str(writers.pk)]
    assert admin_web.post(url, body).status_code == 302
    [entry] = new_entries(before, object_type=CONNECTION)
    assert (entry.action, entry.source) == ("change", "admin")
    assert entry.details["allowed_groups"] == ["dw-readers", "dw-writers"]
    assert entry.details["added"] == ["dw-writers"]


def test_connection_groups_changed_from_the_group_side_are_recorded(db: None) -> None:
    connection = crm()
    readers = Group.objects.create(name="dw-readers")
    before = mark()
    readers.usable_connections.add(connection)
    [entry] = new_entries(before, object_type=CONNECTION)
    assert entry.object_id == str(connection.pk)
    assert entry.details["allowed_groups"] == ["dw-readers"]
