"""OpenAPI building blocks of the flows API: parameters, error responses, examples."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from flowplatform.api.serializers import ErrorSerializer
from flows.api.serializers import PreviewResultSerializer, RunDetailSerializer

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
                        "message": "'eqq' is not one of eq, ne, gt, gte, lt, lte, in, not_in, "
                        "contains, startswith, endswith, is_null, not_null, regex",
                    },
                    {"path": "edges[2].to", "node": None, "message": "unknown node 'pusj'"},
                ],
            },
            status_codes=["400"],
        )
    ],
)
PREVIEW_RESPONSES = {
    200: PreviewResultSerializer,
    400: OpenApiResponse(
        ErrorSerializer,
        "Malformed body, or the node or the part of the flow leading to it is invalid.",
    ),
    403: OpenApiResponse(ErrorSerializer, "Missing the run right or the use of a connection."),
    404: OpenApiResponse(ErrorSerializer, "No such flow (or not visible to you)."),
}
START_RESPONSES = {
    202: RunDetailSerializer,
    409: OpenApiResponse(ErrorSerializer, "The flow is invalid: each problem with its path."),
    503: OpenApiResponse(ErrorSerializer, "The broker is unavailable; retrying later can help."),
}

PREVIEW_DESCRIPTION = (
    "Runs the node and the nodes upstream of it on a sample, in the web process, and answers "
    "each one's first records and output schema, upstream first. Sources read at most `limit` "
    "records (`LIMIT` pushed down to SQL); nothing is stored, and nodes with side effects never "
    "act: `http_post` shows the requests it would send (credentials redacted), a node with "
    "side effects and no preview is skipped. A node that fails is reported in its entry "
    "(`status`, `message`), not as an HTTP error. Bounded in time "
    "(`FLOWPLATFORM_PREVIEW_TIMEOUT_S`, default 30 s: `timed_out`) and in size "
    "(`FLOWPLATFORM_PREVIEW_MAX_BYTES` of records: `cut_for_size`)."
)
