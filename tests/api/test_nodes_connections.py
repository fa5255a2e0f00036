"""The node catalog and connections (whose secrets never leave the database)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from nodes.models import Connection
from nodes.registry import registry

pytestmark = pytest.mark.django_db

CONNECTIONS = "/api/v1/connections/"
SECRET_URL = "https://svc:hunter2@crm.example.test/api?key=s3cr3t"
SECRET_HEADER = "Bearer t0p-secret"


def test_catalog_lists_every_registered_type_with_ports_and_schema(api: APIClient) -> None:
    body = api.get("/api/v1/nodes/", {"limit": 100}).json()
    assert [n["type"] for n in body["results"]] == list(registry.types())
    node = next(n for n in body["results"] if n["type"] == "filter")
    assert node["inputs"][0]["name"] == "in" and node["outputs"][0]["kind"] == "records"
    assert "conditions" in node["config_schema"]["properties"]
    assert {"label", "description", "category", "version"} <= set(node)


def test_catalog_entry_and_unknown_type(api: APIClient) -> None:
    assert api.get("/api/v1/nodes/sql_query/").json()["category"] == "source"
    response = api.get("/api/v1/nodes/nope/")
    assert response.status_code == 404
    assert response.json()["errors"][0]["path"] == "type"


def create_crm(api: APIClient) -> dict[str, object]:
    body = {"name": "crm", "url": SECRET_URL, "headers": {"Authorization": SECRET_HEADER}}
    response = api.post(CONNECTIONS, body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_secrets_are_write_only(api: APIClient) -> None:
    created = create_crm(api)
    assert created["header_names"] == ["Authorization"]
    assert created["display_url"] == "https://svc:***@crm.example.test/api?key=***"
    responses = [
        api.get(CONNECTIONS),
        api.get(f"{CONNECTIONS}crm/"),
        api.patch(f"{CONNECTIONS}crm/", {"description": "CRM"}, format="json"),
    ]
    for response in responses:
        text = response.content.decode()
        assert "hunter2" not in text and "s3cr3t" not in text and "t0p-secret" not in text
        assert '"url"' not in text and '"headers"' not in text
    stored = Connection.objects.get(name="crm")
    assert stored.secret_url() == SECRET_URL
    assert stored.secret_headers() == {"Authorization": SECRET_HEADER}
    assert "hunter2" not in json.dumps([stored.encrypted_url, stored.encrypted_headers])


def test_patch_changes_only_what_is_given_and_put_replaces(api: APIClient) -> None:
    create_crm(api)
    api.patch(f"{CONNECTIONS}crm/", {"url": "https://crm.example.test/v2"}, format="json")
    stored = Connection.objects.get(name="crm")
    assert stored.secret_url() == "https://crm.example.test/v2"
    assert stored.header_names == ["Authorization"]  # same destination: headers kept
    response = api.put(f"{CONNECTIONS}crm/", {"url": "https://crm3.example.test"}, format="json")
    assert response.status_code == 200
    assert Connection.objects.get(name="crm").header_names == []


def test_duplicate_name_is_a_conflict(api: APIClient) -> None:
    create_crm(api)
    response = api.post(CONNECTIONS, {"name": "crm", "url": "https://x.test"}, format="json")
    assert response.status_code == 409
    assert response.json()["errors"][0]["path"] == "name"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "crm", "url": "ftp://files.example.test"}, "url"),
        ({"name": "crm"}, "url"),
        ({"name": "c r m", "url": "https://x.test"}, "name"),
        (
            {"name": "crm", "url": "https://x.test", "headers": {"Bad Name": "v"}},
            "headers.Bad Name",
        ),
        ({"name": "crm", "url": "https://x.test", "headers": {"X": "a\r\nb"}}, "headers.X"),
        ({"name": "crm", "url": "https://x.test", "headers": {"X": 5}}, "headers.X"),
        ({"name": "crm", "url": "https://x.test", "password": "p"}, "password"),
    ],
)
def test_bad_connections_are_400_naming_the_field(
    api: APIClient, body: dict[str, object], path: str
) -> None:
    response = api.post(CONNECTIONS, body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["errors"][0]["path"] == path
    assert not Connection.objects.exists()


def test_a_connection_cannot_be_renamed(api: APIClient) -> None:
    create_crm(api)
    response = api.patch(f"{CONNECTIONS}crm/", {"name": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "name"


def test_delete_and_unknown_name(api: APIClient) -> None:
    create_crm(api)
    assert api.delete(f"{CONNECTIONS}crm/").status_code == 204
    response = api.get(f"{CONNECTIONS}crm/")
    assert response.status_code == 404
    assert response.json()["errors"][0]["path"] == "name"
