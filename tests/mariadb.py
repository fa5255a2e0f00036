"""MariaDB for the tests: 127.0.0.1:3306, root without a password (``.ci/run`` starts it).

Each test run works in a database of its own, named after the run's PostgreSQL database
(``DATABASE_URL``: ``fp_x`` gives ``test_fp_x``), made afresh when the session starts and
dropped when it ends, so runs with different ``DATABASE_URL`` never collide. Use the
``mariadb_url`` fixture (import it into the test module) and :func:`execute`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import MySQLdb
import pytest

#: The server, without a database (override to test against another MariaDB or MySQL).
MARIADB_SERVER = os.environ.get("FLOWPLATFORM_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306")


def run_database() -> str:
    """The MariaDB database of this test run."""
    name = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/") or "flowplatform"
    return re.sub(r"\W", "_", f"test_{name}")[:64]


def admin_connection(database: str | None = None) -> Any:
    parts = urlsplit(MARIADB_SERVER)
    options = {"database": database} if database else {}
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        charset="utf8mb4",
        **options,
    )
    conn.autocommit(True)
    return conn


def execute(statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement in the run's database (autocommit) and return its rows."""
    conn = admin_connection(run_database())
    try:
        cursor = conn.cursor()
        cursor.execute(statement, params)
        rows = list(cursor.fetchall() or [])
        cursor.close()
        return rows
    finally:
        conn.close()


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """``mysql://`` URL of the run's MariaDB database (created afresh, dropped afterwards)."""
    database = run_database()
    conn = admin_connection()
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    yield f"{MARIADB_SERVER}/{database}"
    conn = admin_connection()
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()
