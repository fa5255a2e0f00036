"""The platform's instrumentation of ``requests``: a client span per request sent, lighter.

``opentelemetry-instrumentation-requests`` does per request far more than the span it makes:
it parses the URL twice, inspects the user agent for synthetic traffic, looks for headers to
capture, builds a second set of attributes for its duration histogram and records it (into
the OpenTelemetry metrics API, which the platform does not export: its metrics are
Prometheus'), and attaches the context three times (the span made current, the IP address
hook, the suppression of nested HTTP instrumentations). Done by ``http_post`` for every
record, that is most of what tracing a node's requests costs.

``RequestsInstrumentor`` here is the library's (same switch ``requests`` in
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``, same instrumentation scope, same span: name
``POST``, kind client, a child of the current span, ``http.method``, ``http.url`` with
credentials and signed query parameters redacted (and the running node's secrets), ``http.status_code``, status error from
400 or on an exception, which is recorded; the ``traceparent`` header injected, and
``OTEL_PYTHON_REQUESTS_EXCLUDED_URLS`` honoured) without the rest: no duration histogram,
no ``user_agent.*`` attributes, no captured headers, the span not made current while the
request is sent (no instrumentation runs inside it). With ``OTEL_SEMCONV_STABILITY_OPT_IN``
naming ``http`` (the newer attribute names) the library's own instrumentation is used.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import (
    _SUPPRESS_HTTP_INSTRUMENTATION_KEY,
    _SUPPRESS_INSTRUMENTATION_KEY,
)
from opentelemetry.instrumentation.requests import RequestsInstrumentor as LibraryInstrumentor
from opentelemetry.instrumentation.requests.version import __version__
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode, get_tracer, set_span_in_context
from opentelemetry.util.http import get_excluded_urls, redact_url, sanitize_method

from nodes.redaction import redact_active

#: The library's module name: the instrumentation scope of the spans (as the library's).
SCOPE = "opentelemetry.instrumentation.requests"


def uses_library() -> bool:
    """Whether the library's own instrumentation is used (newer HTTP attribute names asked)."""
    opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return any(name.strip().startswith("http") for name in opt_in.split(","))


class RequestsInstrumentor(LibraryInstrumentor):
    def _instrument(self, **kwargs: Any) -> None:
        if uses_library():
            super()._instrument(**kwargs)
            return
        tracer = get_tracer(SCOPE, __version__, kwargs.get("tracer_provider"))
        _patch(tracer, get_excluded_urls("REQUESTS"))


def _patch(tracer: Any, excluded_urls: Any) -> None:
    from requests import Session

    wrapped = Session.send
    get_value = otel_context.get_value

    @functools.wraps(wrapped)
    def send(self: Session, request: Any, **kwargs: Any) -> Any:
        if (
            get_value(_SUPPRESS_INSTRUMENTATION_KEY)
            or get_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
            or (excluded_urls and excluded_urls.url_disabled(request.url))
        ):
            return wrapped(self, request, **kwargs)
        method = sanitize_method((request.method or "").strip())
        span = tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            kind=SpanKind.CLIENT,
            attributes={"http.method": method, "http.url": redact_active(redact_url(request.url))},
        )
        try:
            if request.headers is None:
                from requests.structures import CaseInsensitiveDict

                request.headers = CaseInsensitiveDict()
            inject(request.headers, context=set_span_in_context(span))
            response = wrapped(self, request, **kwargs)
        except BaseException as exc:
            if span.is_recording():
                # Not ``record_exception``: its message and stack trace would carry the
                # connection's secrets (a URL with a token in an error); the node's redactor
                # hides them here as in the node's own error.
                message = redact_active(str(exc))
                span.add_event(
                    "exception",
                    {"exception.type": type(exc).__qualname__, "exception.message": message},
                )
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"))
            span.end()
            raise
        if span.is_recording():
            status = response.status_code
            span.set_attribute("http.status_code", status)
            if not 100 <= status < 400:
                span.set_status(Status(StatusCode.ERROR))
        span.end()
        return response

    # The library's marks: its ``uninstrument`` puts ``Session.send`` back.
    send.opentelemetry_instrumentation_requests_applied = True  # type: ignore[attr-defined]
    Session.send = send  # type: ignore[method-assign]
