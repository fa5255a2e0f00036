"""The OpenAPI document: committed == generated, valid, documenting the flow file exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer
from drf_spectacular.validation import validate_schema

from flows.api.serializers import FlowEdgeSerializer, FlowNodeSerializer, FlowSerializer
from flows.definition import EdgeSpec, FlowSpec, NodeSpec

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.yaml"
REGENERATE = "DJANGO_SETTINGS_MODULE=tests.settings python manage.py spectacular --validate --fail-on-warn --file docs/api/openapi.yaml"


def generated() -> dict[str, object]:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_committed_schema_is_the_generated_one() -> None:
    text = OpenApiYamlRenderer().render(generated(), renderer_context={}).decode()
    assert text == COMMITTED.read_text(), f"docs/api/openapi.yaml is stale: run `{REGENERATE}`"


def test_schema_is_valid_openapi() -> None:
    validate_schema(generated())


# Resources whose examples this suite vouches for; other apps' endpoints are checked for
# their documented errors only.
EXAMPLED = ("/api/v1/flows/", "/api/v1/runs/", "/api/v1/nodes/", "/api/v1/connections/")


def test_every_operation_documents_its_errors_and_has_an_example() -> None:
    schema = yaml.safe_load(COMMITTED.read_text())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert {"401", "403"} <= set(responses), where
            if not path.startswith(EXAMPLED):
                continue
            bodies = [r.get("content", {}).get("application/json", {}) for r in responses.values()]
            request = operation.get("requestBody", {}).get("content", {}).get("application/json")
            has_example = any(b.get("examples") for b in [*bodies, request or {}])
            assert has_example or method == "delete", where


@pytest.mark.parametrize(
    ("serializer", "spec", "extra"),
    [
        (FlowSerializer, FlowSpec, {"version", "created_at", "updated_at"}),
        (FlowNodeSerializer, NodeSpec, set()),
        (FlowEdgeSerializer, EdgeSpec, set()),
    ],
)
def test_documented_flow_fields_are_the_flow_file_fields(
    serializer: type, spec: type, extra: set[str]
) -> None:
    spec_fields = {field.alias or name for name, field in spec.model_fields.items()}
    assert set(serializer().fields) - extra == spec_fields


def test_schema_and_swagger_ui_are_served_to_logged_in_users(admin_client: Any) -> None:
    # Anonymous access: tests/api/test_docs_access.py.
    client = admin_client
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/flows/{slug}/runs/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content and b"/api/schema/" in docs.content


def test_nullable_fields_are_documented_nullable() -> None:
    schema = yaml.safe_load(COMMITTED.read_text())
    next_fire_at = schema["components"]["schemas"]["FlowSchedule"]["properties"]["next_fire_at"]
    assert next_fire_at == {
        "type": "string",
        "format": "date-time",
        "nullable": True,
        "readOnly": True,
        "description": next_fire_at["description"],
    }


def test_only_operations_reading_a_body_document_body_errors() -> None:
    """400/413/415 where a body is read; `cancel` reads none, so it answers none of them."""
    schema = yaml.safe_load(COMMITTED.read_text())
    for operations in schema["paths"].values():
        for operation in operations.values():
            codes = set(operation["responses"])
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= codes, operation["operationId"]
            else:
                assert not {"413", "415"} & codes, operation["operationId"]
    cancel = schema["paths"]["/api/v1/runs/{id}/cancel/"]["post"]["responses"]
    assert set(cancel) == {"200", "401", "403", "404", "409"}


def test_answers_link_to_the_operations_on_what_they_name() -> None:
    """Links from a created object's answer reach it by id (what the stateful fuzzer follows)."""
    paths = yaml.safe_load(COMMITTED.read_text())["paths"]

    def links(path: str, method: str, code: str) -> dict[str, dict[str, object]]:
        links: dict[str, dict[str, object]] = paths[path][method]["responses"][code]["links"]
        return links

    started = links("/api/v1/flows/{slug}/runs/", "post", "202")
    for target in ("runs_cancel_create", "runs_rerun_create", "runs_retrieve"):
        assert started[target]["parameters"] == {"path.id": "$response.body#/id"}
    created = links("/api/v1/flows/", "post", "201")
    assert created["flows_runs_create"]["parameters"] == {"path.slug": "$response.body#/slug"}
    assert created["runs_list"]["parameters"] == {"query.flow": "$response.body#/slug"}
    assert created["schedules_create"]["requestBody"] == {"flow": "$response.body#/slug"}
    schedule = links("/api/v1/schedules/", "post", "201")
    assert set(schedule) == {
        "schedules_retrieve",
        "schedules_update",
        "schedules_partial_update",
        "schedules_destroy",
    }
    assert "connections_destroy" in links("/api/v1/connections/", "post", "201")
