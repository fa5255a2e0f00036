"""OpenAPI generation: every operation documents the errors it can answer with."""

from __future__ import annotations

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
        examples: dict[str, Any] = getattr(self.view, "path_examples", {})
        for parameter in (operation or {}).get("parameters", []):
            name = parameter["name"]
            if parameter["in"] == "path" and name in examples and "examples" not in parameter:
                parameter["example"] = examples[name]  # pre-fills Swagger UI's "Try it out"
        return operation

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                response = OpenApiResponse(ErrorSerializer, description=ERRORS[code])
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return dict(sorted(responses.items()))

    def _error_codes(self) -> list[str]:
        codes = ["401", "403"]
        if "{" in self.path:
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["400", "413", "415"]
        elif self.method == "GET" and self._is_list_view():
            codes.append("400")  # pagination, filter and ordering parameters
        return codes
