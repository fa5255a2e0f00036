"""What the README tells a newcomer to run works as written: ``make web`` serves a styled admin
and a working Swagger UI with DEBUG off, and ``migrate`` copes with a database nobody created.

Each case starts the real processes, on the production settings module."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import wait_until
from tests.test_startup import A_REAL_KEY, ROOT, base_env, manage, run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_web(tmp_path: Path) -> Iterator[str]:
    """``make web`` as the README runs it (DEBUG off), on a free port; its base URL."""
    address = f"127.0.0.1:{free_port()}"
    env = base_env(
        tmp_path,
        FLOWPLATFORM_SECRET_KEY=A_REAL_KEY,
        FLOWPLATFORM_API_DOCS_PUBLIC="true",  # Swagger UI without a log-in, for this test
    )
    process = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "web", f"WEB_ADDR={address}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: make, runserver and its reloader
    )
    base = f"http://{address}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/static/admin/css/base.css", timeout=2).ok
        except requests.ConnectionError:
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode()) from None  # type: ignore[union-attr]
            return False

    try:
        wait_until(up, timeout=60, interval=0.2, message="make web did not serve static files")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_make_web_serves_the_admin_styles_and_swagger_ui_with_debug_off(make_web: str) -> None:
    login = requests.get(f"{make_web}/admin/login/", timeout=5)
    assert login.status_code == 200
    styles = re.findall(r'href="(/static/[^"]+\.css)"', login.text)
    assert styles and all(requests.get(make_web + s, timeout=5).ok for s in styles)
    docs = requests.get(f"{make_web}/api/docs/", timeout=5)
    assert docs.status_code == 200
    assets = re.findall(r'(/static/drf_spectacular_sidecar/[^"\']+\.(?:js|css))', docs.text)
    assert any("swagger-ui-bundle.js" in a for a in assets), docs.text
    for asset in assets:
        assert requests.get(make_web + asset, timeout=5).status_code == 200, asset


def postgres_env(tmp_path: Path, url: str) -> dict[str, str]:
    return base_env(tmp_path, DATABASE_URL=url, FLOWPLATFORM_SECRET_KEY=A_REAL_KEY)


def test_migrate_creates_a_missing_database(tmp_path: Path) -> None:
    name = f"fp_newcomer_{uuid.uuid4().hex[:8]}"
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        result = run(manage("migrate", "--noinput"), postgres_env(tmp_path, url), timeout=300)
        assert result.returncode == 0, result.stderr
        assert f"Created the database '{name}'." in result.stdout
        again = run(manage("migrate", "--noinput"), postgres_env(tmp_path, url), timeout=300)
        assert again.returncode == 0 and "Created" not in again.stdout
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Nobody listens there.
        ("postgres://postgres:pw-s3cret@127.0.0.1:1/flowplatform", "cannot connect"),
        # A role that may not create databases (it does not even exist).
        ("postgres://no_such_role_x:pw-s3cret@127.0.0.1:5432/fp_nope", "role"),
    ],
)
def test_migrate_says_in_one_line_what_is_wrong(tmp_path: Path, url: str, expected: str) -> None:
    result = run(manage("migrate", "--noinput"), postgres_env(tmp_path, url))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: ") and expected in lines[0]
    assert "DATABASE_URL" in lines[0] and "s3cret" not in result.stderr
