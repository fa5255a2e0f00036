"""The OpenAPI schema and Swagger UI: for logged-in users unless FLOWPLATFORM_API_DOCS_PUBLIC."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

SCHEMA, DOCS = "/api/schema/", "/api/docs/"


def test_docs_are_private_by_default(settings: Any) -> None:
    assert settings.FLOWPLATFORM_API_DOCS_PUBLIC is False


def test_anonymous_schema_request_is_401(settings: Any) -> None:
    settings.FLOWPLATFORM_API_DOCS_PUBLIC = False
    response = APIClient().get(SCHEMA)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert b"/api/v1/flows/" not in response.content


def test_anonymous_browser_is_sent_to_log_in_from_swagger_ui(settings: Any) -> None:
    settings.FLOWPLATFORM_API_DOCS_PUBLIC = False
    response = Client().get(DOCS)
    assert response.status_code == 302
    assert response["Location"] == "/api/auth/login/?next=/api/docs/"


def test_a_bad_token_is_refused(settings: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get(SCHEMA).status_code == 401


def test_any_token_user_reads_the_schema(nobody: APIClient) -> None:
    # No model permission is needed: the document describes the API, not its data.
    response = nobody.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/v1/flows/" in response.json()["paths"]


def test_a_logged_in_user_sees_swagger_ui_and_its_schema(django_user_model: Any) -> None:
    client = Client()
    client.force_login(django_user_model.objects.create_user("reader", password="pw"))
    page = client.get(DOCS)
    assert page.status_code == 200
    assert b"swagger-ui" in page.content
    assert client.get(SCHEMA).status_code == 200


def test_public_docs_answer_anonymous_requests(settings: Any) -> None:
    settings.FLOWPLATFORM_API_DOCS_PUBLIC = True
    schema = APIClient().get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/flows/" in schema.json()["paths"]
    assert Client().get(DOCS).status_code == 200


def test_public_docs_do_not_open_the_api_itself(settings: Any) -> None:
    settings.FLOWPLATFORM_API_DOCS_PUBLIC = True
    assert APIClient().get("/api/v1/flows/").status_code == 401
