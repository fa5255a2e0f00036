"""The one place where the platform's own SQL differs between PostgreSQL and SQLite.

The statements themselves are written once, in SQL both databases run (``UPDATE ...
RETURNING``, CTEs, ``CAST``); what differs is said here:

- :func:`chain` runs a few statements as one state change, each able to read the rows the
  earlier ones returned by name. PostgreSQL runs them as one statement of data-modifying CTEs
  (one round trip, one commit; its parameters bound on the server, the statement prepared
  under a name that says what it is, so that a transaction-mode pooler passes it:
  :class:`_EngineStatements`); SQLite, which has no data-modifying CTEs, runs them one by one
  in a transaction, each earlier result given to the next as a ``VALUES`` CTE of that name.
- :func:`update` runs one statement that changes rows, as :func:`chain` runs its statements;
  :func:`rows` one that reads them.
- :func:`render` fills the few words that differ: ``{json_object_agg}``, ``{skip_locked}``,
  ``{greatest}`` and ``{clock_us}`` (the database server's clock, in microseconds since 1970).
- :func:`serialize` makes transactions of one kind run one at a time.
- :func:`lazy_commit_sql` lets a statement's transaction commit without waiting for the disk.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from psycopg._preparing import Prepare, PrepareManager
from psycopg._queries import PostgresQuery, QueryPart, _query2pg_nocache
from psycopg.adapt import PyFormat

logger = logging.getLogger("flowplatform.engine")

_WORDS = {
    "postgresql": {
        "json_object_agg": "json_object_agg",
        "skip_locked": "FOR UPDATE SKIP LOCKED",
        "greatest": "GREATEST",
        "clock_us": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
    },
    "sqlite": {
        "json_object_agg": "json_group_object",
        "skip_locked": "",
        "greatest": "MAX",
        "clock_us": "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)",
    },
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
    with _cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def rows(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run one ``SELECT`` (its parameters bound on the server on PostgreSQL, as :func:`chain`'s,
    and prepared: for a read made on every start of a run); its rows."""
    with _cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _cursor() -> Any:
    """A cursor for one statement: on PostgreSQL :func:`_bound_cursor`'s, else Django's."""
    return _bound_cursor() if connection.vendor == "postgresql" else connection.cursor()


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


#: Whether this process still prepares the engine's statements (:class:`_EngineStatements`):
#: it stops, for good, the first time its connection turns out not to keep them (a
#: transaction-mode pooler that does not track prepared statements, such as PgBouncer before
#: 1.21, hands each transaction whichever server connection is free).
_preparing = True

#: What PostgreSQL answers when a statement's name means nothing, or is taken already, on the
#: server connection a pooler chose (each raised before the statement executes); and when a
#: schema change altered a prepared statement's result ("cached plan must not change result
#: type", SQLSTATE 0A000).
_UNKEPT = (
    psycopg.errors.InvalidSqlStatementName,
    psycopg.errors.DuplicatePreparedStatement,
    psycopg.errors.FeatureNotSupported,
)

#: Most statements prepared on one connection; later ones run unprepared on it. A statement
#: text has a name per set of parameter types (psycopg sends an integer as ``int2``, ``int4``
#: or ``int8`` by its value, a ``None`` untyped), and none is deallocated while the
#: connection lives (``DATABASE_CONN_MAX_AGE``, 60 s by default).
PREPARED_PER_CONNECTION = 256


class _EngineStatements(PrepareManager):
    """A connection's prepared statements, for the engine's own statements alone (those run
    with ``prepare=True``; the ORM's never are), each named after its text and parameter types.

    PostgreSQL plans an unprepared statement on every call: for the take of a node (a few
    data-modifying CTEs) that was three quarters of the server's CPU for it. Prepared, it is
    planned for its values 5 times, then once for the session.

    Named after its content, a prepared statement is the same statement on every server
    connection that has the name, whichever client prepared it there: behind a pooler that
    does not track prepared statements, a name that is missing or already taken is an error
    before anything runs (never another statement run in its place), and the process then
    stops preparing (``_preparing``) and runs the statement unprepared.

    A name, once prepared, is kept while the connection lives: nothing deallocates it (a pooler
    may not pass ``DEALLOCATE``), neither a statement that failed after it was prepared (a
    deadlock, a timeout: the server keeps the statement) nor a rollback (prepared statements
    outlive transactions, and the engine prepares none inside one).
    """

    def get(self, query: PostgresQuery, prepare: bool | None = None) -> tuple[Prepare, bytes]:
        if prepare is not True or not _preparing:
            return Prepare.NO, b""
        key = self.key(query)
        name = self._names.get(key)
        if name is not None:
            return Prepare.YES, name
        if len(self._names) >= PREPARED_PER_CONNECTION:
            return Prepare.NO, b""
        return Prepare.SHOULD, _statement_name(key)

    def maybe_add_to_cache(
        self, query: PostgresQuery, prep: Prepare, name: bytes
    ) -> tuple[bytes, tuple[int, ...]] | None:
        if prep is Prepare.NO:
            return None  # (psycopg would count the ORM's statements toward preparing them)
        return super().maybe_add_to_cache(query, prep, name)

    def validate(
        self, key: tuple[bytes, tuple[int, ...]], prep: Prepare, name: bytes, results: Any
    ) -> None:
        """Keep the name whatever the statement's outcome: once prepared, a statement stays
        prepared on the server even when its execution failed."""

    def clear(self) -> bool:
        """Keep every name on a rollback (psycopg would deallocate them all)."""
        return False

    def _rotate(self) -> None:
        """Keep every name (see :data:`PREPARED_PER_CONNECTION`)."""


def _statement_name(key: tuple[bytes, tuple[int, ...]]) -> bytes:
    text, types = key
    digest = hashlib.blake2b(text, digest_size=12)
    digest.update(repr(types).encode())
    return b"flowplatform_" + digest.hexdigest().encode()


class _EngineCursor(psycopg.Cursor[Any]):
    """A psycopg cursor that binds parameters on the server and prepares its statements
    (:class:`_EngineStatements`) outside a transaction; inside one, where a failed statement
    would abort it, they run unnamed. Its statements' conversion to PostgreSQL's placeholders
    is remembered (:class:`_RememberedQuery`)."""

    _query_cls = _RememberedQuery

    def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        global _preparing
        prepared = self._conn._prepared
        if not _preparing or not self._conn.autocommit:
            options["prepare"] = False
            return super().execute(query, params, **options)
        if not isinstance(prepared, _EngineStatements):
            prepared = self._conn._prepared = _EngineStatements()
            prepared.prepare_threshold = 0
        try:
            return super().execute(query, params, prepare=True, **options)
        except _UNKEPT as exc:
            _preparing = False
            prepared._names.clear()
            logger.warning(
                "the platform's database connection does not keep prepared statements (%s); "
                "this process runs its statements unprepared from now on",
                type(exc).__name__,
            )
        options["prepare"] = False  # nothing ran: run it again, unnamed
        return super().execute(query, params, **options)

    def _send_query_prepared(
        self, name: bytes, pgq: PostgresQuery, *, binary: bool | None = None
    ) -> None:
        self._query = pgq  # (the statement Django logs, as it does an unnamed one's)
        super()._send_query_prepared(name, pgq, binary=binary)


def _bound_cursor() -> Any:
    """PostgreSQL: a cursor of Django's connection (its errors, its logged queries) whose
    parameters are bound on the server and whose statements are prepared (:class:`_EngineCursor`).
    Django's cursors bind them in the client, quoting each occurrence of a parameter into the
    statement's text: for the engine's few long statements, run on every node run, that is
    most of their client CPU."""
    # (this thread's connection itself: the ``connection`` proxy looks it up again on each
    # attribute read, a third of this function's CPU)
    db = connections[DEFAULT_DB_ALIAS]
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        raw = _EngineCursor(db.connection)
        db.validate_thread_sharing()
        if db.queries_logged:
            return db.make_debug_cursor(raw)
        return db.make_cursor(raw)


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
