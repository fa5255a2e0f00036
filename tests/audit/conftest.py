"""Actors of the audit tests: one superuser, reached through the admin, the API and the CLI."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flowplatform.audit.models import AuditEntry
from flows.flowfile import apply_flow_file
from flows.models import Flow

SECRET_PASSWORD = "Pw-9f3Kq2LmZx81vTa"
SECRET_HEADER = "Bearer tk_7HsQ2wErT5yU8iOp3aSd"
SECRET_URL = f"https://svc:{SECRET_PASSWORD}@crm.example.test/api"
SECRET_URL_2 = "https://svc:Other-Pw-4rT6yU8iO0pQ@crm.example.test/api"


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.test", "pw")


@pytest.fixture
def admin_web(root: User) -> Client:
    client = Client(REMOTE_ADDR="10.1.2.3")
    client.force_login(root)
    return client


@pytest.fixture
def api(root: User) -> APIClient:
    client = APIClient(REMOTE_ADDR="10.4.5.6")
    key = Token.objects.create(user=root).key
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def paid_orders(example_connections: None, minimal_flow: dict[str, Any]) -> Flow:
    return apply_flow_file(minimal_flow)[0]


def entries(**filters: Any) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def last(action: str, object_type: str) -> AuditEntry:
    entry = (
        AuditEntry.objects.filter(action=action, object_type=object_type).order_by("-id").first()
    )
    assert entry is not None, (
        f"no '{action}' entry for {object_type}: {list(AuditEntry.objects.values_list('action', 'object_type'))}"
    )
    return entry
