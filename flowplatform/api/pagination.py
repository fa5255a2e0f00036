"""Limit/offset pagination on every list, with a bounded page size and strict parameters."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from flowplatform.api.errors import ProblemError, error_item

#: Largest ``limit`` or ``offset`` read (18 digits); a longer number is a 400, not an overflow.
MAX_NUMBER = 10**18 - 1


class Pagination(LimitOffsetPagination):
    """``?limit=`` (default 50, at most 500; larger values are reduced) and ``?offset=``."""

    default_limit = 50
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        limit = _non_negative(request, self.limit_query_param, minimum=1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _non_negative(request, self.offset_query_param, minimum=0) or 0

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        example = "https://flows.example.com/api/v1/runs/?limit=50&offset={}"
        paginated["properties"]["count"]["example"] = 120
        paginated["properties"]["next"]["example"] = example.format(100)
        paginated["properties"]["previous"]["example"] = example.format(0)
        return paginated

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Items per page (default {self.default_limit}; "
                f"values above {self.max_limit} are reduced to {self.max_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_NUMBER},
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "Items to skip before the first returned.",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_NUMBER},
            },
        ]


def _non_negative(request: Request, name: str, minimum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < minimum:
        message = f"must be an integer from {minimum} to {MAX_NUMBER}"
        raise ProblemError([error_item(name, message)], "Invalid input.")
    return int(raw)
