"""Database connection guard: which database a connection URL may reach.

The same address policy as outbound HTTP (:func:`nodes.netguard.refusal`) applies to database
hosts, checked when a connection is saved and again when it is used:

- PostgreSQL URLs name exactly one TCP host, in the URL's authority. Parameters that would send
  the connection elsewhere or make libpq read files on the worker (``host``, ``hostaddr``,
  ``service``, ``passfile``, ``sslkey``, ``sslcert``, ``sslrootcert``, ``sslcrl``...) are
  refused, as are Unix-socket hosts; only the parameters in :data:`POSTGRES_PARAMETERS` pass.
- At connect time the host is resolved, every address is checked, and libpq is handed the
  checked addresses as ``hostaddr`` (the name stays ``host``, for TLS): a name that resolves
  differently a second time (DNS rebinding) cannot swap the peer.
- SQLite files are read only inside the directories of ``FLOWPLATFORM_SQLITE_DIRS`` (symlinks
  and ``..`` resolved first), never the platform's own database.

Link-local and metadata addresses are always refused; loopback and private ones only when
``FLOWPLATFORM_DB_ALLOW_PRIVATE`` is set (unset: the value of
``FLOWPLATFORM_HTTP_ALLOW_PRIVATE``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

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


def postgres_host_port(url: str) -> tuple[str, int]:
    """The one TCP host and port of a PostgreSQL URL; raise :class:`DatabaseURLError` for a URL
    whose parameters would redirect the connection."""
    for name in _query_names(urlsplit(url).query):
        if name in REDIRECTING:
            raise DatabaseURLError(
                f"connection URL parameter '{name}' is not allowed: {REDIRECTING[name]}"
            )
        if name not in POSTGRES_PARAMETERS:
            raise DatabaseURLError(f"connection URL parameter '{name[:50]}' is not supported")
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message may quote the URL: do not repeat it.
        raise DatabaseURLError("not a valid PostgreSQL URL") from None
    host, port = str(params.get("host") or ""), str(params.get("port") or "5432")
    if not host:
        raise DatabaseURLError("PostgreSQL URLs need a host (Unix sockets are not allowed)")
    if host.startswith(("/", "@")) or "\\" in host:
        raise DatabaseURLError("Unix-socket hosts are not allowed: name a TCP host")
    if "," in host or "," in port:
        raise DatabaseURLError("a connection URL names one host (several hosts are not supported)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DatabaseURLError("the URL has an invalid port")
    return host, int(port)


def postgres_target(url: str) -> dict[str, str]:
    """``host``, ``hostaddr`` and ``port`` for libpq: the URL's host, resolved and checked now.

    Raise a permanent :class:`NodeError` for a refused URL or address, a non-permanent one
    when the host does not resolve (DNS may recover).
    """
    try:
        host, port = postgres_host_port(url)
    except DatabaseURLError as exc:
        raise NodeError(str(exc), permanent=True) from None
    try:
        addresses = netguard.resolve(host, port)
    except (OSError, UnicodeError):
        raise NodeError(f"cannot resolve database host '{host}'", permanent=False) from None
    addresses = [a.partition("%")[0] for a in addresses]  # no IPv6 zone ids
    permitted = allow_private()
    for address in addresses:
        if reason := netguard.refusal(address, permitted):
            raise NodeError(
                f"database host '{host}' resolves to {address}, {reason}", permanent=True
            )
    # One host entry per address: libpq tries them in order, as it would have the name's.
    return {
        "host": ",".join([host] * len(addresses)),
        "hostaddr": ",".join(addresses),
        "port": str(port),
    }


def check_postgres_url(url: str) -> None:
    """Save-time check: parameters, and the host's addresses when it resolves now (a host
    only the workers can resolve is checked when it is used)."""
    host, port = postgres_host_port(url)
    try:
        addresses = netguard.resolve(host, port)
    except (OSError, UnicodeError):
        return
    permitted = allow_private()
    for address in addresses:
        if reason := netguard.refusal(address.partition("%")[0], permitted):
            hint = (
                ""
                if permitted or reason.startswith("a link-local")
                else " (set FLOWPLATFORM_DB_ALLOW_PRIVATE=true to allow private database hosts)"
            )
            raise DatabaseURLError(f"database host '{host}' resolves to {address}, {reason}{hint}")


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


def check_url(url: str) -> None:
    """Save-time check of a database URL (HTTP URLs pass: ``http_post`` guards them)."""
    scheme = url.partition(":")[0].lower()
    if scheme in POSTGRES_SCHEMES:
        check_postgres_url(url)
    elif scheme == "sqlite":
        sqlite_path(url)
