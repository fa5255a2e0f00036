"""Actors of the scheduling tests: a stored flow, schedules, and real ``celery beat`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from flows.flowfile import apply_flow_file
from flows.models import Flow
from scheduling.models import FlowSchedule
from tests.conftest import ROOT, WorkerProcess, platform_db_url, wait_until
from tests.flows.helpers import SOURCE_DB_URL, add_connection

#: A one-node flow whose single row exists only when the data interval reached the query
#: as bound parameters and is exactly ``length`` long; ``sleep`` makes a run slow.
TICK_FLOW: dict[str, Any] = {
    "slug": "tick",
    "name": "Tick",
    "nodes": [
        {
            "key": "window",
            "type": "sql_query",
            "config": {
                "connection": "warehouse",
                "query": (
                    "select %(interval_start)s::timestamptz as interval_start,"
                    " %(interval_end)s::timestamptz as interval_end, pg_sleep(%(sleep)s) as slept"
                    " where %(interval_end)s::timestamptz - %(interval_start)s::timestamptz"
                    " = %(length)s::interval"
                ),
                "params": {"sleep": 0, "length": "2 seconds"},
            },
        }
    ],
}


@pytest.fixture
def flow(example_connections: None, minimal_flow: dict[str, Any]) -> Flow:
    """The minimal flow, stored; its runs are never executed (no worker): they stay queued."""
    return apply_flow_file(minimal_flow)[0]


def make_schedule(flow: Flow, **fields: Any) -> FlowSchedule:
    """A validated, saved schedule (with its beat entry)."""
    schedule = FlowSchedule(flow=flow, **fields)
    schedule.full_clean()
    schedule.save()
    return schedule


@pytest.fixture
def tick_flow(worker: WorkerProcess) -> Flow:
    """The tick flow, committed for the worker, reading from the test PostgreSQL."""
    add_connection("warehouse", SOURCE_DB_URL)
    return apply_flow_file(TICK_FLOW)[0]


class BeatProcess:
    """A real ``celery beat`` subprocess with the guarded scheduler, on the test database."""

    def __init__(self, tmp_path: Path, lease_key: str, lease_ttl_s: int = 3) -> None:
        self.name = f"beat-{uuid.uuid4().hex[:8]}"
        self.log_path = Path(os.environ["FLOWPLATFORM_VAR_DIR"]) / f"{self.name}.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": platform_db_url(),
            "CELERY_BEAT_MAX_LOOP_INTERVAL": "1",
            "FLOWPLATFORM_BEAT_LOCK_KEY": lease_key,
            "FLOWPLATFORM_BEAT_LOCK_TTL_S": str(lease_ttl_s),
        }
        self.args = [
            sys.executable, "-m", "celery", "-A", "flowplatform", "beat",
            "--loglevel", "INFO", "-S", "scheduling.beat:GuardedScheduler",
            "--schedule", str(tmp_path / f"{self.name}-schedule"),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BeatProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )
        return self

    def wait_started(self, timeout: float = 30) -> BeatProcess:
        wait_until(
            lambda: self._alive() and "beat: Starting" in self.log(),
            timeout,
            0.2,
            f"beat did not start; see {self.log_path}",
        )
        return self

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"beat exited with {self.process.returncode}; see {self.log_path}")
        return True

    def sent(self, task_name: str) -> int:
        """How many times this beat sent the entry ``task_name``."""
        return self.log().count(f"Sending due task {task_name} ")

    def leading(self) -> bool:
        return "holding the beat lease" in self.log()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease release."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def beats(tmp_path: Path) -> Iterator[Callable[..., BeatProcess]]:
    """Start beat processes (``beats(lease_key=...)``); all are stopped after the test."""
    started: list[BeatProcess] = []
    default_key = f"test-beat-lease-{uuid.uuid4().hex[:8]}"

    def start(lease_key: str | None = None, lease_ttl_s: int = 3) -> BeatProcess:
        beat = BeatProcess(tmp_path, lease_key or default_key, lease_ttl_s).start()
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for beat in started:
        client.delete(beat.env["FLOWPLATFORM_BEAT_LOCK_KEY"])


def moments(values: list[datetime]) -> list[str]:
    """Datetimes as short UTC strings, for readable assertion failures."""
    return [f"{v:%Y-%m-%d %H:%M:%S}" for v in values]
