"""Sets the audit context of a web request: the admin or the API, its user, its address."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse

from flowplatform.audit.context import Source, audit_context


class AuditMiddleware:
    """Entries recorded while a request is handled carry its user, door and remote address.

    The user is read when an entry is written, so an API token authenticated inside the view
    is the one recorded. The remote address is ``REMOTE_ADDR``: behind a proxy, have the proxy
    (or the WSGI server) set it to the client's address.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        try:
            self.admin_prefix = reverse("admin:index")
        except NoReverseMatch:
            self.admin_prefix = "/admin/"

    def __call__(self, request: HttpRequest) -> HttpResponse:
        source = Source.ADMIN if request.path.startswith(self.admin_prefix) else Source.API
        with audit_context(source, request=request):
            return self.get_response(request)
