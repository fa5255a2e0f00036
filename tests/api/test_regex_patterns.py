"""A pattern with no linear-time match is a 400 naming its path, and nothing is stored."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from flows.models import Flow

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"^(a+)\1$", "a backreference"),
        (r"^(?!test)\w+@example\.com$", "a negative lookahead"),
        (r"x{5000}", "a repetition count above 1000"),
    ],
)
def test_a_pattern_without_a_linear_time_match_is_refused_on_save(
    api: APIClient, minimal_flow: dict[str, Any], pattern: str, construct: str
) -> None:
    minimal_flow["nodes"][1]["config"]["conditions"][0] = {
        "field": "email", "op": "regex", "value": pattern,
    }  # fmt: skip
    response = api.post("/api/v1/flows/", minimal_flow, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["path"] == "nodes[1].config.conditions[0].value"
    assert error["node"] == "paid"
    assert construct in error["message"]
    assert not Flow.objects.exists()


def test_a_catastrophic_but_linear_time_pattern_is_accepted(
    api: APIClient, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["nodes"][1]["config"]["conditions"][0] = {
        "field": "email", "op": "regex", "value": r"^(a+)+$",
    }  # fmt: skip
    assert api.post("/api/v1/flows/", minimal_flow, format="json").status_code == 201


def test_validating_a_huge_pattern_answers_quickly_naming_the_limit(
    api: APIClient, viewer: APIClient, minimal_flow: dict[str, Any]
) -> None:
    assert api.post("/api/v1/flows/", minimal_flow, format="json").status_code == 201
    slug = minimal_flow.get("slug") or Flow.objects.get().slug
    minimal_flow["nodes"][1]["config"]["conditions"][0] = {
        "field": "email", "op": "regex", "value": "\\w" * 6000,
    }  # fmt: skip
    started = time.perf_counter()
    response = viewer.post(f"/api/v1/flows/{slug}/validate/", minimal_flow, format="json")
    assert time.perf_counter() - started < 2.0
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["path"] == "nodes[1].config.conditions[0].value"
    assert "at most 1000 are allowed" in error["message"]
