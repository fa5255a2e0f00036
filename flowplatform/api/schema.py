"""OpenAPI generation: every operation documents the errors it answers with, and its links.

``AutoSchema`` adds the API's error responses to each operation: 401 and 403 everywhere, 404
where the path names an object, 400 where a body or list parameters are read, 413 and 415
where a body is read. ``add_links`` (a postprocessing hook) adds OpenAPI links, so clients and
the schemathesis run in the test suite follow real ids from one answer to the next request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse

from flowplatform.api.serializers import ErrorSerializer

ERRORS = {
    "400": "Invalid input: each problem with its path.",
    "401": "No credentials, or invalid ones.",
    "403": "Authenticated, but without the permission this needs.",
    "404": "No such resource.",
    "413": "The request body is too large.",
    "415": "The request body is not JSON.",
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, adding the API's error responses to every operation."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        examples: dict[str, Any] = getattr(self.view, "path_examples", {})
        for parameter in operation.get("parameters", []):
            name = parameter["name"]
            if parameter["in"] == "path" and name in examples and "examples" not in parameter:
                parameter["example"] = examples[name]  # pre-fills Swagger UI's "Try it out"
        responses = operation["responses"]
        for code in self._error_codes(has_body="requestBody" in operation):
            if code not in responses:
                response = OpenApiResponse(ErrorSerializer, description=ERRORS[code])
                responses[code] = self._get_response_for_code(response, code)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_codes(self, has_body: bool) -> list[str]:
        codes = ["401", "403"]
        if "{" in self.path:
            codes.append("404")
        if has_body:
            codes += ["400", "413", "415"]
        elif self.method == "GET" and self._is_list_view():
            codes.append("400")  # pagination, filter and ordering parameters
        return codes


@dataclass(frozen=True)
class Resource:
    """An object the API addresses by one path parameter: ``GET /api/v1/flows/{slug}/``."""

    path: str  # the detail path, e.g. /api/v1/flows/{slug}/
    parameter: str  # slug
    noun: str  # flow: the name a query parameter or body field naming one has
    component: str  # Flow: the schema of what GET answers


DETAIL_PATH = re.compile(r"^(?P<collection>.*/(?P<plural>[a-z_]+)/)\{(?P<param>\w+)\}/$")
SUCCESS = re.compile(r"^2\d\d$")


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: a link from every answer that is an object to what can use it.

    An answer whose schema is the one ``GET`` gives for a resource (a flow, run, schedule,
    connection...) links to every operation under that resource's path (its id filled from
    the answer), to list filters named after the resource (``?flow=``), and to request bodies
    with a field named after it (``{"flow": ...}`` of a schedule). New endpoints get links by
    the same rules.
    """
    paths: dict[str, dict[str, Any]] = result.get("paths", {})
    schemas: dict[str, Any] = result.get("components", {}).get("schemas", {})
    resources = _resources(paths, schemas)
    for source_path, operations in paths.items():
        for source in operations.values():
            for code, response in source.get("responses", {}).items():
                component = _component(response)
                if not SUCCESS.match(code) or component is None:
                    continue
                links: dict[str, Any] = {}
                for resource in resources:
                    if resource.component == component:
                        links.update(_links_to(resource, source_path, source, paths, schemas))
                if links:
                    response["links"] = dict(sorted(links.items()))
    return result


def _resources(paths: dict[str, dict[str, Any]], schemas: dict[str, Any]) -> list[Resource]:
    found = []
    for path, operations in paths.items():
        match = DETAIL_PATH.match(path)
        get = operations.get("get")
        if match is None or get is None or "{" in match["collection"]:
            continue
        component = _component(get.get("responses", {}).get("200", {}))
        param = match["param"]
        if component and param in schemas.get(component, {}).get("properties", {}):
            noun = match["plural"].removesuffix("s")
            found.append(Resource(path, param, noun, component))
    return found


def _links_to(
    resource: Resource,
    source_path: str,
    source: dict[str, Any],
    paths: dict[str, dict[str, Any]],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    value = f"$response.body#/{resource.parameter}"
    source_params = set(re.findall(r"\{(\w+)\}", source_path))
    links: dict[str, Any] = {}
    for path, operations in paths.items():
        for target in operations.values():
            if target is source:
                continue
            link: dict[str, Any] = {"operationId": target["operationId"]}
            parameters: dict[str, str] = {}
            if path.startswith(resource.path):
                for name in re.findall(r"\{(\w+)\}", path):
                    if name == resource.parameter:
                        parameters[f"path.{name}"] = value
                    elif name in source_params:
                        parameters[f"path.{name}"] = f"$request.path.{name}"
                    else:
                        break
                else:
                    link["parameters"] = parameters
            elif "{" not in path:
                query = {p["name"] for p in target.get("parameters", []) if p["in"] == "query"}
                if resource.noun in query:
                    link["parameters"] = {f"query.{resource.noun}": value}
                body = _request_component(target)
                if body and resource.noun in schemas.get(body, {}).get("properties", {}):
                    link["requestBody"] = {resource.noun: value}
            if len(link) > 1:
                links[target["operationId"]] = link
    return links


def _component(response: dict[str, Any]) -> str | None:
    """The component an answer's JSON body is (``Flow`` for ``$ref: .../Flow``), if one."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/components/schemas/") else None


def _request_component(operation: dict[str, Any]) -> str | None:
    return _component(operation.get("requestBody", {}))
