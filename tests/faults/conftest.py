"""Fault-test fixtures: workers we may kill, with short heartbeats, and no other worker about."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from tests.conftest import WorkerProcess

FAULT_ENV = {"FLOWPLATFORM_HEARTBEAT_S": "1", "FLOWPLATFORM_STALE_AFTER_S": "3"}
STALE_AFTER_S = 3


@pytest.fixture
def fault_workers(
    worker_process: WorkerProcess, transactional_db: None
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start fault workers on demand; the session worker is stopped meanwhile."""
    worker_process.stop()
    started: list[WorkerProcess] = []

    def start(concurrency: int = 1) -> WorkerProcess:
        worker = WorkerProcess(
            settings.DATABASES["default"]["NAME"], concurrency=concurrency, extra_env=FAULT_ENV
        )
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.kill()
    worker_process.start()
