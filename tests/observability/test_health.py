"""Probes of the web process, against real processes: gunicorn, PostgreSQL and a private
Redis that is taken away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from django.conf import settings

from tests.conftest import PG_URL, wait_until
from tests.observability.processes import RedisProcess, WebProcess

# The web process uses the test database (committed state is all it reads).
pytestmark = pytest.mark.django_db


@pytest.fixture
def broker() -> Iterator[RedisProcess]:
    redis_server = RedisProcess().start()
    yield redis_server
    redis_server.stop()


@pytest.fixture
def web(broker: RedisProcess, django_db_setup: None) -> Iterator[WebProcess]:
    db_url = f"{PG_URL}/{settings.DATABASES['default']['NAME']}"
    server = WebProcess(db_url, CELERY_BROKER_URL=broker.url, FLOWPLATFORM_READY_TIMEOUT_S="2")
    server.start()
    yield server
    server.stop()


def test_readyz_names_the_broker_when_it_goes_away(web: WebProcess, broker: RedisProcess) -> None:
    live = requests.get(f"{web.url}/healthz", timeout=10)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = requests.get(f"{web.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}

    broker.stop()
    answer = requests.get(f"{web.url}/readyz", timeout=10)
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] != "ok"
    assert answer.elapsed.total_seconds() < 8  # bounded by the ready timeout, not a hang
    # The process itself still answers: liveness is not readiness.
    assert requests.get(f"{web.url}/healthz", timeout=10).status_code == 200

    broker.start()
    wait_until(
        lambda: requests.get(f"{web.url}/readyz", timeout=10).status_code == 200,
        20,
        0.2,
        "/readyz did not recover with the broker",
    )


def test_readyz_names_the_database_when_it_is_unreachable(broker: RedisProcess) -> None:
    # A database that does not exist: PostgreSQL answers, but refuses the connection.
    server = WebProcess(
        f"{PG_URL}/flowplatform_readyz_missing_db", CELERY_BROKER_URL=broker.url
    ).start()
    try:
        answer = requests.get(f"{server.url}/readyz", timeout=10)
        assert answer.status_code == 503
        assert answer.json()["failing"] == ["database"]
        assert "flowplatform_readyz_missing_db" in answer.json()["checks"]["database"]
    finally:
        server.stop()


def test_metrics_without_a_token_are_open_and_list_every_metric(web: WebProcess) -> None:
    answer = requests.get(f"{web.url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    for name in (
        "flowplatform_runs_total",
        "flowplatform_run_duration_seconds",
        "flowplatform_node_runs_total",
        "flowplatform_node_duration_seconds",
        "flowplatform_rows_total",
        "flowplatform_node_retries_total",
        "flowplatform_active_runs",
        "flowplatform_queue_depth",
        "flowplatform_schedule_fire_lag_seconds",
        "flowplatform_reaper_actions_total",
    ):
        assert f"# TYPE {name} " in answer.text, name


def test_probes_answer_a_pod_ip_over_plain_http_behind_https_settings() -> None:
    from django.test import Client, override_settings

    with override_settings(SECURE_SSL_REDIRECT=True, ALLOWED_HOSTS=["flows.example.com"]):
        client = Client(HTTP_HOST="10.1.2.3:8000")
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        # Everything else still gets the host check.
        assert client.get("/api/v1/").status_code == 400
