"""The API knows a branch node's ports: the catalog says they come from the config, the ports
action derives them, node runs count rows per port."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

PAID = {"port": "paid", "conditions": [{"field": "status", "op": "eq", "value": "paid"}]}


def test_the_catalog_says_which_types_take_their_ports_from_the_config(api: APIClient) -> None:
    branch = api.get("/api/v1/nodes/branch/").json()
    assert branch["dynamic_outputs"] is True and branch["outputs"] == []
    join = api.get("/api/v1/nodes/join/").json()
    assert join["dynamic_outputs"] is False
    assert [p["name"] for p in join["inputs"]] == ["left", "right"]


def test_ports_of_a_branch_config(api: APIClient) -> None:
    response = api.post(
        "/api/v1/nodes/branch/ports/",
        {"config": {"routes": [PAID], "otherwise": "rest"}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert [p["name"] for p in response.json()["outputs"]] == ["paid", "rest"]
    assert [p["name"] for p in response.json()["inputs"]] == ["in"]
    fixed = api.post(
        "/api/v1/nodes/filter/ports/",
        {"config": {"conditions": [PAID["conditions"][0]]}},
        format="json",
    )
    assert [p["name"] for p in fixed.json()["outputs"]] == ["out"]


def test_an_invalid_config_is_a_400_naming_the_field(api: APIClient) -> None:
    response = api.post(
        "/api/v1/nodes/branch/ports/",
        {"config": {"routes": [PAID, {**PAID, "port": "a b"}]}},
        format="json",
    )
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["path"] == "config.routes[1].port"
    missing = api.post("/api/v1/nodes/nope/ports/", {"config": {}}, format="json")
    assert missing.status_code == 404
