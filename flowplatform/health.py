"""Probes and the metrics endpoint of the web process: ``/healthz``, ``/readyz``, ``/metrics``.

``/healthz`` answers as long as the process serves requests (a liveness probe: it touches
nothing else). ``/readyz`` checks that the database and the broker answer within
``FLOWPLATFORM_READY_TIMEOUT_S``; otherwise 503 with JSON naming each failing dependency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from flowplatform import metrics


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    timeout = settings.FLOWPLATFORM_READY_TIMEOUT_S
    checks: dict[str, Callable[[float], None]] = {"database": check_database}
    if settings.CELERY_BROKER_URL:
        checks["broker"] = check_broker
    results = run_checks(checks, timeout)
    failing = {name: error for name, error in results.items() if error is not None}
    body: dict[str, Any] = {
        "status": "unavailable" if failing else "ok",
        "checks": {name: ("ok" if error is None else error) for name, error in results.items()},
    }
    if failing:
        body["failing"] = sorted(failing)
    return JsonResponse(body, status=503 if failing else 200)


def run_checks(checks: dict[str, Callable[[float], None]], timeout: float) -> dict[str, str | None]:
    """Run the checks side by side, each in a thread; one still running after ``timeout``
    seconds fails with "no answer within ...". Returns None or the error of each."""
    results: dict[str, str | None] = {}
    threads = []
    for name, check in checks.items():

        def target(name: str = name, check: Callable[[float], None] = check) -> None:
            try:
                check(timeout)
                results[name] = None
            except Exception as exc:  # noqa: BLE001 - any failure makes the dependency unready
                results[name] = f"{type(exc).__name__}: {exc}"[:300]

        thread = threading.Thread(target=target, name=f"readyz-{name}", daemon=True)
        thread.start()
        threads.append((name, thread))
    deadline = time.monotonic() + timeout
    for name, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            results.setdefault(name, f"no answer within {timeout:g}s")
    return {name: results.get(name) for name in checks}


def check_database(timeout: float) -> None:
    """``SELECT 1`` on a connection of this thread (closed afterwards)."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET statement_timeout = %s", [int(timeout * 1000)])
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def check_broker(timeout: float) -> None:
    """Connect to the broker (a fresh connection, no retries) and, for Redis, PING it."""
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=0, timeout=timeout)
        if conn.transport.driver_type == "redis":
            conn.default_channel.client.ping()


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics.token_ok(request.headers.get("Authorization")):
        response = JsonResponse({"detail": "metrics token missing or wrong"}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(state=True), content_type=metrics.CONTENT_TYPE)


class ProbeMiddleware:
    """Answers ``/healthz``, ``/readyz`` and ``/metrics`` before any other middleware: probes
    and scrapers reach a pod by its IP over plain HTTP, which the host check
    (``ALLOWED_HOSTS``) and the HTTPS redirect (``FLOWPLATFORM_HTTPS``) would refuse."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.views: dict[str, Callable[[HttpRequest], HttpResponse]] = {
            "/healthz": healthz,
            "/readyz": readyz,
            "/metrics": metrics_view,
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.views.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)
