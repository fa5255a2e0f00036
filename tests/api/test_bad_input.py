"""Hostile and malformed requests: always a 4xx with a JSON body naming the path, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from flows.models import Flow

pytestmark = pytest.mark.django_db

FLOWS = "/api/v1/flows/"
FLOW = "/api/v1/flows/paid-orders-to-crm/"


def post_raw(api: APIClient, url: str, body: bytes, content_type: str = "application/json") -> Any:
    return api.generic("POST", url, body, content_type=content_type)


def first_error(response: Any) -> dict[str, Any]:
    return response.json()["errors"][0]


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"name": }', b"[1, 2", b"\xff\xfe", b"NaN", b'{"a": Infinity}', b"{} {}"],
)
def test_malformed_json_is_400(api: APIClient, body: bytes) -> None:
    response = post_raw(api, FLOWS, body)
    assert response.status_code == 400
    assert first_error(response)["path"] == ""
    assert response.json()["detail"]


def test_deep_nesting_is_400(api: APIClient) -> None:
    response = post_raw(api, FLOWS, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    nested: Any = 1
    for _ in range(70):
        nested = {"n": nested}
    response = api.post(FLOWS, {"name": nested}, format="json")
    assert response.status_code == 400
    assert first_error(response)["path"].startswith("name.n.n.n")
    assert "nested deeper" in first_error(response)["message"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"slug": "x", "name": "a\x00b", "nodes": []}, "name"),
        (
            {
                "slug": "x",
                "name": "n",
                "nodes": [{"key": "k", "type": "filter", "config": {"v\x00": 1}}],
            },
            "nodes[0].config.v\x00",
        ),
        (
            {
                "slug": "x",
                "name": "n",
                "nodes": [{"key": "k", "type": "filter", "config": {"n": 2**70}}],
            },
            "nodes[0].config.n",
        ),
        (
            {
                "slug": "x",
                "name": "n",
                "nodes": [{"key": "k", "type": "filter", "config": {"n": 1e400}}],
            },
            "nodes[0].config.n",
        ),
    ],
)
def test_unstorable_values_are_400_with_their_path(
    api: APIClient, body: dict[str, Any], path: str
) -> None:
    raw = json.dumps(body).replace("Infinity", "1e400").encode()
    response = post_raw(api, FLOWS, raw)
    assert response.status_code == 400
    assert first_error(response)["path"] == path
    assert not Flow.objects.exists()


def test_integers_with_thousands_of_digits_are_400(api: APIClient) -> None:
    response = post_raw(api, FLOWS, b'{"name": ' + b"9" * 5000 + b"}")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([], ""),
        ("just a string", ""),
        ({"slug": "x", "name": 5, "nodes": [{"key": "a", "type": "filter"}]}, "name"),
        ({"slug": "x", "name": "n", "nodes": "all"}, "nodes"),
        ({"slug": "x", "name": "n", "nodes": [{"key": "a b", "type": "filter"}]}, "nodes[0].key"),
        (
            {"slug": "x", "name": "n", "nodes": [{"key": "a", "type": "filter"}], "owner": "me"},
            "owner",
        ),
        (
            {"slug": "x", "name": "n", "nodes": [{"key": "a", "type": "filter", "cfg": {}}]},
            "nodes[0].cfg",
        ),
        ({"slug": "x/y", "name": "n", "nodes": [{"key": "a", "type": "filter"}]}, "slug"),
    ],
)
def test_wrong_types_and_unknown_fields_are_400_naming_the_field(
    api: APIClient, body: Any, path: str
) -> None:
    response = api.post(FLOWS, body, format="json")
    assert response.status_code == 400, response.json()
    if path:
        assert path in [e["path"] for e in response.json()["errors"]]


def test_version_of_the_wrong_type_is_400(api: APIClient, flow: Flow) -> None:
    response = api.patch(FLOW, {"version": "1"}, format="json")
    assert response.status_code == 400
    assert first_error(response)["path"] == "version"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000)
def test_oversized_bodies_are_413(api: APIClient, flow: Flow) -> None:
    big = json.dumps({"name": "x" * 20_000}).encode()
    for url in (FLOWS, FLOW):
        method = "POST" if url == FLOWS else "PUT"
        response = api.generic(method, url, big, content_type="application/json")
        assert response.status_code == 413
        assert response.json()["detail"] == "Request body too large."
    form = api.generic(
        "POST", FLOWS, b"a=" + b"x" * 20_000, content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code in (413, 415)


def test_non_json_bodies_are_415(api: APIClient) -> None:
    response = post_raw(api, FLOWS, b"name=x", "text/plain")
    assert response.status_code == 415
    assert response.json()["errors"][0]["message"]


def test_nul_and_odd_characters_in_urls_are_404(api: APIClient) -> None:
    for url in (
        "/api/v1/flows/a%00b/",
        "/api/v1/connections/a%00b/",
        "/api/v1/nodes/a%00b/",
        "/api/v1/runs/a%00b/",
        "/api/v1/flows/" + "x" * 500 + "/",
        "/api/v1/flows/paid-orders-to-crm/versions/99999999999999999999/",
    ):
        response = api.get(url)
        assert response.status_code == 404, url
        assert response.json()["errors"]


def test_nul_in_query_parameters_is_400(api: APIClient) -> None:
    response = api.get("/api/v1/runs/", {"flow": "\x00"})
    assert response.status_code == 400
    assert first_error(response)["path"] == "flow"


def test_huge_pagination_values_are_bounded(api: APIClient, flow: Flow) -> None:
    assert api.get(FLOWS, {"limit": "100000"}).status_code == 200
    assert api.get(FLOWS, {"offset": "9" * 30}).status_code == 400
    assert api.get(FLOWS, {"limit": "1.5"}).status_code == 400


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+23:59"]
)
def test_year_1_and_9999_with_offsets_are_400_naming_the_filter(api: APIClient, value: str) -> None:
    response = api.get("/api/v1/runs/", {"created_before": value})
    assert response.status_code == 400, response.content
    assert first_error(response) == {
        "path": "created_before",
        "message": "date/time out of range (years 1 to 9999 in UTC)",
        "node": None,
    }


def test_offsets_postgresql_refuses_are_converted_to_utc(api: APIClient, flow: Flow) -> None:
    for value in ("0425-12-31T08:40:09+18:56", "2026-01-05T00:00:00-23:30"):
        response = api.get("/api/v1/runs/", {"created_before": value})
        assert response.status_code == 200, response.content
        response = api.get(f"{FLOW}runs/", {"created_after": value})
        assert response.status_code == 200, response.content


def test_every_filtering_view_refuses_values_the_database_cannot_take() -> None:
    """Views filter through the shared backend, never django-filter's own (which lets them by)."""
    from django.urls import get_resolver
    from django_filters.rest_framework import DjangoFilterBackend

    from flowplatform.api.filters import FilterBackend

    def views(patterns: list[Any]) -> Iterator[Any]:
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from views(pattern.url_patterns)
            elif hasattr(pattern.callback, "cls"):
                yield pattern.callback

    checked = 0
    for callback in views(get_resolver().url_patterns):
        actions = getattr(callback, "actions", None) or {}
        for action in {*actions.values(), None}:
            handler = getattr(callback.cls, action, None) if action else None
            backends = getattr(handler, "kwargs", {}).get(
                "filter_backends", getattr(callback.cls, "filter_backends", [])
            )
            for backend in backends:
                if issubclass(backend, DjangoFilterBackend):
                    assert issubclass(backend, FilterBackend), f"{callback.cls.__name__}: {backend}"
                    checked += 1
    assert checked


@pytest.mark.parametrize("key", ["99999999999999999999999", "9223372036854775808", "2147483648"])
def test_ids_beyond_the_database_are_404_naming_the_path_parameter(
    api: APIClient, key: str
) -> None:
    for method in ("get", "put", "patch", "delete"):
        response = getattr(api, method)(f"/api/v1/schedules/{key}/", {}, format="json")
        assert response.status_code == 404, (method, response.content)
        assert first_error(response)["path"] == "id"
        assert first_error(response)["message"] == "no flow schedule with this id"


def test_long_unknown_ordering_terms_are_cut_in_the_message(api: APIClient) -> None:
    response = api.get("/api/v1/runs/", {"ordering": "x" * 10_000})
    assert response.status_code == 400
    assert first_error(response)["path"] == "ordering"
    assert len(first_error(response)["message"]) < 300
