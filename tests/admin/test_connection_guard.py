"""Connections through the admin, the API and the command line pass the database guard when
saved; Test connection needs the right to change connections; the role check shows on the
connection's page."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from nodes.models import Connection
from tests.admin.conftest import staff_user
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = pytest.mark.django_db

REDIRECTED = f"{SOURCE_DB_URL}?hostaddr=169.254.169.254"
MESSAGE = "connection URL parameter 'hostaddr' is not allowed"


def logged_in(username: str, *codenames: str) -> Client:
    client = Client()
    client.force_login(staff_user(username, *codenames))
    return client


def test_the_admin_refuses_a_redirecting_url_naming_the_parameter(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:nodes_connection_add"), {"name": "dw", "url": REDIRECTED}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"] == [
        MESSAGE + ": it connects to another address than the host shown"
    ]
    assert not Connection.objects.exists()


def test_the_admin_refuses_a_metadata_database_host(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:nodes_connection_add"),
        {"name": "dw", "url": "postgresql://u:pw@169.254.169.254:80/db"},
    )
    [error] = response.context["adminform"].form.errors["url"]
    assert "resolves to 169.254.169.254, a link-local or metadata address" in error
    assert not Connection.objects.exists()


def test_the_api_refuses_a_redirecting_url_with_a_400_on_url(admin_user: Any) -> None:
    client = APIClient()
    client.force_authenticate(admin_user)
    response = client.post("/api/v1/connections/", {"name": "dw", "url": REDIRECTED}, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["path"] == "url" and MESSAGE in error["message"]
    assert not Connection.objects.exists()


def test_addconnection_refuses_a_sqlite_file_outside_the_allowed_directories() -> None:
    with pytest.raises(CommandError, match="SQLite files are allowed only inside"):
        call_command("addconnection", "files", "sqlite:////etc/passwd")
    with pytest.raises(CommandError, match=MESSAGE):
        call_command("addconnection", "dw", REDIRECTED)
    assert not Connection.objects.exists()


def test_view_only_users_cannot_test_a_connection() -> None:
    connection = add_connection("warehouse", SOURCE_DB_URL)
    viewer = logged_in("viewer", "view_connection")
    page = viewer.get(reverse("admin:nodes_connection_change", args=[connection.pk]))
    test_url = reverse("admin:nodes_connection_test", args=[connection.pk])
    assert page.status_code == 200 and test_url not in page.content.decode()  # no button
    assert viewer.post(test_url).status_code == 403
    listing = viewer.get(reverse("admin:nodes_connection_changelist"))
    assert b"test_selected" not in listing.content
    action = viewer.post(
        reverse("admin:nodes_connection_changelist"),
        {"action": "test_selected", "_selected_action": [connection.pk]},
    )
    assert action.status_code in (200, 302)
    connection.refresh_from_db()
    assert connection.role_check == {}  # nothing was run


def test_users_who_may_change_connections_test_them_and_see_the_role_check() -> None:
    connection = add_connection("warehouse", SOURCE_DB_URL)
    editor = logged_in("editor", "view_connection", "change_connection")
    change_url = reverse("admin:nodes_connection_change", args=[connection.pk])
    assert b"not checked yet" in editor.get(change_url).content
    response = editor.post(
        reverse("admin:nodes_connection_test", args=[connection.pk]), follow=True
    )
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("warehouse: OK")
    html = response.content.decode()
    assert reverse("admin:nodes_connection_test", args=[connection.pk]) in html
    assert "role &#x27;postgres&#x27; is a superuser" in html
