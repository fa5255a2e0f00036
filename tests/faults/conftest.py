"""Fault-test fixtures: workers we may kill, a real beat sending the reaper, and no other
worker about."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.conftest import WorkerProcess
from tests.scheduling.conftest import BeatProcess

#: Short heartbeats and leases, so that the tests killing workers recover in seconds. The tests
#: that measure recovery start their workers with ``defaults=True`` instead.
FAULT_ENV = {
    "FLOWPLATFORM_HEARTBEAT_S": "1",
    "FLOWPLATFORM_LEASE_TTL_S": "3",
    "FLOWPLATFORM_STALE_AFTER_S": "4",
}
STALE_AFTER_S = 4


@pytest.fixture
def fault_workers(
    worker_process: WorkerProcess, transactional_db: None
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start fault workers on demand (``defaults=True``: with the default heartbeat and lease
    settings); the session worker is stopped (the next test needing it starts it again)."""
    worker_process.stop()
    started: list[WorkerProcess] = []

    def start(concurrency: int = 1, defaults: bool = False) -> WorkerProcess:
        worker = WorkerProcess(
            settings.DATABASES["default"]["NAME"],
            concurrency=concurrency,
            extra_env=None if defaults else FAULT_ENV,
        )
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def reaper_beat(tmp_path: Path, transactional_db: None) -> Iterator[BeatProcess]:
    """A real ``celery beat`` sending the reaper on its default schedule."""
    key = f"test-fault-beat-{uuid.uuid4().hex[:8]}"
    beat = BeatProcess(tmp_path, key, lease_ttl_s=15)
    beat.env.pop("CELERY_BEAT_MAX_LOOP_INTERVAL")  # the default loop
    yield beat.start().wait_started()
    beat.stop()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(key)
