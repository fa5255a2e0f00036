"""Actors of the API tests: users with named permissions, each with a token client."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.flowfile import apply_flow_file
from flows.models import Flow

VIEWER_PERMS = ("flows.view_flow", "flows.view_flowrun", "nodes.view_connection")


def make_user(username: str, *perms: str, superuser: bool = False) -> User:
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.test", "pw")
    user = User.objects.create_user(username, f"{username}@example.test", "pw")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(db: None) -> APIClient:
    """A superuser's token client."""
    return token_client(make_user("root", superuser=True))


@pytest.fixture
def viewer(db: None) -> APIClient:
    """May view flows, runs and connections; may not change or run anything."""
    return token_client(make_user("viewer", *VIEWER_PERMS))


@pytest.fixture
def operator(db: None) -> APIClient:
    """A viewer who may also start and cancel runs."""
    return token_client(make_user("operator", *VIEWER_PERMS, "flows.run_flow"))


@pytest.fixture
def nobody(db: None) -> APIClient:
    """Authenticated, without any permission."""
    return token_client(make_user("nobody"))


@pytest.fixture
def flow(example_connections: None, minimal_flow: dict[str, Any]) -> Flow:
    """The minimal flow, stored (version 1)."""
    return apply_flow_file(minimal_flow)[0]
