"""The OpenAPI schema and Swagger UI: for logged-in users, unless the deployment opens them.

They map every endpoint, parameter and error of the API: reconnaissance an anonymous visitor
should not get for free. ``FLOWPLATFORM_API_DOCS_PUBLIC`` serves them to anyone.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseBase
from django.urls import reverse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class APIDocsAccess(BasePermission):
    """Anyone when ``FLOWPLATFORM_API_DOCS_PUBLIC``, otherwise any authenticated user."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if settings.FLOWPLATFORM_API_DOCS_PUBLIC:
            return True
        return bool(request.user and request.user.is_authenticated)


class SchemaView(SpectacularAPIView):
    """``/api/schema/``: a token or a session; 401 without."""

    permission_classes = [APIDocsAccess]


class SwaggerView(SpectacularSwaggerView):
    """``/api/docs/``: a browser without a session is sent to log in, then back here."""

    permission_classes = [APIDocsAccess]

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path(), reverse("rest_framework:login"))
        return super().handle_exception(exc)
