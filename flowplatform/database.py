"""The platform database before ``migrate``: create a missing PostgreSQL database, or say in one
line why it cannot be reached (never a traceback, never the password)."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections
from django.db.utils import OperationalError
from psycopg import sql


class DatabaseUnavailable(Exception):
    """The platform database cannot be reached or created; the message says what to do."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def ensure_database(alias: str = "default") -> str | None:
    """Make sure the database behind ``alias`` exists; returns its name when it was created.

    SQLite creates its file itself. A PostgreSQL database that does not exist is created
    through the server's ``postgres`` database (needs the ``CREATEDB`` right); any other
    failure raises :class:`DatabaseUnavailable` with one line naming host, port and database.
    """
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    params: dict[str, Any] = connection.get_connection_params()
    name = str(params.get("dbname") or "")
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
    try:
        connection.ensure_connection()
        return None
    except OperationalError as exc:
        message = _first_line(exc)
        if f'database "{name}" does not exist' not in str(exc):
            raise DatabaseUnavailable(
                f"cannot connect to the platform database '{name}' at {where}: {message} "
                "(check DATABASE_URL and that PostgreSQL is running)"
            ) from None
    maintenance = {**params, "dbname": "postgres", "autocommit": True}
    maintenance.pop("cursor_factory", None)
    maintenance.pop("context", None)
    try:
        with psycopg.connect(**maintenance) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        user = params.get("user") or "postgres"
        raise DatabaseUnavailable(
            f"database '{name}' does not exist at {where} and could not be created "
            f"({_first_line(exc)}): create it (createdb -h {where.split(':')[0]} "
            f"-p {where.split(':')[1]} -U {user} {name}) or point DATABASE_URL at one"
        ) from None
    connection.close()
    return name
