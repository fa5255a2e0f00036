"""OpenAPI building blocks of the flows API: parameters, error responses, examples."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from flowplatform.api.serializers import ErrorSerializer
from flows.api.serializers import RunDetailSerializer

SLUG_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"

IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The flow's `ETag`: the write is refused (412) if the flow has changed since.",
)
SLUG_PARAMETER = OpenApiParameter(
    "slug", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=SLUG_PATTERN, description="Flow slug."
)
STALE = {
    409: OpenApiResponse(ErrorSerializer, "`version` is not the flow's current version."),
    412: OpenApiResponse(ErrorSerializer, "`If-Match` does not match the flow's ETag."),
}
INVALID = OpenApiResponse(
    ErrorSerializer,
    "Malformed body or invalid flow: every problem.",
    examples=[
        OpenApiExample(
            "Invalid flow",
            value={
                "detail": "The flow is invalid.",
                "errors": [
                    {
                        "path": "nodes[1].config.conditions[0].op",
                        "node": "paid",
                        "message": "Input should be 'eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', "
                        "'not_in', 'contains', 'startswith', 'endswith', 'is_null', 'not_null' "
                        "or 'regex'",
                    },
                    {"path": "edges[2].to", "node": None, "message": "unknown node 'pusj'"},
                ],
            },
            status_codes=["400"],
        )
    ],
)
START_RESPONSES = {
    202: RunDetailSerializer,
    409: OpenApiResponse(ErrorSerializer, "The flow is invalid: each problem with its path."),
    503: OpenApiResponse(ErrorSerializer, "The broker is unavailable; retrying later can help."),
}
