"""MariaDB/MySQL connections and the database guard (save time and use), the account checks
of ``manage.py checkconnections`` and Test connection, against the real MariaDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from nodes import dbguard, netguard
from nodes.builtin.sql_query import SqlQueryNode
from nodes.models import Connection
from nodes.probe import probe
from nodes.sdk import ConnectionInfo, ExecutionContext, NodeError
from nodes.urls import ConnectionURLError, mask_url, validate_url
from tests.flows.helpers import add_connection
from tests.mariadb import execute, run_database
from tests.mariadb import mariadb_url as mariadb_url

SERVER = "mysql://root@127.0.0.1:3306"
PASSWORD = "s3cret-Pa55word"


def query(url: str, sql: str = "SELECT 1 AS ok") -> list[dict[str, Any]]:
    node = SqlQueryNode({"connection": "db", "query": sql})
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


# --- URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
def test_mysql_and_mariadb_urls_are_saved_and_masked(scheme: str) -> None:
    url = f"{scheme}://reader:{PASSWORD}@127.0.0.1:3306/shop?charset=utf8mb4&connect_timeout=5"
    assert validate_url(url) == url
    assert PASSWORD not in mask_url(url)


@pytest.mark.parametrize(
    ("parameter", "reason"),
    [
        ("unix_socket=/run/mysqld/mysqld.sock", "Unix socket"),
        ("read_default_file=/etc/mysql/debian.cnf", "option file"),
        ("read_default_group=client", "option files"),
        ("init_command=SET%20GLOBAL%20general_log%3D1", "statement of its own"),
        ("local_infile=1", "read files on the worker"),
        ("ssl_key=/etc/ssl/private/key.pem", "reads a file"),
        ("plugin_dir=/tmp", "plugins"),
        ("host=10.0.0.1", "replaces the host"),
        ("unix%5Fsocket=/tmp/x.sock", "Unix socket"),  # percent-encoded name
    ],
)
def test_parameters_that_redirect_the_connection_are_refused_naming_them(
    parameter: str, reason: str
) -> None:
    url = f"mysql://root:{PASSWORD}@127.0.0.1:3306/shop?{parameter}"
    name = parameter.split("=")[0].replace("%5F", "_")
    saved = refused_on_save(url)
    assert f"parameter '{name}' is not allowed" in saved and reason in saved
    used = refused_on_use(url)
    assert used.permanent and f"'{name}'" in str(used)
    assert PASSWORD not in saved + str(used)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql:///shop", "need a host"),
        ("mysql://root@127.0.0.1:3306/shop?sslmode=require", "'sslmode' is not supported"),
        ("mysql://root@127.0.0.1:3306/shop?charset=utf8;drop", "not a charset name"),
        ("mysql://root@127.0.0.1:3306/shop?connect_timeout=0", "1 to 3600 seconds"),
        ("mysql://root@127.0.0.1:3306/a/b", "one database"),
        ("mysql://root@127.0.0.1:0/shop", "invalid port"),
        # A URL parser drops a fragment; one reading for all: '#' is refused.
        ("mysql://root@127.0.0.1:3306/shop#?unix_socket=/run/mysqld.sock", "'#' is not allowed"),
        ("mariadb://root:pw@127.0.0.1:3306/shop#", "'#' is not allowed"),
    ],
)
def test_malformed_urls_are_refused_on_save(url: str, message: str) -> None:
    assert message in refused_on_save(url)


def test_metadata_addresses_are_refused_on_save_and_use_even_when_private_is_allowed(
    settings: Any,
) -> None:
    settings.FLOWPLATFORM_DB_ALLOW_PRIVATE = True
    url = f"mysql://root:{PASSWORD}@169.254.169.254:3306/shop"
    assert "169.254.169.254" in refused_on_save(url)
    error = refused_on_use(url)
    assert error.permanent and "169.254.169.254" in str(error) and PASSWORD not in str(error)


def test_private_database_hosts_need_the_setting(settings: Any, mariadb_url: str) -> None:
    settings.FLOWPLATFORM_DB_ALLOW_PRIVATE = False
    assert "FLOWPLATFORM_DB_ALLOW_PRIVATE" in refused_on_save(mariadb_url)
    assert refused_on_use(mariadb_url).permanent
    settings.FLOWPLATFORM_DB_ALLOW_PRIVATE = True
    assert query(mariadb_url) == [{"ok": 1}]


def test_the_connection_goes_to_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch, mariadb_url: str
) -> None:
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])

    def resolve(host: str, port: int) -> list[str]:
        assert host == "db.example.test"
        return next(answers)

    monkeypatch.setattr(netguard, "resolve", resolve)
    url = mariadb_url.replace("127.0.0.1", "db.example.test")
    assert query(url) == [{"ok": 1}]  # connected to 127.0.0.1, the checked address
    error = refused_on_use(url)  # the name now points at the metadata address
    assert error.permanent and "169.254.169.254" in str(error)


def test_an_unresolvable_host_can_be_saved_and_fails_on_use_not_permanently() -> None:
    url = "mysql://root@no-such-host.invalid:3306/shop"
    assert validate_url(url) == url
    error = refused_on_use(url)
    assert not error.permanent and "cannot resolve" in str(error)


def test_the_target_holds_the_decoded_credentials_and_database() -> None:
    target = dbguard.mysql_parts("mysql://r%40der:p%2Fw@127.0.0.1:3307/sh%20op?charset=latin1")
    assert (target.user, target.password, target.database) == ("r@der", "p/w", "sh op")
    assert (target.port, target.charset) == (3307, "latin1")


# --- Test connection and checkconnections --------------------------------------------------------


@pytest.fixture
def make_account(mariadb_url: str) -> Iterator[Any]:
    """Create an account that may read the run's database, with extra grants; dropped after."""
    made: list[str] = []

    def make(*grants: str) -> str:
        name = f"fp_check_{uuid.uuid4().hex[:8]}"
        made.append(name)
        database = run_database()
        execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{PASSWORD}'")
        execute(f"GRANT SELECT ON `{database}`.* TO '{name}'@'%'")
        for grant in grants:
            execute(grant.format(account=f"'{name}'@'%'", database=f"`{database}`"))
        return f"mysql://{name}:{PASSWORD}@127.0.0.1:3306/{database}"

    yield make
    for name in made:
        execute(f"DROP USER IF EXISTS '{name}'@'%'")


def checked(name: str, url: str) -> dict[str, Any]:
    add_connection(name, url)
    out = StringIO()
    call_command("checkconnections", name, stdout=out)
    stored = Connection.objects.get(name=name).role_check
    assert PASSWORD not in out.getvalue() + str(stored)
    return dict(stored)


@pytest.mark.django_db
def test_root_has_super_and_is_a_warning(mariadb_url: str) -> None:
    stored = checked("shop", mariadb_url)
    assert stored["checked"] and "has SUPER" in stored["warnings"][0]


@pytest.mark.django_db
def test_a_select_only_account_passes(make_account: Any) -> None:
    stored = checked("shop", make_account())
    assert stored["checked"] and stored["warnings"] == []
    assert "read-only" in stored["summary"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("grant", "warning"),
    [
        ("GRANT FILE ON *.* TO {account}", "has FILE"),
        ("GRANT INSERT, DELETE ON {database}.* TO {account}", "can write"),
        ("GRANT UPDATE ON *.* TO {account}", "may UPDATE on every database"),
        ("GRANT PROCESS ON *.* TO {account}", "has PROCESS"),
    ],
)
def test_what_an_account_may_do_beyond_reading_is_a_warning(
    make_account: Any, grant: str, warning: str
) -> None:
    stored = checked("shop", make_account(grant))
    assert stored["checked"] and any(warning in w for w in stored["warnings"]), stored


@pytest.mark.django_db
def test_test_connection_answers_for_mariadb_without_the_password(
    make_account: Any, mariadb_url: str
) -> None:
    url = make_account()
    result = probe(add_connection("shop", url))
    assert result.ok and "select 1 answered" in result.message
    wrong = probe(add_connection("wrong", url.replace(PASSWORD, "not-" + PASSWORD)))
    assert not wrong.ok and "Access denied" in wrong.message
    assert PASSWORD not in wrong.message
