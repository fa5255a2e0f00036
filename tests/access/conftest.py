"""Actors of the access tests: two flows, and users holding rights on one of them in every way.

``alpha`` is the flow the grants name; ``beta`` is granted to nobody. The actors:

- ``global_user``: the global model permissions (view, add, change, delete and run flows);
- ``viewer``: a grant to view alpha;
- ``runner``: a grant to run alpha (run implies view);
- ``editor``: a grant to change alpha (change implies view), no run;
- ``member``: in the group ``team-a``, which holds change and run on alpha;
- ``nobody``: authenticated, nothing else.

Every actor is staff, so the same users drive the API and the admin.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.flowfile import apply_flow_file
from flows.models import Flow, FlowAccess

GLOBAL_PERMS = ("view_flow", "add_flow", "change_flow", "delete_flow", "run_flow")
ACTORS = ("global_user", "viewer", "runner", "editor", "member", "nobody")


def make_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.test", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def grant(flow: Flow, who: User | Group, **rights: bool) -> FlowAccess:
    target = {"user": who} if isinstance(who, User) else {"group": who}
    return FlowAccess.objects.create(
        flow=flow, **target, **{f"can_{name}": value for name, value in rights.items()}
    )


def api_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def admin_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alpha(example_connections: None, minimal_flow: dict[str, Any]) -> Flow:
    return apply_flow_file({**copy.deepcopy(minimal_flow), "slug": "alpha", "name": "Alpha"})[0]


@pytest.fixture
def beta(example_connections: None, minimal_flow: dict[str, Any]) -> Flow:
    return apply_flow_file({**copy.deepcopy(minimal_flow), "slug": "beta", "name": "Beta"})[0]


@pytest.fixture
def actors(alpha: Flow, beta: Flow) -> dict[str, User]:
    """Every actor, keyed by name (see the module docstring)."""
    users = {
        "global_user": make_user("global_user", *GLOBAL_PERMS),
        "viewer": make_user("viewer"),
        "runner": make_user("runner"),
        "editor": make_user("editor"),
        "member": make_user("member"),
        "nobody": make_user("nobody"),
    }
    team = Group.objects.create(name="team-a")
    users["member"].groups.add(team)
    grant(alpha, users["viewer"], view=True)
    grant(alpha, users["runner"], view=False, run=True)
    grant(alpha, users["editor"], view=False, change=True)
    grant(alpha, team, view=True, change=True, run=True)
    return users


@pytest.fixture
def apis(actors: dict[str, User]) -> dict[str, APIClient]:
    return {name: api_client(user) for name, user in actors.items()}
