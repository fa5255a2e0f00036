"""A worker process holds at most one platform database connection at rest (counted by the
database server, per process of a real worker)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from pytest_httpserver import HTTPServer

from flows.flowfile import apply_flow_file
from flows.models import FlowRun
from flows.services import start_run, wait_for_run
from tests.conftest import PG_URL, WorkerProcess, wait_until
from tests.flows.helpers import (
    SOURCE_DB_URL,
    accepting_crm,
    add_connection,
    orders_table,
    point_minimal_flow_at,
)

pytestmark = pytest.mark.worker


def tcp_sockets(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of each established TCP connection process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == "01":  # established
                local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                found.append((local, remote))
    return found


def platform_connections(pids: list[int]) -> dict[int, int]:
    """Per process, its connections to the platform database, as PostgreSQL lists them
    (``pg_stat_activity``: the source database's are not counted); when the tests reach it
    through PgBouncer, its connections to the PgBouncer port."""
    db = settings.DATABASES["default"]
    sockets = {pid: tcp_sockets(pid) for pid in pids}
    if str(db.get("PORT") or 5432) != "5432":
        bouncer = int(db["PORT"])
        return {pid: sum(1 for _, remote in sockets[pid] if remote == bouncer) for pid in pids}
    with psycopg.connect(f"{PG_URL}/postgres".replace("postgres://", "postgresql://", 1)) as conn:
        ports = {
            port
            for (port,) in conn.execute(
                "SELECT client_port FROM pg_stat_activity WHERE datname = %s", [db["NAME"]]
            )
        }
    return {pid: sum(1 for local, _ in sockets[pid] if local in ports) for pid in pids}


def test_each_worker_process_holds_at_most_one_platform_connection_at_rest(
    worker: WorkerProcess, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    accepting_crm(httpserver)
    add_connection("warehouse", SOURCE_DB_URL)
    assert worker.process is not None
    processes = [worker.process.pid, *worker.pool_children()]
    with orders_table(300) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        runs = [start_run("paid-orders-to-crm") for _ in range(4)]
        busiest = dict.fromkeys(processes, 0)
        while not all(FlowRun.objects.get(pk=r.pk).is_finished for r in runs):
            for pid, count in platform_connections(processes).items():
                busiest[pid] = max(busiest[pid], count)
        for run in runs:
            assert wait_for_run(run, timeout=60).status == "succeeded"

    def at_rest() -> dict[int, int] | None:
        counts = platform_connections(processes)
        return counts if all(count <= 1 for count in counts.values()) else None

    # (a heartbeat thread lets its connection go within a second of its last node)
    counts = wait_until(
        at_rest,
        10,
        0.2,
        f"more than one connection per process at rest: {platform_connections(processes)}",
    )
    print(
        f"platform connections per worker process: at rest {counts}, at most while running {busiest}"
    )
    assert sum(counts.values()) >= 1  # (kept between tasks: not reopened per task)


def test_a_session_the_server_ends_between_two_runs_is_replaced_by_the_next_task(
    worker: WorkerProcess, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    """The worker skips the per-task ``SELECT 1`` for a connection its previous task left clean
    a moment ago; a session the server ended meanwhile is still found (its socket says so)."""
    accepting_crm(httpserver)
    add_connection("warehouse", SOURCE_DB_URL)
    assert worker.process is not None
    processes = [worker.process.pid, *worker.pool_children()]
    db = settings.DATABASES["default"]
    bouncer = str(db.get("PORT") or 5432) != "5432"
    admin_url = f"{PG_URL}/postgres".replace("postgres://", "postgresql://", 1)
    with orders_table(30) as table, psycopg.connect(admin_url, autocommit=True) as admin:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        assert wait_for_run(start_run("paid-orders-to-crm"), timeout=60).status == "succeeded"
        # The sessions serving the worker (through PgBouncer: every session of the database).
        ports = [local for pid in processes for local, _ in tcp_sockets(pid)]
        sessions = [
            pid
            for (pid, port) in admin.execute(
                "SELECT pid, client_port FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [db["NAME"]],
            )
            if bouncer or port in ports
        ]
        assert sessions
        for pid in sessions:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_until(
            lambda: (
                not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", [sessions]
                ).fetchone()
            ),
            10,
            0.05,
            "the sessions did not end",
        )
        runs = [start_run("paid-orders-to-crm") for _ in range(2)]
        for run in runs:
            assert wait_for_run(run, timeout=60).status == "succeeded"
