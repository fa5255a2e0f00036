"""Checking a flow that is not saved yet, and refusing to save one that names a missing
connection."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from flows.models import Flow
from tests.api.conftest import make_user, token_client

VALIDATE = "/api/v1/flows/validate/"


@pytest.mark.usefixtures("example_connections")
def test_an_unsaved_flow_is_validated_without_being_saved(
    api: APIClient, minimal_flow: dict[str, Any]
) -> None:
    response = api.post(VALIDATE, minimal_flow, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"valid": True, "errors": []}
    minimal_flow["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    minimal_flow["edges"].append({"from": "push", "to": "orders"})
    errors = api.post(VALIDATE, minimal_flow, format="json").json()["errors"]
    assert [(e["path"], e["node"]) for e in errors] == [
        ("nodes[1].config.conditions[0].op", "paid"),
        ("edges[3].to", "orders"),
    ]
    assert errors[0]["message"].startswith("'eqq' is not one of eq, ne")
    assert not Flow.objects.exists()


def test_validate_accepts_only_post_and_names_a_bad_body(api: APIClient) -> None:
    assert api.get(VALIDATE).status_code == 405
    answer = api.post(VALIDATE, [1, 2], format="json").json()
    assert answer["valid"] is False
    assert answer["errors"][0]["message"] == "a flow file must be a JSON object"


def test_validate_needs_a_user_who_may_see_or_add_flows(
    db: None, minimal_flow: dict[str, Any]
) -> None:
    nobody = token_client(make_user("nobody"))
    assert nobody.post(VALIDATE, minimal_flow, format="json").status_code == 403
    author = token_client(make_user("author", "flows.add_flow"))
    assert author.post(VALIDATE, minimal_flow, format="json").status_code == 200
    assert APIClient().post(VALIDATE, minimal_flow, format="json").status_code == 401


def test_a_missing_connection_is_a_save_time_error(
    api: APIClient, minimal_flow: dict[str, Any]
) -> None:
    found = api.post(VALIDATE, minimal_flow, format="json").json()["errors"]
    assert [(e["path"], e["node"]) for e in found] == [
        ("nodes[0].config.connection", "orders"),
        ("nodes[3].config.connection", "push"),
    ]
    assert found[0]["message"].startswith("connection 'warehouse' does not exist")
    created = api.post("/api/v1/flows/", minimal_flow, format="json")
    assert created.status_code == 400
    assert created.json()["errors"] == found
    assert not Flow.objects.exists()


@pytest.mark.usefixtures("example_connections")
@pytest.mark.parametrize("slug", ["validate", "preview", "Preview"])
def test_the_slugs_of_api_actions_are_reserved(
    api: APIClient, minimal_flow: dict[str, Any], slug: str
) -> None:
    response = api.post("/api/v1/flows/", {**minimal_flow, "slug": slug}, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["path"] == "slug" and "reserved" in error["message"]
