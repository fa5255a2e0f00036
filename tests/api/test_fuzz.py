"""Schemathesis against the in-process WSGI app: no 500s, every response as documented.

Bounded and deterministic: a fixed seed, a few examples per operation, no shrinking. The
objects named by the schema's path examples exist, so the fuzzer reaches real flows, runs and
connections as well as missing ones. Runs it starts are never executed (no worker), which is
fine: only the API's answers are under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flowplatform.wsgi import application
from flows.api import examples
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from tests.flows.helpers import add_connection

CONFIG = {
    "seed": 20260105,
    "generation": {
        "max-examples": 6,
        "deterministic": True,
        "database": "none",
        "no-shrink": True,
    },
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
    "suppress-health-check": ["all"],
}
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture
def in_process_requests() -> Iterator[None]:
    """Keep the test's database connection across WSGI requests (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def token(
    example_connections: None, in_process_requests: None, minimal_flow: dict[str, Any]
) -> str:
    """A superuser's token, and the objects the schema's path examples name."""
    flow, _ = apply_flow_file(minimal_flow)
    run = FlowRun.objects.create(
        id=uuid.UUID(examples.RUN_ID), flow=flow, version=flow.versions.get(), trigger="api"
    )
    NodeRun.objects.create(run=run, node_key="orders", node_type="sql_query")
    add_connection("crm", "https://crm.example.test", {"Authorization": "Bearer x"})
    user = User.objects.create_superuser("fuzz", "fuzz@example.test", "pw")
    return Token.objects.create(user=user).key


# Read at collection, before any user or token exists: as a public document.
with override_settings(FLOWPLATFORM_API_DOCS_PUBLIC=True):
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/", application, config=SchemathesisConfig.from_dict(CONFIG)
    )


@schema.parametrize()
def test_api_conforms_and_never_fails(case: Any, token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
