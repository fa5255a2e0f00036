"""Connections with write-only secrets and a "Test connection" action; the node catalog page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from pytest_httpserver import HTTPServer

from nodes.models import Connection
from nodes.registry import registry
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = pytest.mark.django_db

SECRET_URL = "postgresql://reader:s3cret-pw@127.0.0.1:1/warehouse"


def shown(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_a_connection_is_created_with_its_secrets_encrypted(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:nodes_connection_add"),
        {"name": "crm", "description": "", "url": "https://crm.example/api?key=k3y-value",
         "headers": "Authorization: Bearer t0ken-value\nX-Tenant=acme"},
    )  # fmt: skip
    assert response.status_code == 302
    connection = Connection.objects.get(name="crm")
    assert connection.secret_url() == "https://crm.example/api?key=k3y-value"
    assert connection.secret_headers() == {
        "Authorization": "Bearer t0ken-value",
        "X-Tenant": "acme",
    }
    assert connection.display_url == "https://crm.example/api?key=***"


def test_secrets_are_never_shown_back(admin_client: Client) -> None:
    connection = add_connection("warehouse", SECRET_URL, {"Authorization": "Bearer t0ken-value"})
    for url in (
        reverse("admin:nodes_connection_change", args=[connection.pk]),
        reverse("admin:nodes_connection_changelist"),
    ):
        html = admin_client.get(url).content.decode()
        assert "s3cret-pw" not in html and "t0ken-value" not in html
        assert "postgresql://reader:***@127.0.0.1:1/warehouse" in html
        assert "Authorization" in html


def test_leaving_the_secrets_blank_keeps_them(admin_client: Client) -> None:
    connection = add_connection("warehouse", SECRET_URL, {"Authorization": "Bearer t0ken-value"})
    response = admin_client.post(
        reverse("admin:nodes_connection_change", args=[connection.pk]),
        {"name": "warehouse", "description": "the DW", "url": "", "headers": ""},
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.description == "the DW"
    assert connection.secret_url() == SECRET_URL
    assert connection.secret_headers() == {"Authorization": "Bearer t0ken-value"}


def test_headers_can_be_removed(admin_client: Client) -> None:
    connection = add_connection("crm", "https://crm.example", {"Authorization": "Bearer x"})
    admin_client.post(
        reverse("admin:nodes_connection_change", args=[connection.pk]),
        {"name": "crm", "description": "", "url": "", "headers": "", "clear_headers": "on"},
    )
    connection.refresh_from_db()
    assert connection.secret_headers() == {}


def test_a_new_connection_needs_a_valid_url(admin_client: Client) -> None:
    url = reverse("admin:nodes_connection_add")
    missing = admin_client.post(url, {"name": "x", "url": ""})
    assert missing.context["adminform"].form.errors["url"] == ["a new connection needs a URL"]
    bad = admin_client.post(url, {"name": "x", "url": "ftp://host/file"})
    assert bad.context["adminform"].form.errors["url"][0].startswith("unsupported scheme 'ftp'")
    assert not Connection.objects.exists()


def test_testing_a_reachable_database(admin_client: Client) -> None:
    connection = add_connection("warehouse", SOURCE_DB_URL)
    response = admin_client.post(
        reverse("admin:nodes_connection_test", args=[connection.pk]), follow=True
    )
    [message] = shown(response)
    assert message.startswith("warehouse: OK — connected, select 1 answered in ")


def test_testing_an_unreachable_database_never_shows_the_password(admin_client: Client) -> None:
    connection = add_connection("warehouse", SECRET_URL)
    response = admin_client.post(
        reverse("admin:nodes_connection_test", args=[connection.pk]), follow=True
    )
    [message] = shown(response)
    assert message.startswith("warehouse: failed — database unavailable:")
    assert "s3cret-pw" not in message


def test_testing_an_http_endpoint_sends_its_headers(
    admin_client: Client, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api", method="HEAD", headers={"X-Key": "abc123"}).respond_with_data(
        ""
    )
    connection = add_connection("crm", httpserver.url_for("/api"), {"X-Key": "abc123"})
    response = admin_client.post(
        reverse("admin:nodes_connection_changelist"),
        {"action": "test_selected", "_selected_action": [connection.pk]},
        follow=True,
    )
    [message] = shown(response)
    assert message.startswith("crm: OK — HTTP 200 OK in ")


def test_testing_an_http_endpoint_that_refuses(
    admin_client: Client, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api", method="HEAD").respond_with_data("", status=401)
    connection = add_connection("crm", httpserver.url_for("/api?token=tok-secret-1"))
    response = admin_client.post(
        reverse("admin:nodes_connection_test", args=[connection.pk]), follow=True
    )
    [message] = shown(response)
    assert message.startswith("crm: failed — HTTP 401 UNAUTHORIZED in ")


def test_testing_an_http_endpoint_that_is_down_hides_the_url_secrets(admin_client: Client) -> None:
    connection = add_connection("crm", "http://user:pa55-word@127.0.0.1:1/x?token=tok-secret-1")
    response = admin_client.post(
        reverse("admin:nodes_connection_test", args=[connection.pk]), follow=True
    )
    [message] = shown(response)
    assert message.startswith("crm: failed — ConnectionError:")
    assert "pa55-word" not in message and "tok-secret-1" not in message


def test_the_catalog_lists_every_type_with_ports_and_config_docs(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:nodes_catalog"))
    html = response.content.decode()
    assert response.status_code == 200
    for type_name in registry.types():
        assert f'id="type-{type_name}"' in html
    assert "<code>conditions</code> <b>*</b>" in html
    assert "list of Condition" in html
    assert "Dotted path of the field" in html  # nested Condition docs
    assert "summary" in html  # http_post's output port kind


def test_the_catalog_needs_a_staff_login(client: Client) -> None:
    response = client.get(reverse("admin:nodes_catalog"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
