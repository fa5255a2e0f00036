"""A connection's stored headers never follow its URL to another host (admin, API).

Whoever may change a connection but not read its secrets could otherwise point the URL at a
host of their own and have **Test connection** (or a run) send them the stored
``Authorization``. Moving the URL to another scheme, host or port drops the stored headers
unless new ones come with the same change.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from pytest_httpserver import HTTPServer
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from nodes.models import Connection
from tests.flows.helpers import add_connection

pytestmark = pytest.mark.django_db

TOKEN = "Bearer stored-t0ken-of-the-crm"


@pytest.fixture
def crm(db: None) -> Connection:
    return add_connection("crm", "https://crm.example.test/api", {"Authorization": TOKEN})


@pytest.fixture
def api(admin_user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    return client


def received_authorization(server: HTTPServer) -> list[str | None]:
    return [request.headers.get("Authorization") for request, _ in server.log]


def admin_change(client: Client, connection: Connection, **fields: str) -> Any:
    body = {"name": connection.name, "description": "", "url": "", "headers": "", **fields}
    return client.post(reverse("admin:nodes_connection_change", args=[connection.pk]), body)


def test_admin_moving_the_url_to_another_host_drops_the_stored_headers(
    admin_client: Client, crm: Connection, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/collect", method="HEAD").respond_with_data("")
    response = admin_change(admin_client, crm, url=httpserver.url_for("/collect"))
    assert response.status_code == 302
    assert Connection.objects.get(pk=crm.pk).secret_headers() == {}
    admin_client.post(reverse("admin:nodes_connection_test", args=[crm.pk]))
    assert received_authorization(httpserver) == [None]


def test_admin_says_so_in_the_help_text(admin_client: Client, crm: Connection) -> None:
    page = admin_client.get(reverse("admin:nodes_connection_change", args=[crm.pk]))
    assert "another scheme, host or port removes the stored headers" in page.content.decode()


def test_admin_keeps_headers_on_the_same_host_and_takes_new_ones_with_a_move(
    admin_client: Client, crm: Connection, httpserver: HTTPServer
) -> None:
    assert admin_change(admin_client, crm, url="https://crm.example.test/v2").status_code == 302
    assert Connection.objects.get(pk=crm.pk).secret_headers() == {"Authorization": TOKEN}
    httpserver.expect_request("/collect", method="HEAD").respond_with_data("")
    response = admin_change(
        admin_client, crm, url=httpserver.url_for("/collect"), headers="Authorization: Bearer new"
    )
    assert response.status_code == 302
    assert Connection.objects.get(pk=crm.pk).secret_headers() == {"Authorization": "Bearer new"}
    admin_client.post(reverse("admin:nodes_connection_test", args=[crm.pk]))
    assert received_authorization(httpserver) == ["Bearer new"]


@pytest.mark.parametrize(
    "url",
    [
        "http://crm.example.test/api",  # scheme
        "https://crm.example.test:8443/api",  # port
        "https://CRM.example.test.evil.test/api",  # host
        "https://other.example.test/api",
    ],
)
def test_api_patch_moving_the_url_drops_the_stored_headers(
    api: APIClient, crm: Connection, url: str
) -> None:
    response = api.patch("/api/v1/connections/crm/", {"url": url}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["header_names"] == []
    assert Connection.objects.get(pk=crm.pk).secret_headers() == {}


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.example.test/other?page=1",
        "https://CRM.Example.Test:443/api",  # same host and (default) port
    ],
)
def test_api_patch_on_the_same_destination_keeps_the_headers(
    api: APIClient, crm: Connection, url: str
) -> None:
    response = api.patch("/api/v1/connections/crm/", {"url": url}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["header_names"] == ["Authorization"]


def test_api_patch_with_new_headers_keeps_them(
    api: APIClient, crm: Connection, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/collect", method="HEAD").respond_with_data("")
    body = {"url": httpserver.url_for("/collect"), "headers": {"X-Key": "mine"}}
    response = api.patch("/api/v1/connections/crm/", body, format="json")
    assert response.status_code == 200
    assert Connection.objects.get(pk=crm.pk).secret_headers() == {"X-Key": "mine"}


def test_the_api_schema_describes_the_rule() -> None:
    from nodes.api.serializers import ConnectionSerializer

    help_text = str(ConnectionSerializer().fields["url"].help_text)
    assert "another scheme, host or port removes the stored headers" in help_text
