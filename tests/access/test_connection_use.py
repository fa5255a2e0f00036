"""Connections limited to groups: a flow naming one is saved and run only by its members.

``warehouse`` (read by alpha's ``orders`` node) is limited to the group ``dw-readers``.
The ``member`` actor (team-a: change and run on alpha) is not in it at first.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from rest_framework.test import APIClient

from flows.models import Flow, FlowRun
from nodes.models import Connection
from scheduling.firing import handle_interval
from scheduling.models import FlowSchedule, ScheduledRunState
from tests.access.conftest import admin_client, api_client
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = pytest.mark.django_db

A = "/api/v1/flows/alpha/"


@pytest.fixture
def readers(actors: dict[str, User]) -> Group:
    """``warehouse`` usable by ``dw-readers`` only; ``crm`` by everyone."""
    group = Group.objects.create(name="dw-readers")
    add_connection("warehouse", SOURCE_DB_URL).allowed_groups.add(group)
    add_connection("crm", "http://127.0.0.1:9/")
    return group


def the_refusal(response: Any) -> dict[str, Any]:
    assert response.status_code == 403, response.content[:500]
    [error] = response.json()["errors"]
    return error


def test_saving_a_flow_naming_a_limited_connection_needs_membership(
    apis: dict[str, APIClient],
    readers: Group,
    actors: dict[str, User],
    minimal_flow: dict[str, Any],
) -> None:
    body = {**copy.deepcopy(minimal_flow), "slug": "alpha", "name": "Changed"}
    error = the_refusal(apis["member"].put(A, body, format="json"))
    assert error == {
        "path": "nodes[0].config.connection",
        "node": "orders",
        "message": "you may not use connection 'warehouse' (it is limited to some groups)",
    }
    assert Flow.objects.get(slug="alpha").name == "Alpha"
    actors["member"].groups.add(readers)
    assert apis["member"].put(A, body, format="json").status_code == 200


def test_creating_a_flow_naming_a_limited_connection_needs_membership(
    readers: Group, minimal_flow: dict[str, Any]
) -> None:
    user = User.objects.create_user("creator")
    user.user_permissions.add(Permission.objects.get(codename="add_flow"))
    creator = api_client(user)
    body = {**copy.deepcopy(minimal_flow), "slug": "new-one"}
    assert the_refusal(creator.post("/api/v1/flows/", body, format="json"))["node"] == "orders"
    assert not Flow.objects.filter(slug="new-one").exists()


def test_running_a_flow_naming_a_limited_connection_needs_membership(
    apis: dict[str, APIClient], readers: Group, actors: dict[str, User]
) -> None:
    error = the_refusal(apis["runner"].post(f"{A}runs/", {}, format="json"))
    assert error["node"] == "orders" and "'warehouse'" in error["message"]
    assert not FlowRun.objects.exists()
    actors["runner"].groups.add(readers)
    assert apis["runner"].post(f"{A}runs/", {}, format="json").status_code == 202


def test_the_global_use_connection_permission_uses_every_connection(
    apis: dict[str, APIClient], readers: Group, actors: dict[str, User]
) -> None:
    actors["runner"].user_permissions.add(Permission.objects.get(codename="use_connection"))
    assert apis["runner"].post(f"{A}runs/", {}, format="json").status_code == 202
    assert apis["global_user"].post(f"{A}runs/", {}, format="json").status_code == 403


def test_rerunning_checks_the_user_who_reruns(
    apis: dict[str, APIClient], readers: Group, actors: dict[str, User], alpha: Flow
) -> None:
    from flows.services import start_run

    run = start_run(alpha)  # started by an operator
    error = the_refusal(apis["runner"].post(f"/api/v1/runs/{run.pk}/rerun/", {}, format="json"))
    assert "'warehouse'" in error["message"]


def test_the_admin_flow_page_reports_the_connection_on_its_node(
    readers: Group, actors: dict[str, User], alpha: Flow
) -> None:
    from tests.admin.forms import page_post_data

    browser: Client = admin_client(actors["member"])
    page = browser.get(f"/admin/flows/flow/{alpha.pk}/change/")
    assert page.status_code == 200
    data = page_post_data(page)
    data["name"] = "Changed in the admin"
    response = browser.post(f"/admin/flows/flow/{alpha.pk}/change/", data)
    assert response.status_code == 200
    assert "you may not use connection &#x27;warehouse&#x27;" in response.content.decode()
    assert Flow.objects.get(pk=alpha.pk).name == "Alpha"


def test_a_scheduled_run_checks_the_schedule_owner(
    readers: Group, actors: dict[str, User], alpha: Flow
) -> None:
    schedule = FlowSchedule.objects.create(
        flow=alpha, kind="interval", every_seconds=60, owner=actors["member"]
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    outcome = handle_interval(schedule, start, start + timedelta(minutes=1), "schedule")
    [failed] = outcome.failed
    assert failed.state == ScheduledRunState.FAILED
    assert "'warehouse'" in failed.error and "member" in failed.error
    actors["member"].groups.add(readers)
    later = start + timedelta(minutes=1)
    assert handle_interval(schedule, later, later + timedelta(minutes=1), "schedule").started


def test_allowed_groups_are_set_in_the_api_and_the_admin(db: None) -> None:
    Group.objects.create(name="dw-readers")
    root = User.objects.create_superuser("root", "root@example.test", "pw")
    api = api_client(root)
    body = {
        "name": "dw",
        "url": "postgresql://r:s@db.internal/dw",
        "allowed_groups": ["dw-readers"],
    }
    created = api.post("/api/v1/connections/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["allowed_groups"] == ["dw-readers"]
    cleared = api.patch("/api/v1/connections/dw/", {"allowed_groups": []}, format="json")
    assert cleared.json()["allowed_groups"] == []
    unknown = api.patch("/api/v1/connections/dw/", {"allowed_groups": ["ghosts"]}, format="json")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["path"] == "allowed_groups"
    group = Group.objects.get(name="dw-readers")
    browser = admin_client(root)
    response = browser.post(
        "/admin/nodes/connection/add/",
        {
            "name": "crm",
            "description": "",
            "url": "https://crm.example.com",
            "headers": "",
            "allowed_groups": [str(group.pk)],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(Connection.objects.get(name="crm").allowed_groups.all()) == [group]
