"""A real ``celery beat`` serves ``/metrics`` (with the token) and ``/healthz`` on
``FLOWPLATFORM_WORKER_METRICS_PORT``: its own figures plus the runs and queues read when
scraped."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until
from tests.flows.helpers import queued_run
from tests.observability.processes import free_port
from tests.scheduling.conftest import BeatProcess

pytestmark = pytest.mark.usefixtures("transactional_db", "example_connections")

TOKEN = "beat-metrics-token-for-the-tests"


def test_beat_serves_metrics_with_the_token_and_the_runs_and_queues(
    tmp_path: Path, minimal_flow: dict[str, Any]
) -> None:
    queued_run(minimal_flow)  # committed: beat reads it when scraped
    port = free_port()
    beat = BeatProcess(tmp_path, f"test-beat-lease-{uuid.uuid4().hex[:8]}")
    beat.env.update(
        {"FLOWPLATFORM_WORKER_METRICS_PORT": str(port), "FLOWPLATFORM_METRICS_TOKEN": TOKEN}
    )
    url = f"http://127.0.0.1:{port}"
    beat.start()
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(healthy, 60, 0.2, f"beat did not serve /healthz; see {beat.log_path}")
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 401
        answer = requests.get(
            f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }
        names = {name for name, _ in samples} | {
            family.name for family in text_string_to_metric_families(answer.text)
        }
        # Beat's own figure, listed from the first scrape on.
        assert "flowplatform_schedule_fire_lag_seconds" in names
        assert samples[("flowplatform_active_runs", (("flow", minimal_flow["slug"]),))] == 1
        assert ("flowplatform_queue_depth", (("queue", settings.CELERY_TASK_DEFAULT_QUEUE),)) in (
            samples
        )
    finally:
        beat.stop()
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(
            beat.env["FLOWPLATFORM_BEAT_LOCK_KEY"]
        )
