"""``manage.py checkconnections`` against the real PostgreSQL: a superuser, a restricted
read-only role, and roles that may write or reach server files."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from psycopg import sql

from nodes.crypto import encrypt
from nodes.models import Connection
from tests.flows.helpers import SOURCE_DB_URL, add_connection

pytestmark = pytest.mark.django_db

SERVER = SOURCE_DB_URL.rpartition("/")[0]  # postgresql://postgres@127.0.0.1:5432
DATABASE = SOURCE_DB_URL.rpartition("/")[2]


def admin_sql(*statements: sql.Composable) -> None:
    with psycopg.connect(SOURCE_DB_URL, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def table() -> Iterator[sql.Identifier]:
    name = sql.Identifier(f"nodes_check_{uuid.uuid4().hex[:8]}")
    admin_sql(sql.SQL("create table {} (id int)").format(name))
    yield name
    admin_sql(sql.SQL("drop table {}").format(name))


@pytest.fixture
def make_role(table: sql.Identifier) -> Iterator[Any]:
    """Create a login role that may read ``table``, with extra grants; dropped afterwards."""
    made: list[sql.Identifier] = []

    def make(*grants: str) -> str:
        name = f"fp_check_{uuid.uuid4().hex[:8]}"
        role = sql.Identifier(name)
        made.append(role)
        admin_sql(
            sql.SQL("create role {} login").format(role),
            sql.SQL("grant select on {} to {}").format(table, role),
            *(sql.SQL(grant).format(table=table, role=role) for grant in grants),
        )
        return name

    yield make
    for role in made:
        admin_sql(sql.SQL("drop owned by {}").format(role), sql.SQL("drop role {}").format(role))


def check(*names: str, fail: bool = False) -> str:
    out = StringIO()
    args = [*names, *(["--fail-on-warning"] if fail else [])]
    call_command("checkconnections", *args, stdout=out)
    return out.getvalue()


def test_a_superuser_connection_is_a_warning_on_the_command_line_and_stored() -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    output = check()
    assert "warehouse (postgresql): WARNING role 'postgres' is a superuser" in output
    stored = Connection.objects.get(name="warehouse").role_check
    assert stored["checked"] and "is a superuser" in stored["warnings"][0]
    with pytest.raises(CommandError, match=r"1 connection\(s\) with warnings"):
        check(fail=True)


def test_a_restricted_read_only_role_passes(make_role: Any) -> None:
    role = make_role()
    add_connection("reader", f"postgresql://{role}@127.0.0.1:5432/{DATABASE}")
    output = check("reader", fail=True)
    assert f"reader (postgresql): ok, role '{role}': read-only" in output
    assert Connection.objects.get(name="reader").role_check["warnings"] == []


@pytest.mark.parametrize(
    ("grants", "expected"),
    [
        (["grant insert on {table} to {role}"], "can write (INSERT, UPDATE, DELETE or TRUNCATE) 1"),
        (["grant delete, truncate on {table} to {role}"], "can write"),
        (["grant pg_read_server_files to {role}"], "is a member of pg_read_server_files"),
        (["grant pg_execute_server_program to {role}"], "pg_execute_server_program"),
        (["grant execute on function pg_read_file(text) to {role}"], "pg_read_file(text)"),
        (["grant execute on function lo_export(oid, text) to {role}"], "lo_export(oid,text)"),
        (["grant create on schema public to {role}"], "can CREATE in public"),
        (["alter role {role} createdb"], "has CREATEDB"),
    ],
)
def test_what_a_role_may_do_beyond_reading_is_a_warning(
    make_role: Any, grants: list[str], expected: str
) -> None:
    role = make_role(*grants)
    add_connection("reader", f"postgresql://{role}@127.0.0.1:5432/{DATABASE}")
    output = check()
    assert f"reader (postgresql): WARNING role '{role}'" in output
    assert expected in output
    with pytest.raises(CommandError):
        check(fail=True)


def test_stored_connections_the_guard_now_refuses_are_reported(
    settings: Any, tmp_path: Path
) -> None:
    settings.FLOWPLATFORM_SQLITE_DIRS = [str(tmp_path)]
    add_connection("old", f"sqlite:///{tmp_path}/orders.sqlite3")
    settings.FLOWPLATFORM_SQLITE_DIRS = []
    # Saved before URLs were checked: stored as it was typed.
    redirected = f"{SOURCE_DB_URL}?hostaddr=169.254.169.254"
    Connection.objects.create(
        name="legacy", scheme="postgresql", display_url="", encrypted_url=encrypt(redirected)
    )
    add_connection("crm", "https://crm.example.test")
    output = check()
    assert "old (sqlite): WARNING refused by the database guard: SQLite files are allowed" in output
    assert (
        "legacy (postgresql): WARNING refused by the database guard: "
        "connection URL parameter 'hostaddr' is not allowed"
    ) in output
    assert "crm (https): skipped, not a database connection" in output


def test_unknown_names_are_one_readable_line() -> None:
    with pytest.raises(CommandError, match="no connection named 'nope'"):
        check("nope")
