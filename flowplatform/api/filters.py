"""Query filters every list shares: values the database can take, ordering by known fields.

Every view that filters with a ``FilterSet`` uses :class:`FilterBackend` (the default backend
in ``REST_FRAMEWORK``; ``tests/api/test_fuzz.py`` checks that no view uses django-filter's own),
so a value outside what the database can represent is a 400 naming its parameter, never a 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django_filters import utils
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from flowplatform.api.errors import ErrorItem, ProblemError, error_item
from flowplatform.jsondoc import unstorable_value


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, refusing cleaned values the database cannot take.

    Aware date-times are converted to UTC first: PostgreSQL refuses offsets beyond 15:59
    (``+18:56`` is valid ISO 8601), and near year 1 or 9999 the conversion itself overflows.
    """

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            raise utils.translate_validation(filterset.errors)
        cleaned = filterset.form.cleaned_data
        problems: list[ErrorItem] = []
        for name, value in cleaned.items():
            try:
                cleaned[name] = storable(value)
            except ValueError as exc:
                problems.append(error_item(name, str(exc)))
        if problems:
            raise ProblemError(problems, "Invalid input.")
        return filterset.qs


def storable(value: Any) -> Any:
    """``value`` as the database can take it (aware date-times in UTC), or ``ValueError``."""
    if isinstance(value, list | tuple):
        return type(value)(storable(item) for item in value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError("date/time out of range (years 1 to 9999 in UTC)") from None
    message = unstorable_value(value)
    if message:
        raise ValueError(message)
    return value


class StrictOrderingFilter(OrderingFilter):
    """``?ordering=-created_at,status``: each term one of the view's ``ordering_fields``."""

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> Any:
        raw = request.query_params.get(self.ordering_param)
        if raw:
            allowed = {name for name, _label in self.get_valid_fields(queryset, view, {})}
            terms = [term.strip() for term in raw.split(",")]
            bad = [term for term in terms if term.lstrip("-") not in allowed]
            if bad:
                message = f"unknown ordering field '{bad[0][:100]}' (use: {', '.join(sorted(allowed))}, '-' for descending)"
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
