"""Fixtures of the admin tests: users with and without the right to run flows."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from flows.flowfile import apply_flow_file
from flows.models import Flow


def staff_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def designer_client(db: None) -> Client:
    """Designs flows (add/change/view) but may not run them: no ``run_flow``."""
    user = staff_user(
        "designer",
        "add_flow",
        "change_flow",
        "view_flow",
        "view_flowrun",
        "view_connection",
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(db: None) -> Client:
    user = staff_user("viewer", "view_flow", "view_flowrun")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def paid_orders(example_connections: None, minimal_flow: dict[str, Any]) -> Flow:
    flow, _ = apply_flow_file(minimal_flow)
    return flow
