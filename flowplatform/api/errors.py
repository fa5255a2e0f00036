"""One error shape for the whole API.

Every error answer is ``{"detail": "...", "errors": [{"path", "message", "node"}, ...]}``:
``detail`` says what went wrong in a sentence, each item of ``errors`` names its place
(``nodes[1].config.conditions[0].op``, ``params``, ``limit``; ``""`` for the request as a
whole) and, for flow problems, the node at fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.fields import get_error_detail
from rest_framework.response import Response
from rest_framework.settings import api_settings

ErrorItem = dict[str, str | None]


def error_item(path: str, message: str, node: str | None = None) -> ErrorItem:
    return {"path": path, "message": message, "node": node}


class ProblemError(exceptions.APIException):
    """An API error carrying located problems; subclasses fix the status code."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid input."
    default_code = "invalid"

    def __init__(self, errors: Iterable[ErrorItem] | str, detail: str | None = None) -> None:
        if isinstance(errors, str):
            errors = [error_item("", errors)]
        self.errors = list(errors)
        super().__init__(detail or self.default_detail)


class NotFound(ProblemError):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."
    default_code = "not_found"


class Conflict(ProblemError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict with the current state of the resource."
    default_code = "conflict"


class PreconditionFailed(ProblemError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "Precondition failed."
    default_code = "precondition_failed"


class PayloadTooLarge(ProblemError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


class ServiceUnavailable(ProblemError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service unavailable; retrying later can help."
    default_code = "unavailable"


def flatten(detail: Any, path: str = "") -> list[ErrorItem]:
    """DRF's nested error details as a flat list of located messages."""
    if isinstance(detail, Mapping):
        items: list[ErrorItem] = []
        for key, value in detail.items():
            key = str(key)
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                items.extend(flatten(value, path))
            else:
                items.extend(flatten(value, f"{path}.{key}" if path else key))
        return items
    if isinstance(detail, list | tuple):
        if all(not isinstance(item, Mapping | list | tuple) for item in detail):
            return [error_item(path, str(item)) for item in detail]
        items = []
        for index, item in enumerate(detail):
            if item:  # DRF reports valid list items as empty dicts
                items.extend(flatten(item, f"{path}[{index}]"))
        return items
    return [error_item(path, str(detail))]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with Django's own exceptions mapped and every body in the error shape."""
    # Imported here: rest_framework.views loads the parsers, which import this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge("the request body exceeds the size limit")
    elif isinstance(exc, Http404 | exceptions.NotFound) and not isinstance(exc, ProblemError):
        exc = missing_object(context)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(get_error_detail(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: a 500 and a logged traceback, as it should be
    response.data = error_body(exc, response.data)
    return response


def missing_object(context: dict[str, Any]) -> NotFound:
    """A 404 of a view's ``get_object()``, naming the path parameter that found nothing."""
    view, kwargs = context.get("view"), context.get("kwargs") or {}
    name = getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", "pk")
    if name not in kwargs:
        return NotFound([error_item("", "no such object")])
    model = getattr(getattr(view, "queryset", None), "model", None)
    if model is None:
        serializer = getattr(view, "serializer_class", None)
        model = getattr(getattr(serializer, "Meta", None), "model", None)
    noun = str(model._meta.verbose_name) if model is not None else "object"
    if name == "pk" and model is not None:
        name = model._meta.pk.name  # as the OpenAPI document names the parameter
    return NotFound([error_item(name, f"no {noun} with this {name}")])


def error_body(exc: Exception, data: Any) -> dict[str, Any]:
    if isinstance(exc, ProblemError):
        return {"detail": str(exc.detail), "errors": exc.errors}
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(data) or [error_item("", "invalid input")]
        return {"detail": "Invalid input.", "errors": errors}
    detail = str(data.get("detail", "")) if isinstance(data, Mapping) else str(data)
    return {"detail": detail, "errors": [error_item("", detail)]}


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: JSON under ``/api/``, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        message = "no API endpoint at this path"
        return JsonResponse(
            {"detail": "Not found.", "errors": [error_item("", message)]}, status=404
        )
    return page_not_found(request, exception or Exception("not found"))
