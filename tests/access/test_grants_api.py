"""``/api/v1/flows/{slug}/access/``: read and replace a flow's grants (grant managers only)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from rest_framework.test import APIClient

from flows.models import Flow
from tests.access.conftest import api_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/flows/beta/access/"


@pytest.fixture
def manager(db: None) -> APIClient:
    user = User.objects.create_user("manager")
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_flowaccess", "change_flowaccess"])
    )
    return api_client(user)


def test_a_manager_grants_a_group_and_its_members_see_the_flow(
    manager: APIClient, apis: dict[str, APIClient], actors: dict[str, User], beta: Flow
) -> None:
    assert manager.get(URL).json() == []
    body = [{"group": "team-a", "view": True, "run": True}, {"user": "viewer", "change": True}]
    response = manager.put(URL, body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == [
        {"user": None, "group": "team-a", "view": True, "change": False, "run": True},
        {"user": "viewer", "group": None, "view": True, "change": True, "run": False},
    ]
    assert apis["member"].post("/api/v1/flows/beta/runs/", {}, format="json").status_code == 202
    assert (
        apis["viewer"].patch("/api/v1/flows/beta/", {"name": "B"}, format="json").status_code == 200
    )
    assert manager.put(URL, [], format="json").json() == []
    assert apis["member"].get("/api/v1/flows/beta/").status_code == 404


def test_editing_a_flow_does_not_let_one_grant_rights_on_it(
    apis: dict[str, APIClient], beta: Flow
) -> None:
    editor = apis["editor"]
    grant_self = [{"user": "editor", "change": True, "run": True}]
    assert editor.get("/api/v1/flows/alpha/access/").status_code == 403
    assert editor.put("/api/v1/flows/alpha/access/", grant_self, format="json").status_code == 403
    assert editor.get(URL).status_code == 404  # beta is not theirs to see
    assert apis["nobody"].get(URL).status_code == 403


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ([{"view": True}], "[0].user", "give exactly one of user or group"),
        ([{"user": "viewer", "group": "team-a"}], "[0].user", "give exactly one of user or group"),
        ([{"user": "ghost"}], "[0].user", "no user 'ghost'"),
        ([{"group": "ghosts"}], "[0].group", "no group 'ghosts'"),
        ([{"user": "viewer"}, {"user": "viewer", "run": True}], "[1].user", "also granted in [0]"),
        ([{"user": "viewer", "colour": "red"}], "[0].colour", None),
    ],
)
def test_bad_grants_are_400_with_their_place_and_change_nothing(
    manager: APIClient,
    actors: dict[str, User],
    beta: Flow,
    body: list[dict[str, Any]],
    path: str,
    message: str | None,
) -> None:
    Group.objects.get_or_create(name="team-a")
    response = manager.put(URL, body, format="json")
    assert response.status_code == 400, response.json()
    errors = {e["path"]: e["message"] for e in response.json()["errors"]}
    assert path in errors, errors
    if message:
        assert errors[path] == message
    assert not beta.access_grants.exists()
