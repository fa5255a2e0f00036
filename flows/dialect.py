"""The one place where the platform's own SQL differs between PostgreSQL and SQLite.

The statements themselves are written once, in SQL both databases run (``UPDATE ...
RETURNING``, CTEs, ``CAST``); what differs is said here:

- :func:`chain` runs a few statements as one state change, each able to read the rows the
  earlier ones returned by name. PostgreSQL runs them as one statement of data-modifying CTEs
  (one round trip, one commit; its parameters bound on the server, the statement unnamed and
  never prepared, so that a transaction-mode pooler passes it); SQLite, which has no data-modifying CTEs, runs them one by one
  in a transaction, each earlier result given to the next as a ``VALUES`` CTE of that name.
- :func:`update` runs one statement that changes rows, as :func:`chain` runs its statements.
- :func:`render` fills the few words that differ: ``{json_object_agg}`` and ``{skip_locked}``.
- :func:`serialize` makes transactions of one kind run one at a time.
- :func:`lazy_commit_sql` lets a statement's transaction commit without waiting for the disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from django.db import connection, transaction
from psycopg._queries import PostgresQuery, QueryPart, _query2pg_nocache
from psycopg.adapt import PyFormat

_WORDS = {
    "postgresql": {"json_object_agg": "json_object_agg", "skip_locked": "FOR UPDATE SKIP LOCKED"},
    "sqlite": {"json_object_agg": "json_group_object", "skip_locked": ""},
}


def render(sql: str, **names: str) -> str:
    """``sql`` with ``names`` (tables, from model metadata) and this database's words filled in."""
    return sql.format(**names, **_WORDS[connection.vendor])


def chain(
    steps: Sequence[tuple[str, str]], final: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run ``steps`` (name, statement) then ``final``, all with ``params``; the rows of ``final``
    (none when it returns none).

    Each step and ``final`` may read the rows an earlier step returned (its ``RETURNING``) as a
    table of the step's name. Every step runs, whatever the earlier ones changed: a step that
    must only act after another gates itself (``AND EXISTS (SELECT 1 FROM name)``). All of
    them see the database as it was before the first: a step must not count on the changes of
    an earlier one except through its returned rows.
    """
    if connection.vendor == "postgresql":
        ctes = ", ".join(f"{name} AS ({sql})" for name, sql in steps)
        with _bound_cursor() as cursor:
            cursor.execute(f"WITH {ctes} {final}", params)
            # (whether it returned rows: ``description`` would first describe every column)
            return cursor.fetchall() if cursor.rownumber is not None else []
    with transaction.atomic(), connection.cursor() as cursor:
        returned: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for name, sql in steps:
            prefix, values = _as_ctes(returned)
            cursor.execute(prefix + sql, {**params, **values})
            columns = [column[0] for column in cursor.description or ()]
            returned[name] = (columns, cursor.fetchall() if columns else [])
        prefix, values = _as_ctes(returned)
        cursor.execute(prefix + final, {**params, **values})
        return cursor.fetchall() if cursor.description else []


def update(sql: str, params: Mapping[str, Any]) -> int:
    """Run one ``UPDATE`` (its parameters bound on the server on PostgreSQL, as :func:`chain`'s);
    how many rows it changed."""
    if connection.vendor == "postgresql":
        with _bound_cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


_CONVERTED_KEPT = 32  # statements (the engine's are a dozen, and a start's per flow size)
_CONVERTED_MAX_LENGTH = 32768  # characters: longer ones are converted on every call


@lru_cache(maxsize=_CONVERTED_KEPT)
def _converted(
    query: str, encoding: str
) -> tuple[bytes, list[PyFormat], list[str] | None, list[QueryPart]]:
    """``query`` with its ``%(name)s`` placeholders made PostgreSQL's ``$n`` (psycopg's own
    conversion), remembered: the engine's statements are few and the same text every time."""
    return _query2pg_nocache(query.encode(encoding), encoding)


class _RememberedQuery(PostgresQuery):
    """psycopg's conversion of a statement and its parameters, the statement's part remembered
    whatever its length and number of parameters. psycopg remembers only statements of at most
    4096 characters and 50 parameters; the engine's larger ones (the start of a run: its run,
    node runs and audit entry in one statement, 130 parameters for 4 nodes) were converted
    again on every call, a regular-expression pass over the whole text that was a fifth of a
    start's client CPU."""

    __slots__ = ()

    def convert(self, query: Any, vars: Any) -> None:
        if vars is None or not isinstance(query, str) or len(query) > _CONVERTED_MAX_LENGTH:
            super().convert(query, vars)
            return
        converted = _converted(query, self._tx.encoding)
        self.query, self._want_formats, self._order, self._parts = converted
        self.dump(vars)


class _UnpreparedCursor(psycopg.Cursor[Any]):
    """A psycopg cursor that binds parameters on the server, each statement unnamed and never
    prepared (``prepare=False`` whatever the connection's ``prepare_threshold``): nothing of
    it outlives the statement, so it passes a transaction-mode pooler. Its statements'
    conversion to PostgreSQL's placeholders is remembered (:class:`_RememberedQuery`)."""

    _query_cls = _RememberedQuery

    def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        options["prepare"] = False
        return super().execute(query, params, **options)


def _bound_cursor() -> Any:
    """PostgreSQL: a cursor of Django's connection (its errors, its logged queries) whose
    parameters are bound on the server. Django's cursors bind them in the client, quoting
    each occurrence of a parameter into the statement's text: for the engine's few long
    statements, run on every node run, that is most of their client CPU."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _UnpreparedCursor(connection.connection)
        connection.validate_thread_sharing()
        if connection.queries_logged:
            return connection.make_debug_cursor(raw)
        return connection.make_cursor(raw)


def _as_ctes(
    returned: Mapping[str, tuple[list[str], list[tuple[Any, ...]]]],
) -> tuple[str, dict[str, Any]]:
    """``WITH name(columns) AS (VALUES ...)`` for each earlier step's rows, and their values."""
    ctes, values = [], {}
    quote = connection.ops.quote_name
    for name, (names, rows) in returned.items():
        columns = [quote(column) for column in names]  # (a column may be a keyword: index)
        if not columns:
            continue
        if not rows:  # no row: the columns, and nothing
            nulls = ", ".join("NULL" for _ in columns)
            ctes.append(f"{name}({', '.join(columns)}) AS (SELECT {nulls} WHERE 0)")
            continue
        tuples = []
        for r, row in enumerate(rows):
            keys = [f"_{name}_{r}_{c}" for c in range(len(columns))]
            values.update(zip(keys, row, strict=True))
            tuples.append("(" + ", ".join(f"%({key})s" for key in keys) + ")")
        ctes.append(f"{name}({', '.join(columns)}) AS (VALUES {', '.join(tuples)})")
    return ("WITH " + ", ".join(ctes) + " ") if ctes else "", values


#: Keys of :func:`serialize` (arbitrary constants, one per kind of transaction).
ADMISSIONS = 0x666C6F77_61646D


def serialize(key: int) -> None:
    """Inside a transaction: wait until no other transaction of kind ``key`` runs, and keep the
    others waiting until this one ends. PostgreSQL: a transaction-level advisory lock (released
    by the commit, so it passes a transaction-mode pooler); SQLite runs one writer at a time
    by itself."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


#: The condition that relaxes a statement's commit (see :func:`lazy_commit_sql`).
_RELAXED = "set_config('synchronous_commit', 'off', true) = 'off'"


def lazy_commit_sql() -> str:
    """``AND`` and a condition to add to the ``WHERE`` of a statement whose commit need not wait
    for its log to reach the disk, in the same single statement: for a write whose loss in a
    crash of the database server is harmless, because the value before it is as correct, only
    less recent (a checkpoint, progress). PostgreSQL: ``synchronous_commit`` off for that
    statement's transaction alone (a later ordinary commit flushes it too, so what a crash
    loses is at most the last such writes; a transaction-mode pooler passes it). Nothing inside
    a transaction already (its own commit decides), nor on SQLite."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return ""
    return f" AND {_RELAXED}"
