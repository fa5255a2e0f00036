"""Ordering that refuses unknown fields instead of ignoring them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from flowplatform.api.errors import ProblemError, error_item


class StrictOrderingFilter(OrderingFilter):
    """``?ordering=-created_at,status``: each term one of the view's ``ordering_fields``."""

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> Any:
        raw = request.query_params.get(self.ordering_param)
        if raw:
            allowed = {name for name, _label in self.get_valid_fields(queryset, view, {})}
            terms = [term.strip() for term in raw.split(",")]
            bad = [term for term in terms if term.lstrip("-") not in allowed]
            if bad:
                message = f"unknown ordering field '{bad[0]}' (use: {', '.join(sorted(allowed))}, '-' for descending)"
                raise ProblemError([error_item(self.ordering_param, message)], "Invalid input.")
            return terms
        return self.get_default_ordering(view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        fields = ", ".join(f"`{name}`" for name in getattr(view, "ordering_fields", []))
        for param in params:
            param["description"] = (
                f"Comma-separated fields to sort by ({fields}); prefix with `-` for descending."
            )
        return params
