"""Flow data on a local directory is the platform user's alone: files 0600, directories 0700,
whatever the process umask — checked on the files a real run leaves behind."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from pytest_httpserver import HTTPServer

from flows.engine.handoff import run_prefix
from flows.flowfile import apply_flow_file
from flows.services import start_run, wait_for_run
from tests.conftest import WorkerProcess
from tests.flows.helpers import (
    SOURCE_DB_URL,
    accepting_crm,
    add_connection,
    orders_table,
    point_minimal_flow_at,
)


def assert_private(run_id: Any) -> None:
    """The run's directory, and every directory and file in it, belong to the user alone."""
    run_dir = Path(settings.FLOW_DATA_STORAGE) / run_prefix(str(run_id))
    paths = [run_dir, *run_dir.rglob("*")]
    mode = {path: oct(stat.S_IMODE(path.stat().st_mode)) for path in paths}
    files = [path for path in paths if path.is_file()]
    assert files, f"the run left no flow data under {run_dir}"
    assert {mode[path] for path in files} == {"0o600"}, mode
    assert {mode[path] for path in paths if path.is_dir()} == {"0o700"}, mode


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual 022: without the storage's own modes, files would be world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.worker
def test_a_run_on_a_worker_leaves_private_files(
    worker: WorkerProcess, httpserver: HTTPServer, minimal_flow: dict[str, Any]
) -> None:
    # The worker runs with the umask the test session started with (022 on the usual system).
    add_connection("warehouse", SOURCE_DB_URL)
    accepting_crm(httpserver)
    with orders_table(300) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = wait_for_run(start_run("paid-orders-to-crm"), timeout=60)
    assert run.status == "succeeded", run.error
    assert_private(run.id)


def test_an_in_process_run_leaves_private_files(
    transactional_db: None,
    eager: None,
    permissive_umask: None,
    httpserver: HTTPServer,
    minimal_flow: dict[str, Any],
) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    accepting_crm(httpserver)
    with orders_table(60) as table:
        apply_flow_file(point_minimal_flow_at(minimal_flow, table.name))
        run = start_run("paid-orders-to-crm")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert_private(run.id)
