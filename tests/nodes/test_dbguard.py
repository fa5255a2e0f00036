"""The database guard: database hosts pass the outbound address policy, URL parameters cannot
redirect a connection, SQLite reads only allowed directories. Checked on save and on use."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nodes import dbguard, netguard
from nodes.builtin import pg_pool
from nodes.builtin.sql_query import SqlQueryNode
from nodes.sdk import ConnectionInfo, ExecutionContext, NodeError
from nodes.urls import ConnectionURLError, validate_url

PG_URL = os.environ.get("FLOWPLATFORM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG = PG_URL.rpartition("/")[0]  # postgresql://postgres@127.0.0.1:5432

METADATA = "169.254.169.254"
#: The metadata address in every IPv6 form that carries an IPv4 address.
METADATA_FORMS = [
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "::169.254.169.254",  # IPv4-compatible
    "64:ff9b::169.254.169.254",  # NAT64
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",  # 6to4
    "fd00:ec2::254",
]


def query(url: str, sql: str = "select 1 as ok", **config: Any) -> list[dict[str, Any]]:
    node = SqlQueryNode({"connection": "db", "query": sql, **config})
    context = ExecutionContext(connection_lookup=lambda name: ConnectionInfo(name, url))
    return [row for batch in node.execute(context, {}) for row in batch]


def refused_on_save(url: str) -> str:
    with pytest.raises(ConnectionURLError) as caught:
        validate_url(url)
    return str(caught.value)


def refused_on_use(url: str) -> NodeError:
    with pytest.raises(NodeError) as caught:
        query(url)
    return caught.value


@pytest.fixture(autouse=True)
def no_kept_connections() -> None:
    pg_pool.clear()  # every test connects afresh, through the guard


@pytest.fixture
def private_allowed(settings: Any) -> None:
    settings.FLOWPLATFORM_DB_ALLOW_PRIVATE = True


# --- URL parameters that redirect the connection -------------------------------------------
@pytest.mark.parametrize(
    ("suffix", "name"),
    [
        ("?host=/var/run/postgresql", "host"),
        ("?hostaddr=169.254.169.254", "hostaddr"),
        ("?hostaddr=127.0.0.1", "hostaddr"),
        ("?service=warehouse", "service"),
        ("?passfile=/etc/shadow", "passfile"),
        ("?sslmode=require&sslkey=/etc/ssl/private/k.pem", "sslkey"),
        ("?sslcert=/etc/x.pem", "sslcert"),
        ("?sslrootcert=/etc/x.pem", "sslrootcert"),
        ("?sslcrl=/etc/x.crl", "sslcrl"),
        ("?h%6Fst=/tmp", "host"),  # percent-encoded names are decoded, as libpq does
        ("?replication=database", "replication"),
    ],
)
def test_parameters_that_redirect_the_connection_are_refused_naming_them(
    private_allowed: None, suffix: str, name: str
) -> None:
    url = f"{PG_URL}{suffix}"
    assert f"parameter '{name}' is not allowed" in refused_on_save(url)
    error = refused_on_use(url)
    assert f"parameter '{name}' is not allowed" in str(error) and error.permanent


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db", "Unix-socket hosts are not allowed"),
        ("postgresql://u@%40abstract/db", "Unix-socket hosts are not allowed"),
        ("postgresql://u@db1,db2/db", "one host"),
        ("postgresql://u@127.0.0.1/db?frobnicate=1", "parameter 'frobnicate' is not supported"),
    ],
)
def test_socket_hosts_several_hosts_and_unknown_parameters_are_refused(
    private_allowed: None, url: str, message: str
) -> None:
    assert message in refused_on_save(url)
    assert message in str(refused_on_use(url))


def test_harmless_parameters_still_work(private_allowed: None) -> None:
    url = f"{PG_URL}?application_name=reports&connect_timeout=5&sslmode=prefer"
    assert validate_url(url) == url
    assert query(url) == [{"ok": 1}]


# --- the address policy ---------------------------------------------------------------------
@pytest.mark.parametrize("address", METADATA_FORMS)
def test_metadata_addresses_are_refused_in_every_form_even_when_private_is_allowed(
    private_allowed: None, address: str
) -> None:
    host = f"[{address}]" if ":" in address else address
    url = f"postgresql://u:pw@{host}:80/db"
    assert "a link-local or metadata address" in refused_on_save(url)
    error = refused_on_use(url)
    assert "a link-local or metadata address" in str(error) and error.permanent
    assert "pw" not in str(error)


@pytest.mark.parametrize("address", METADATA_FORMS)
def test_a_name_resolving_to_an_embedded_metadata_address_is_refused(
    private_allowed: None, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setattr(netguard, "_resolve", lambda host, port: [address])
    url = "postgresql://u@db.example.test/db"
    assert "a link-local or metadata address" in refused_on_save(url)
    assert "a link-local or metadata address" in str(refused_on_use(url))
    with pytest.raises(NodeError, match="a link-local or metadata address"):
        netguard.check_url("http://crm.example.test/", allow_private=True)


def test_private_database_hosts_need_the_setting(settings: Any) -> None:
    settings.FLOWPLATFORM_DB_ALLOW_PRIVATE = False
    message = refused_on_save(PG_URL)
    assert "a private, loopback or reserved address" in message
    assert "FLOWPLATFORM_DB_ALLOW_PRIVATE" in message
    assert "a private, loopback or reserved address" in str(refused_on_use(PG_URL))
    settings.FLOWPLATFORM_DB_ALLOW_PRIVATE = True
    assert query(PG_URL) == [{"ok": 1}]


def test_the_connection_goes_to_the_address_that_was_checked(
    private_allowed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name exists only for the guard's resolver: libpq reaches the server only because it
    # is handed the checked address, never resolving the name again itself.
    resolved: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(netguard, "_resolve", resolve)
    url = PG_URL.replace("127.0.0.1", "warehouse.rebind.invalid")
    assert query(url) == [{"ok": 1}]
    assert resolved == ["warehouse.rebind.invalid"]


def test_a_rebinding_name_is_refused_when_it_turns_to_metadata(
    private_allowed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([["127.0.0.1"], [METADATA]])
    monkeypatch.setattr(netguard, "_resolve", lambda host, port: next(answers))
    url = PG_URL.replace("127.0.0.1", "warehouse.rebind.invalid")
    validate_url(url)  # saved while the name pointed at an allowed address
    assert "resolves to 169.254.169.254" in str(refused_on_use(url))


def test_an_unresolvable_host_can_be_saved_and_fails_on_use_not_permanently() -> None:
    url = "postgresql://u@no-such-host.invalid/db"
    assert validate_url(url) == url
    error = refused_on_use(url)
    assert "cannot resolve database host" in str(error) and not error.permanent


# --- SQLite directories ---------------------------------------------------------------------
@pytest.fixture
def sqlite_dir(tmp_path: Path, settings: Any) -> Path:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    settings.FLOWPLATFORM_SQLITE_DIRS = [str(allowed)]
    for path in (allowed / "ok.sqlite3", tmp_path / "outside.sqlite3"):
        with sqlite3.connect(path) as conn:
            conn.execute("create table t (n integer)")
            conn.execute("insert into t values (7)")
        conn.close()
    return allowed


def test_sqlite_files_inside_an_allowed_directory_are_read(sqlite_dir: Path) -> None:
    url = f"sqlite:///{sqlite_dir / 'ok.sqlite3'}"
    assert validate_url(url) == url
    assert query(url, "select n from t") == [{"n": 7}]


@pytest.mark.parametrize(
    "relative",
    ["../outside.sqlite3", "link.sqlite3", "sub/../../outside.sqlite3", "/etc/passwd"],
)
def test_sqlite_files_outside_the_allowed_directories_are_refused(
    sqlite_dir: Path, relative: str
) -> None:
    (sqlite_dir / "link.sqlite3").symlink_to(sqlite_dir.parent / "outside.sqlite3")
    url = f"sqlite:///{relative if relative.startswith('/') else sqlite_dir / relative}"
    assert "only inside FLOWPLATFORM_SQLITE_DIRS" in refused_on_save(url)
    error = refused_on_use(url)
    assert "only inside FLOWPLATFORM_SQLITE_DIRS" in str(error) and error.permanent


def test_without_allowed_directories_sqlite_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.FLOWPLATFORM_SQLITE_DIRS = []
    assert "none are configured" in refused_on_save(f"sqlite:///{tmp_path}/x.sqlite3")


def test_the_platform_database_is_never_a_connection(sqlite_dir: Path, monkeypatch: Any) -> None:
    platform_db = sqlite_dir / "flowplatform.sqlite3"
    monkeypatch.setattr(dbguard, "_platform_databases", lambda: {platform_db})
    message = refused_on_save(f"sqlite:///{sqlite_dir}/./flowplatform.sqlite3")
    assert re.search("the platform's own database", message)


# --- one reading of the URL: what libpq parses is what is checked ---------------------------
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@8.8.8.8/db#?passfile=/etc/shadow&sslrootcert=/etc/passwd"
        "&service=x&sslmode=verify-full",
        "postgresql://u:p@8.8.8.8/db?sslmode=require#&hostaddr=169.254.169.254",
        "postgresql://u:p@8.8.8.8/db#",
    ],
)
def test_a_fragment_cannot_hide_parameters_from_the_guard(url: str) -> None:
    assert "'#' is not allowed" in refused_on_save(url)
    error = refused_on_use(url)
    assert "'#' is not allowed" in str(error) and error.permanent


def test_every_parameter_libpq_parses_is_checked(
    private_allowed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Should a URL reader ever disagree with libpq on the query, libpq's own reading is checked.
    monkeypatch.setattr(dbguard, "_query_names", lambda query: [])
    assert "parameter 'passfile' is not allowed" in refused_on_save(f"{PG_URL}?passfile=/x")
    assert "parameter 'service' is not allowed" in refused_on_save(f"{PG_URL}?service=x")


def test_an_encoded_hash_in_a_password_is_accepted(private_allowed: None) -> None:
    url = "postgresql://u:pa%23ss@127.0.0.1:5432/db?sslmode=prefer"
    assert validate_url(url) == url


# --- the platform's own PostgreSQL database --------------------------------------------------
def platform_url(settings: Any, host: str | None = None) -> str:
    own = settings.DATABASES["default"]
    return (
        f"postgresql://{own['USER']}@{host or own['HOST']}:{own.get('PORT') or 5432}/{own['NAME']}"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("host", [None, "localhost", "127.0.0.1"])
def test_the_platform_postgresql_database_is_never_a_connection(
    private_allowed: None, settings: Any, host: str | None
) -> None:
    url = platform_url(settings, host)
    assert "the platform's own database" in refused_on_save(url)
    error = refused_on_use(url)
    assert "the platform's own database" in str(error) and error.permanent


@pytest.mark.django_db
def test_other_databases_on_the_platform_server_still_work(
    private_allowed: None, settings: Any
) -> None:
    own = settings.DATABASES["default"]
    url = f"postgresql://{own['USER']}@{own['HOST']}:{own.get('PORT') or 5432}/postgres"
    assert validate_url(url) == url
    assert query(url) == [{"ok": 1}]
    assert query(PG_URL) == [{"ok": 1}]
