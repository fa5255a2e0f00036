"""Database connection guard: which database a connection URL may reach.

The same address policy as outbound HTTP (:func:`nodes.netguard.refusal`) applies to database
hosts, checked when a connection is saved and again when it is used:

- PostgreSQL URLs name exactly one TCP host, in the URL's authority. Parameters that would send
  the connection elsewhere or make libpq read files on the worker (``host``, ``hostaddr``,
  ``service``, ``passfile``, ``sslkey``, ``sslcert``, ``sslrootcert``, ``sslcrl``...) are
  refused, as are Unix-socket hosts; only the parameters in :data:`POSTGRES_PARAMETERS` pass.
  The keys libpq itself parses from the URL are what is checked, and ``#`` is refused (libpq
  has no fragments; URL parsers drop them). The platform's own database is refused.
- At connect time the host is resolved, every address is checked, and libpq is handed the
  checked addresses as ``hostaddr`` (the name stays ``host``, for TLS): a name that resolves
  differently a second time (DNS rebinding) cannot swap the peer.
- MariaDB/MySQL URLs (``mysql://``, ``mariadb://``) likewise name one TCP host; parameters
  that would send the connection elsewhere, read option or key files on the worker, run a
  statement of their own or let the server read the worker's files (``unix_socket``,
  ``read_default_file``, ``init_command``, ``local_infile``...) are refused; only those in
  :data:`MYSQL_PARAMETERS` pass. The driver is handed a checked address, never the name.
- SQLite files are read only inside the directories of ``FLOWPLATFORM_SQLITE_DIRS`` (symlinks
  and ``..`` resolved first), never the platform's own database.

Link-local and metadata addresses are always refused; loopback and private ones only when
``FLOWPLATFORM_DB_ALLOW_PRIVATE`` is set (unset: the value of
``FLOWPLATFORM_HTTP_ALLOW_PRIVATE``).
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from django.conf import settings

from nodes import netguard
from nodes.sdk.errors import NodeError
from nodes.urls import ConnectionURLError

POSTGRES_SCHEMES = ("postgresql", "postgres")

#: libpq parameters a connection URL may carry: none of them changes the peer or reads a file.
POSTGRES_PARAMETERS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "dbname",
        "fallback_application_name",
        "gssencmode",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "load_balance_hosts",
        "options",
        "password",
        "port",
        "require_auth",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcertmode",
        "sslcompression",
        "sslmode",
        "sslnegotiation",
        "sslsni",
        "target_session_attrs",
        "tcp_user_timeout",
        "user",
    }
)

#: Parameters refused with a reason of their own: they redirect the connection or name files.
REDIRECTING = {
    "host": "it replaces the host of the URL",
    "hostaddr": "it connects to another address than the host shown",
    "service": "it reads connection settings from a service file on the worker",
    "passfile": "it reads a file on the worker",
    "sslkey": "it reads a file on the worker",
    "sslcert": "it reads a file on the worker",
    "sslrootcert": "it reads a file on the worker",
    "sslcrl": "it reads a file on the worker",
    "sslcrldir": "it reads files on the worker",
    "sslpassword": "it unlocks a key file on the worker",
    "requirepeer": "it only applies to Unix-socket connections",
    "replication": "it opens a replication connection",
}


class DatabaseURLError(ConnectionURLError):
    """A database URL that the guard refuses (the message never holds a secret)."""


def allow_private() -> bool:
    """Whether database hosts may be loopback or private addresses."""
    value = getattr(settings, "FLOWPLATFORM_DB_ALLOW_PRIVATE", None)
    if value is None:
        value = getattr(settings, "FLOWPLATFORM_HTTP_ALLOW_PRIVATE", False)
    return bool(value)


def _query_names(query: str) -> list[str]:
    # libpq splits on '&' and percent-decodes names and values ('+' is not a space).
    return [unquote(pair.partition("=")[0]) for pair in query.split("&") if pair]


#: What libpq takes from a URL's authority and path (the query may not set these again).
_POSTGRES_URL_PARTS = frozenset({"host", "port", "user", "password", "dbname"})


def _refuse_parameter(name: str, reasons: dict[str, str]) -> DatabaseURLError:
    if name in reasons:
        return DatabaseURLError(
            f"connection URL parameter '{name}' is not allowed: {reasons[name]}"
        )
    return DatabaseURLError(f"connection URL parameter '{name[:50]}' is not supported")


def _no_fragment(url: str) -> None:
    # libpq has no fragments: what follows a '#' is part of the query (or the database name)
    # for libpq, while URL parsers drop it. One reading of the URL for all: refuse '#'.
    if "#" in url:
        raise DatabaseURLError(
            "a '#' is not allowed in a database URL (URL-encode it as %23 in a password)"
        )


@dataclass(frozen=True)
class PostgresEndpoint:
    """The one TCP host, port and database a PostgreSQL URL names."""

    host: str
    port: int
    dbname: str


def postgres_endpoint(url: str) -> PostgresEndpoint:
    """The one TCP host, port and database of a PostgreSQL URL; raise
    :class:`DatabaseURLError` for a URL whose parameters would redirect the connection."""
    _no_fragment(url)
    for name in _query_names(urlsplit(url).query):
        if name not in POSTGRES_PARAMETERS or name in REDIRECTING:
            raise _refuse_parameter(name, REDIRECTING)
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message may quote the URL: do not repeat it.
        raise DatabaseURLError("not a valid PostgreSQL URL") from None
    # What libpq itself parsed is what it would use: every key must be allowed.
    for name in params:
        if name == "host":  # the authority's (a ?host= was refused above); checked below
            continue
        if name not in POSTGRES_PARAMETERS | _POSTGRES_URL_PARTS or name in REDIRECTING:
            raise _refuse_parameter(name, REDIRECTING)
    host, port = str(params.get("host") or ""), str(params.get("port") or "5432")
    if not host:
        raise DatabaseURLError("PostgreSQL URLs need a host (Unix sockets are not allowed)")
    if host.startswith(("/", "@")) or "\\" in host:
        raise DatabaseURLError("Unix-socket hosts are not allowed: name a TCP host")
    if "," in host or "," in port:
        raise DatabaseURLError("a connection URL names one host (several hosts are not supported)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DatabaseURLError("the URL has an invalid port")
    # libpq's default database is the user name (itself the OS user's name by default).
    user = str(params.get("user") or os.environ.get("PGUSER") or _os_user())
    dbname = str(params.get("dbname") or os.environ.get("PGDATABASE") or user)
    return PostgresEndpoint(host, int(port), dbname)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return ""


def postgres_target(url: str) -> dict[str, str]:
    """``host``, ``hostaddr`` and ``port`` for libpq: the URL's host, resolved and checked now.

    Raise a permanent :class:`NodeError` for a refused URL or address, a non-permanent one
    when the host does not resolve (DNS may recover).
    """
    try:
        endpoint = postgres_endpoint(url)
    except DatabaseURLError as exc:
        raise NodeError(str(exc), permanent=True) from None
    addresses = _checked_on_use(endpoint.host, endpoint.port, endpoint.dbname)
    # One host entry per address: libpq tries them in order, as it would have the name's.
    return {
        "host": ",".join([endpoint.host] * len(addresses)),
        "hostaddr": ",".join(addresses),
        "port": str(endpoint.port),
    }


def check_postgres_url(url: str) -> None:
    """Save-time check: parameters, and the host's addresses when it resolves now (a host
    only the workers can resolve is checked when it is used)."""
    endpoint = postgres_endpoint(url)
    _checked_on_save(endpoint.host, endpoint.port, endpoint.dbname)


# --- addresses: one check for every engine, on save and on use -------------------------------
def _resolved(host: str, port: int) -> list[str]:
    """The addresses of ``host``, without IPv6 zone ids (``OSError`` when it does not resolve)."""
    try:
        addresses = netguard.resolve(host, port)
    except UnicodeError as exc:
        raise OSError(str(exc)) from None
    return list(dict.fromkeys(a.partition("%")[0] for a in addresses))


def _check_addresses(host: str, port: int, dbname: str | None = None) -> list[str]:
    """The checked addresses of ``host``; :class:`DatabaseURLError` when one is refused or
    when they are the platform's own PostgreSQL database (``dbname`` given: PostgreSQL).
    ``OSError`` when the host does not resolve."""
    addresses = _resolved(host, port)
    permitted = allow_private()
    for address in addresses:
        if reason := netguard.refusal(address, permitted):
            hint = (
                ""
                if permitted or reason.startswith("a link-local")
                else " (set FLOWPLATFORM_DB_ALLOW_PRIVATE=true to allow private database hosts)"
            )
            raise DatabaseURLError(f"database host '{host}' resolves to {address}, {reason}{hint}")
    if dbname is not None and _is_platform_database(addresses, port, dbname):
        raise DatabaseURLError("the platform's own database is not a connection")
    return addresses


def _checked_on_use(host: str, port: int, dbname: str | None = None) -> list[str]:
    """:func:`_check_addresses` for a connection about to be made: a permanent
    :class:`NodeError` for a refusal, a non-permanent one when the host does not resolve."""
    try:
        return _check_addresses(host, port, dbname)
    except DatabaseURLError as exc:
        raise NodeError(str(exc), permanent=True) from None
    except OSError:
        raise NodeError(f"cannot resolve database host '{host}'", permanent=False) from None


def _checked_on_save(host: str, port: int, dbname: str | None = None) -> None:
    try:
        _check_addresses(host, port, dbname)
    except OSError:
        return  # a host only the workers can resolve is checked when it is used


def _is_platform_database(addresses: list[str], port: int, dbname: str) -> bool:
    """Whether ``dbname`` at ``addresses:port`` is a PostgreSQL database of the platform."""
    for database in settings.DATABASES.values():
        if "postgresql" not in str(database.get("ENGINE", "")) or database.get("NAME") != dbname:
            continue
        if int(database.get("PORT") or 5432) != port:
            continue
        own = str(database.get("HOST") or "")
        if not own or own.startswith("/"):  # a Unix socket: the server on this machine
            own = "localhost"
        try:
            own_addresses = set(_resolved(own, port))
        except OSError:
            continue
        if own_addresses & set(addresses) or (_loopback(own_addresses) and _loopback(addresses)):
            return True
    return False


def _loopback(addresses: Iterable[str]) -> bool:
    return any(ipaddress.ip_address(a).is_loopback for a in addresses)


def sqlite_dirs() -> list[Path]:
    """The directories SQLite connections may read from (resolved)."""
    return [Path(d).resolve() for d in getattr(settings, "FLOWPLATFORM_SQLITE_DIRS", [])]


def _platform_databases() -> set[Path]:
    found = set()
    for database in settings.DATABASES.values():
        if "sqlite" in str(database.get("ENGINE", "")) and database.get("NAME"):
            found.add(Path(str(database["NAME"])).resolve())
    return found


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///`` URL, resolved (symlinks, ``..``), if it lies inside an
    allowed directory; :class:`DatabaseURLError` otherwise."""
    raw = url.partition(":///")[2]
    if not raw:
        raise DatabaseURLError("a sqlite connection URL needs a file path")
    path = Path(raw).resolve()
    allowed = sqlite_dirs()
    if not any(path.is_relative_to(d) for d in allowed):
        where = ", ".join(str(d) for d in allowed) or "none are configured"
        raise DatabaseURLError(
            "SQLite files are allowed only inside FLOWPLATFORM_SQLITE_DIRS "
            f"({where}); this URL's file is outside"
        )
    if path in _platform_databases():
        raise DatabaseURLError("the platform's own database is not a connection")
    return path


MYSQL_SCHEMES = ("mysql", "mariadb")

#: Parameters a MariaDB/MySQL URL may carry: neither changes the peer or reads a file.
MYSQL_PARAMETERS = frozenset({"charset", "connect_timeout"})

#: MariaDB/MySQL parameters refused with a reason of their own.
MYSQL_REDIRECTING = {
    "host": "it replaces the host of the URL",
    "port": "the port belongs in the URL's authority",
    "unix_socket": "it connects through a Unix socket on the worker",
    "socket": "it connects through a Unix socket on the worker",
    "named_pipe": "it connects through a named pipe on the worker",
    "bind_address": "it chooses the worker's source address",
    "read_default_file": "it reads an option file on the worker",
    "read_default_group": "it reads option files on the worker",
    "init_command": "it runs a statement of its own on every connection",
    "local_infile": "it lets the server read files on the worker",
    "local_infile_dir": "it lets the server read files on the worker",
    "ssl_ca": "it reads a file on the worker",
    "ssl_capath": "it reads files on the worker",
    "ssl_cert": "it reads a file on the worker",
    "ssl_key": "it reads a file on the worker",
    "ssl_crl": "it reads a file on the worker",
    "ssl_crlpath": "it reads files on the worker",
    "plugin_dir": "it loads client plugins from the worker",
    "default_auth": "it loads a client plugin on the worker",
}

_CHARSET = re.compile(r"^[A-Za-z0-9_]{1,32}$")


@dataclass(frozen=True)
class MySQLTarget:
    """Where and as whom a MariaDB/MySQL URL connects (``addresses``: checked, in order)."""

    host: str
    port: int
    user: str
    password: str
    database: str | None
    charset: str = "utf8mb4"
    connect_timeout: int = 10
    addresses: tuple[str, ...] = ()


def mysql_parts(url: str) -> MySQLTarget:
    """The host, port, credentials, database and parameters of a ``mysql://`` or
    ``mariadb://`` URL; :class:`DatabaseURLError` for one that would redirect the connection."""
    _no_fragment(url)
    try:
        parts = urlsplit(url)
        port = 3306 if parts.port is None else parts.port
    except ValueError:
        raise DatabaseURLError("not a valid MariaDB/MySQL URL (bad host or port)") from None
    if not 0 < port < 65536:
        raise DatabaseURLError("the URL has an invalid port")
    charset, connect_timeout = "utf8mb4", 10
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in MYSQL_PARAMETERS or name in MYSQL_REDIRECTING:
            raise _refuse_parameter(name, MYSQL_REDIRECTING)
        if name == "charset":
            if not _CHARSET.match(value):
                raise DatabaseURLError("connection URL parameter 'charset' is not a charset name")
            charset = value
        else:
            if not value.isdigit() or not 1 <= int(value) <= 3600:
                raise DatabaseURLError(
                    "connection URL parameter 'connect_timeout' must be 1 to 3600 seconds"
                )
            connect_timeout = int(value)
    host = parts.hostname or ""
    if not host:
        raise DatabaseURLError("MariaDB/MySQL URLs need a host (Unix sockets are not allowed)")
    if "," in parts.netloc.rpartition("@")[2]:
        raise DatabaseURLError("a connection URL names one host (several hosts are not supported)")
    path = unquote(parts.path.lstrip("/"))
    if "/" in path:
        raise DatabaseURLError("the URL's path names one database (no '/' after it)")
    return MySQLTarget(
        host=host,
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=path or None,
        charset=charset,
        connect_timeout=connect_timeout,
    )


def mysql_target(url: str) -> MySQLTarget:
    """:func:`mysql_parts` with the host resolved and every address checked now (connect to
    ``addresses``, never to the name). Raise a permanent :class:`NodeError` for a refused URL
    or address, a non-permanent one when the host does not resolve (DNS may recover)."""
    try:
        target = mysql_parts(url)
    except DatabaseURLError as exc:
        raise NodeError(str(exc), permanent=True) from None
    addresses = _checked_on_use(target.host, target.port)
    return MySQLTarget(**{**target.__dict__, "addresses": tuple(addresses)})


def check_mysql_url(url: str) -> None:
    """Save-time check of a MariaDB/MySQL URL: parameters, and the host's addresses when it
    resolves now."""
    target = mysql_parts(url)
    _checked_on_save(target.host, target.port)


def check_url(url: str) -> None:
    """Save-time check of a database URL (HTTP URLs pass: ``http_post`` guards them)."""
    scheme = url.partition(":")[0].lower()
    if scheme in POSTGRES_SCHEMES:
        check_postgres_url(url)
    elif scheme in MYSQL_SCHEMES:
        check_mysql_url(url)
    elif scheme == "sqlite":
        sqlite_path(url)
