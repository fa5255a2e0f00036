"""Between two tasks, a worker health-checks its platform connection (``SELECT 1``) only when
the previous task did not leave it clean a moment ago or something waits on its socket
(``flowplatform.celery``); a connection the server terminated is still found and replaced.
Driven in this process through the worker's own task hooks, on PostgreSQL (directly or through
PgBouncer)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings  # noqa: F401 - read by a skipif condition
from django.db import connection

from flowplatform import celery as worker_hooks
from flows.models import Flow
from tests.conftest import PG_URL, wait_until

pytestmark = [
    pytest.mark.usefixtures("transactional_db"),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    """A connection of its own to the server (not the one under test)."""
    url = f"{PG_URL}/postgres".replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def a_task() -> None:
    """What a task does with the platform database, between the worker's hooks."""
    worker_hooks._before_task()
    Flow.objects.count()
    worker_hooks._after_task()


def test_no_health_check_for_a_connection_left_clean_a_moment_ago() -> None:
    a_task()
    worker_hooks._before_task()
    assert connection.health_check_done  # no SELECT 1 before the next query
    Flow.objects.count()
    worker_hooks._after_task()


def test_a_connection_left_longer_ago_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    a_task()
    monkeypatch.setattr(worker_hooks, "HEALTH_CHECK_AFTER_S", 0.0)
    worker_hooks._before_task()
    assert not connection.health_check_done  # the SELECT 1 goes before the next query
    Flow.objects.count()
    assert connection.health_check_done


@pytest.mark.skipif(
    "str(settings.DATABASES['default'].get('PORT') or 5432) != '5432'",
    reason="through PgBouncer the client connection outlives the server's session",
)
def test_a_connection_the_server_terminated_between_two_tasks_is_replaced(
    admin: psycopg.Connection,
) -> None:
    a_task()
    pid = backend_pid()
    worker_hooks._after_task()
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(
        lambda: (
            not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        ),
        10,
        0.05,
        "the backend did not end",
    )
    # within the second after the previous task: only its socket tells it is gone
    worker_hooks._before_task()
    assert not connection.health_check_done
    assert Flow.objects.count() >= 0  # the check failed, a new connection answered
    assert backend_pid() != pid


def test_a_terminated_session_is_recovered_through_any_pooler(
    admin: psycopg.Connection,
) -> None:
    """Whatever sits in between, the next task's queries work after the session ended."""
    a_task()
    pid = backend_pid()
    worker_hooks._after_task()
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(
        lambda: (
            not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        ),
        10,
        0.05,
        "the backend did not end",
    )
    worker_hooks._before_task()
    assert Flow.objects.count() >= 0
    worker_hooks._after_task()
