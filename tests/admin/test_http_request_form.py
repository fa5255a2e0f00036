"""The ``http_request`` node in the flow designer: its config form comes from the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from flows.flowfile import export_flow
from flows.models import Flow
from tests.admin.forms import flow_post_data
from tests.flows.helpers import add_connection

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

ADD_URL = reverse("admin:flows_flow_add")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "api-to-crm.json"


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def field_errors(response: Any, index: int, field: str) -> list[str]:
    inline = next(
        i for i in response.context["inline_admin_formsets"] if i.formset.prefix == "nodes"
    )
    return list(inline.formset.forms[index].errors.get(field, []))


def test_the_add_page_renders_every_http_request_field(admin_client: Client) -> None:
    html = admin_client.get(ADD_URL).content.decode()
    assert "HTTP request (http_request)" in html
    for name in (
        "url", "connection", "method", "body", "query", "headers", "records_path",
        "pagination", "rate_limit_per_s", "timeout_s", "max_retries", "retry_backoff_s",
        "columns",
    ):  # fmt: skip
        assert f'name="nodes-0-cfg__http_request__{name}"' in html, name
    assert '<option value="POST">POST</option>' in html


def test_the_example_flow_is_created_through_the_forms(admin_client: Client) -> None:
    add_connection("shop-api", "https://shop.example.test")  # saving checks it exists
    flow = example()
    response = admin_client.post(ADD_URL, flow_post_data(flow))
    assert response.status_code == 302, response.context and response.context["errors"]
    assert export_flow(Flow.objects.get(slug=flow["slug"])) == flow


def test_an_unknown_pagination_type_is_shown_at_the_pagination_field(
    admin_client: Client,
) -> None:
    flow = example()
    flow["nodes"][0]["config"]["pagination"] = {"type": "pages"}
    response = admin_client.post(ADD_URL, flow_post_data(flow))
    assert response.status_code == 200
    assert field_errors(response, 0, "cfg__http_request__pagination") == [
        "pagination.type: unknown pagination type 'pages': expected one of none, next_url, cursor, offset, "
        "page"
    ]
    assert not Flow.objects.exists()
