"""Shared fixtures: a real Celery worker process on Redis, and flow files."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations
from hypothesis import settings as hypothesis_settings

from flowplatform.audit.models import PURGE_FLAG
from flowplatform.celery import app as celery_app

#: Fixture modules every test may use: moto's S3 server (``s3_endpoint``, ``s3``, ``bucket``).
pytest_plugins = ["tests.s3"]

# Property tests explore the same cases on every run (CI is never red by chance) and keep no
# example database in the checkout.
hypothesis_settings.register_profile("flowplatform", derandomize=True, database=None)
hypothesis_settings.load_profile("flowplatform")

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432"
#: Set (to anything) to reach the test database through a PgBouncer in transaction mode,
#: from the test process and from the workers it starts (``make test`` runs the engine and
#: fault tests so).
PGBOUNCER = "FLOWPLATFORM_TEST_PGBOUNCER"


def platform_db_url(db_name: str | None = None) -> str:
    """The URL of the test database (or ``db_name``) as the test process reaches it now:
    PostgreSQL itself, or the PgBouncer in front of it."""
    db = settings.DATABASES["default"]
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{db.get('USER') or 'postgres'}@{host}:{port}/{db_name or db['NAME']}"


def wait_until(predicate: Any, timeout: float, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout}s")


class WorkerProcess:
    """A real ``celery worker`` subprocess bound to the test database and a private queue."""

    def __init__(
        self,
        db_name: str,
        concurrency: int = 2,
        name: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = Path(os.environ["FLOWPLATFORM_VAR_DIR"]) / f"{self.name}.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": platform_db_url(db_name),
            **(extra_env or {}),
        }
        self.args = [
            sys.executable, "-m", "celery", "-A", "flowplatform", "worker",
            "--loglevel", "INFO", "--concurrency", str(concurrency), "--pool", "prefork",
            "--hostname", self.name, "--queues", settings.CELERY_TASK_DEFAULT_QUEUE,
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> WorkerProcess:
        log = self.log_path.open("ab")
        # A session of its own, so that kill() can take down the main process and its pool.
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )
        wait_until(self._ready, timeout, 0.25, f"worker did not start; see {self.log_path}")
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"worker exited with {self.process.returncode}; see {self.log_path}")
        replies = celery_app.control.ping(destination=[self.name], timeout=0.5)
        return bool(replies)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def pool_children(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def idle(self) -> bool:
        """No task is executing on this worker (asked over the broker's control channel); a
        worker that is not running is idle."""
        if self.process is None or self.process.poll() is not None:
            return True
        replies = celery_app.control.inspect(destination=[self.name], timeout=1).active()
        return bool(replies) and not any(replies.values())

    def settle(self, timeout: float = 20) -> None:
        """Wait, up to ``timeout``, for the tasks a test left running to end (a partition
        still stopping after its run failed, a heartbeat's last renewal) so that they do not
        hold table locks against the test database's flush. A task still running after that
        (a test may leave one busy on purpose) is left alone."""
        deadline = time.monotonic() + timeout
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.1)


class PgBouncer:
    """A real ``pgbouncer`` in transaction mode on a loopback port, in front of the local
    PostgreSQL (Debian's package: no prepared statements in this mode)."""

    def __init__(self) -> None:
        # (its own directory under /tmp: when run as root, pgbouncer drops to postgres)
        self.dir = Path(tempfile.mkdtemp(prefix="flowplatform-pgbouncer-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            pytest.fail(
                f"{PGBOUNCER} is set, but pgbouncer is not installed (apt-get install pgbouncer)"
            )
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n* = host=127.0.0.1 port=5432\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 40\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        args = [binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, "postgres")
            args[1:1] = ["-u", "postgres"]
        log = (self.dir / "pgbouncer.log").open("ab")
        self.process = subprocess.Popen(
            args, cwd=self.dir, stdout=log, stderr=log, start_new_session=True
        )
        wait_until(self._accepts, 15, 0.1, f"pgbouncer did not start; see {self.dir}")
        return self

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"pgbouncer exited with {self.process.returncode}; see {self.dir}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _route_platform_db(host: str, port: int) -> None:
    from django.db import connections

    for entry in (settings.DATABASES["default"], connections["default"].settings_dict):
        entry["HOST"], entry["PORT"] = host, str(port)
    connections.close_all()


#: Tables the flush after a committed-data test leaves alone: the ``post_migrate`` signal that
#: follows every flush writes them back row for row (the installed models' content types and
#: permissions; no test adds any of its own).
KEPT_BY_FLUSH = frozenset({"django_content_type", "auth_permission"})


def _flush_by_delete(
    ops: Any,
    style: Any,
    tables: list[str],
    *,
    reset_sequences: bool = False,
    allow_cascade: bool = False,
) -> list[str]:
    """PostgreSQL's flush of the test database as ``DELETE`` statements in one transaction,
    instead of Django's ``TRUNCATE`` of every table.

    The end state is the same (every platform table empty, sequences not reset), but a
    ``TRUNCATE`` costs new files for each of the ~35 tables and their ~120 indexes, whether
    they hold rows or not (0.76 s a flush on the CI machine, against 0.01 s for the deletes
    of the few rows a test leaves). The foreign keys are all deferrable (checked at commit,
    when every table is empty); the audit trail's append-only trigger lets the deletes through
    as it does the retention purge's."""
    if reset_sequences or allow_cascade:
        return TRUNCATE_FLUSH(
            ops, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
    emptied = [table for table in tables if table not in KEPT_BY_FLUSH]
    return [
        "SET CONSTRAINTS ALL DEFERRED",
        f"SELECT set_config('{PURGE_FLAG}', 'on', true)",  # this transaction only
        *(f"DELETE FROM {ops.quote_name(table)}" for table in emptied),
    ]


#: Django's own: the flushes that reset sequences or cascade to other apps' tables.
TRUNCATE_FLUSH = PostgresOperations.sql_flush


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The test database (pytest-django's), flushed after each committed-data test by
    ``_flush_by_delete``; with ``FLOWPLATFORM_TEST_PGBOUNCER`` set, reached through a
    PgBouncer in transaction mode for the whole session (created and dropped directly)."""
    PostgresOperations.sql_flush = _flush_by_delete  # type: ignore[method-assign]
    try:
        if not os.environ.get(PGBOUNCER):
            yield
            return
        bouncer = PgBouncer().start()
        with django_db_blocker.unblock():
            _route_platform_db("127.0.0.1", bouncer.port)
        try:
            yield
        finally:
            with django_db_blocker.unblock():
                _route_platform_db("127.0.0.1", 5432)
            bouncer.stop()
    finally:
        PostgresOperations.sql_flush = TRUNCATE_FLUSH  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def _clean_broker() -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture(scope="session")
def worker_process(
    django_db_setup: None, django_db_blocker: Any, _clean_broker: None
) -> Iterator[WorkerProcess]:
    """One worker for the session, on the test database (created by pytest-django), started
    by the first test that needs it running (``worker``). A test that must have the queue to
    itself stops it (the fault tests); the next test that needs it starts it again, so a
    series of such tests costs no restart in between."""
    worker = WorkerProcess(settings.DATABASES["default"]["NAME"])
    yield worker
    worker.stop()


@pytest.fixture
def worker(worker_process: WorkerProcess, transactional_db: None) -> Iterator[WorkerProcess]:
    """A running worker; the test's data is committed so that the worker sees it. After the
    test, the tasks it left running end before its data is flushed."""
    if not worker_process.running():
        worker_process.start()
    yield worker_process
    worker_process.settle()


@pytest.fixture
def eager() -> Iterator[None]:
    """Execute canvases in-process (the embedded mode) for this test."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


#: The connections the example flow files name; a flow naming a missing one cannot be saved.
EXAMPLE_CONNECTIONS = {
    "warehouse": "postgresql://postgres@127.0.0.1:5432/test",
    "crm": "http://127.0.0.1:9/",  # discard: nothing listens
}


@pytest.fixture
def example_connections(db: None) -> None:
    """``warehouse`` and ``crm``, unless the test made them already."""
    from nodes.models import Connection

    for name, url in EXAMPLE_CONNECTIONS.items():
        if not Connection.objects.filter(name=name).exists():
            connection = Connection(name=name)
            connection.set_url(url)
            connection.save()


@pytest.fixture
def minimal_flow() -> dict[str, Any]:
    """The minimal flow as a flow file (a fresh copy per test)."""
    data = json.loads((ROOT / "examples" / "paid-orders.json").read_text())
    return copy.deepcopy(data)
