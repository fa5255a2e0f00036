"""Authentication (token, session) and the permission matrix."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.models import Flow
from flows.services import start_run
from tests.api.conftest import make_user, token_client

pytestmark = pytest.mark.django_db

FLOW = "/api/v1/flows/paid-orders-to-crm/"
ENDPOINTS = [
    ("get", "/api/v1/flows/"),
    ("post", "/api/v1/flows/"),
    ("get", FLOW),
    ("put", FLOW),
    ("patch", FLOW),
    ("delete", FLOW),
    ("post", f"{FLOW}validate/"),
    ("get", f"{FLOW}versions/"),
    ("get", f"{FLOW}versions/1/"),
    ("get", f"{FLOW}runs/"),
    ("post", f"{FLOW}runs/"),
    ("get", "/api/v1/runs/"),
    ("get", "/api/v1/runs/00000000-0000-0000-0000-000000000000/"),
    ("post", "/api/v1/runs/00000000-0000-0000-0000-000000000000/cancel/"),
    ("post", "/api/v1/runs/00000000-0000-0000-0000-000000000000/rerun/"),
    ("get", "/api/v1/nodes/"),
    ("get", "/api/v1/nodes/filter/"),
    ("get", "/api/v1/connections/"),
    ("post", "/api/v1/connections/"),
    ("get", "/api/v1/connections/crm/"),
    ("put", "/api/v1/connections/crm/"),
    ("patch", "/api/v1/connections/crm/"),
    ("delete", "/api/v1/connections/crm/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_anonymous_requests_get_401(method: str, url: str, flow: Flow) -> None:
    response = getattr(APIClient(), method)(url, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["detail"]


@pytest.mark.parametrize("header", ["Token " + "0" * 40, "Token short", "Token a\x00b", "Bearer x"])
def test_bad_tokens_get_401(header: str, flow: Flow) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/flows/").status_code == 401


def test_session_login_works_for_the_browsable_api(flow: Flow) -> None:
    make_user("alice", "flows.view_flow")
    client = APIClient()
    assert client.login(username="alice", password="pw")
    assert client.get(FLOW).status_code == 200
    page = client.get(FLOW, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"Paid orders to CRM" in page.content


def test_createapitoken_prints_a_working_token_last(flow: Flow) -> None:
    make_user("ci", "flows.view_flow")
    out = StringIO()
    call_command("createapitoken", "ci", stdout=out, stderr=StringIO())
    first = out.getvalue().strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get(FLOW).status_code == 200
    out = StringIO()
    call_command("createapitoken", "ci", stdout=out, stderr=StringIO())
    second = out.getvalue().strip().splitlines()[-1]
    assert second != first
    assert client.get(FLOW).status_code == 401  # the old token was replaced
    assert Token.objects.get(user__username="ci").key == second


def test_createapitoken_for_an_unknown_user_fails_readably(db: None) -> None:
    with pytest.raises(CommandError, match="user 'ghost' does not exist"):
        call_command("createapitoken", "ghost")


def test_authenticated_without_permissions_gets_403(nobody: APIClient, flow: Flow) -> None:
    for url in ("/api/v1/flows/", FLOW, "/api/v1/runs/", "/api/v1/connections/"):
        response = nobody.get(url)
        assert response.status_code == 403, url
        assert response.json()["errors"][0]["message"]
    assert nobody.get("/api/v1/nodes/").status_code == 200  # the catalog is for everyone


def test_a_viewer_can_read_but_not_change_or_run(
    viewer: APIClient, flow: Flow, minimal_flow: dict[str, Any]
) -> None:
    run = start_run(flow)
    assert viewer.get(FLOW).status_code == 200
    assert viewer.get(f"/api/v1/runs/{run.id}/").status_code == 200
    assert viewer.post(f"{FLOW}validate/").status_code == 200
    assert viewer.get(f"{FLOW}versions/").status_code == 200
    assert viewer.post(f"{FLOW}runs/", {}, format="json").status_code == 403
    assert viewer.post(f"/api/v1/runs/{run.id}/cancel/").status_code == 403
    assert viewer.post(f"/api/v1/runs/{run.id}/rerun/", {}, format="json").status_code == 403
    assert viewer.patch(FLOW, {"name": "x"}, format="json").status_code == 403
    assert viewer.delete(FLOW).status_code == 403
    assert viewer.post("/api/v1/flows/", minimal_flow, format="json").status_code == 403


def test_an_operator_can_start_and_cancel_runs_but_not_edit(
    operator: APIClient, flow: Flow
) -> None:
    started = operator.post(f"{FLOW}runs/", {}, format="json")
    assert started.status_code == 202
    cancelled = operator.post(f"/api/v1/runs/{started.json()['id']}/cancel/")
    assert cancelled.status_code == 200
    assert operator.patch(FLOW, {"name": "x"}, format="json").status_code == 403


def test_model_permissions_map_to_methods(flow: Flow, minimal_flow: dict[str, Any]) -> None:
    editor = token_client(make_user("editor", "flows.view_flow", "flows.change_flow"))
    assert editor.patch(FLOW, {"name": "x"}, format="json").status_code == 200
    assert editor.delete(FLOW).status_code == 403
    creator = token_client(make_user("creator", "flows.add_flow"))
    other = {**minimal_flow, "slug": "other"}
    assert creator.post("/api/v1/flows/", other, format="json").status_code == 201
    deleter = token_client(make_user("deleter", "flows.delete_flow"))
    assert deleter.delete(FLOW).status_code == 204


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/",
        "/api/v1/flows/",
        FLOW,
        f"{FLOW}versions/",
        f"{FLOW}runs/",
        "/api/v1/runs/",
        "/api/v1/nodes/",
        "/api/v1/nodes/filter/",
        "/api/v1/connections/",
    ],
)
def test_browsable_api_pages_render(url: str, flow: Flow) -> None:
    make_user("admin", superuser=True)
    client = APIClient()
    assert client.login(username="admin", password="pw")
    start_run(flow)
    page = client.get(url, HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
