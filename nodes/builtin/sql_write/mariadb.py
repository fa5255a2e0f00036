"""The MariaDB/MySQL dialect of ``sql_write``: multi-row INSERT, ``ON DUPLICATE KEY UPDATE``,
write marks, ``RENAME TABLE`` swap.

- ``insert``: multi-row ``INSERT INTO target (columns) VALUES (...), (...)``, statements of up
  to :data:`MAX_STATEMENT_BYTES` each, every value escaped by the driver with the connection's
  character set (the protocol's text form) and no identifier ever formatted unquoted.
- ``upsert``: the same with ``ON DUPLICATE KEY UPDATE column = VALUES(column)``; the last
  record of a key in a batch wins (the batch is reduced to one row per key first). The target
  needs a unique index on exactly the key columns (checked, a permanent error otherwise); note
  that MariaDB also updates on a conflict with any *other* unique index of the table.
  ``inserted``/``updated`` are counted by the keys found, under lock, before the write.
- ``replace``: the batches go into a staging table made ``LIKE target`` (columns, indexes,
  engine); the swap is one atomic ``RENAME TABLE target TO old, staging TO target`` (readers
  see the old table or the new one), then the old one is dropped. ``RENAME`` commits on its own
  in MariaDB, so the swap mark is written first in state ``swapping`` and set ``done`` after;
  a delivery that finds it ``swapping`` (the worker died in between) finishes the swap, which
  is safe to repeat: the staging table gone means the rename happened.
- Write marks: ``flowplatform_write_marks`` (InnoDB) in the target's database, claimed by the
  first statement of each batch's transaction: a concurrent delivery of the same batch waits
  on the row lock, then finds the mark taken (duplicate key) and skips. The target must use a
  transactional engine (InnoDB); MyISAM and Aria tables are refused.

Sessions run in UTC (aware datetimes are written as their UTC wall time into DATETIME
columns), in strict SQL mode (a value that does not fit is an error, never truncated), with
the statement time limit as ``max_statement_time`` (MariaDB) and the lock waits bounded by it.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import MySQLdb

from nodes.builtin import mysql_backend
from nodes.builtin.sql_write.dialect import (
    MARKS_TABLE,
    SWAP_BATCH,
    BatchSummary,
    BatchWrite,
    Dialect,
    TableName,
    WriteSession,
    chunks,
    digest,
    staging_table,
    translated,
)
from nodes.jsonbody import dumps
from nodes.redaction import Redactor
from nodes.sdk.errors import NodeError
from nodes.sdk.schema import FieldType

#: The longest multi-row statement sent (bounded by the server's ``max_allowed_packet`` too).
MAX_STATEMENT_BYTES = 4 * 1024 * 1024
#: Keys looked up per statement when counting the rows an upsert will update.
KEYS_PER_LOOKUP = 1000
#: The session's SQL mode: strict (no silent truncation), no zero dates, and nothing that
#: changes how the statements below parse (no ANSI_QUOTES, no NO_BACKSLASH_ESCAPES).
SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)

COLUMN_TYPES = {
    FieldType.STRING: "longtext",
    FieldType.INTEGER: "bigint",
    FieldType.FLOAT: "double",
    FieldType.DECIMAL: "decimal(65,30)",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATE: "date",
    FieldType.DATETIME: "datetime(6)",
    FieldType.JSON: "json",
    FieldType.ANY: "json",
}
#: A text key column: an index needs a bounded length.
KEY_STRING_TYPE = "varchar(255)"

_NUMBERS = {FieldType.INTEGER, FieldType.FLOAT, FieldType.DECIMAL}
_TEXT = {FieldType.STRING, *_NUMBERS, FieldType.BOOLEAN, FieldType.DATE, FieldType.DATETIME}
_INTEGERS = {FieldType.INTEGER, FieldType.BOOLEAN}
#: Column type (``DATA_TYPE``, or ``json`` for MariaDB's checked LONGTEXT) -> field types that fit.
FITS: dict[str, set[FieldType]] = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "bigint"), _INTEGERS),
    **dict.fromkeys(("decimal", "float", "double"), _NUMBERS),
    **dict.fromkeys(("char", "varchar", "tinytext", "text", "mediumtext", "longtext"), _TEXT),
    "bit": _INTEGERS,
    "year": {FieldType.INTEGER},
    "date": {FieldType.DATE, FieldType.DATETIME},
    "datetime": {FieldType.DATETIME, FieldType.DATE},
    "timestamp": {FieldType.DATETIME, FieldType.DATE},
    "time": {FieldType.STRING},
    "enum": {FieldType.STRING},
    "set": {FieldType.STRING},
    "json": set(FieldType),
}

#: Errors a retry may cure: lock wait timeout, deadlock, too many connections, shutdown, lost
#: or killed connections (client errors, 2000 and up, are all connection trouble).
TRANSIENT_ERRORS = frozenset({1040, 1053, 1205, 1213, 1927, 4031})
DUPLICATE_KEY = 1062
TABLE_EXISTS = 1050
NO_SUCH_TABLE = 1146


class MariaDBDialect(Dialect):  # type: ignore[misc, unused-ignore]
    name = "MariaDB/MySQL"

    @contextlib.contextmanager
    def open(
        self,
        url: str,
        redactor: Redactor,
        *,
        statement_timeout_s: float,
        connect_timeout_s: int = 10,
    ) -> Iterator[WriteSession]:
        errors = _Errors(url, redactor, statement_timeout_s)
        with errors:
            conn = mysql_backend.connect(url, connect_timeout=connect_timeout_s)
        try:
            with errors:
                conn.autocommit(True)  # each write is an explicit transaction
                cursor = conn.cursor()
                waits = max(1, min(31_536_000, math.ceil(statement_timeout_s)))
                limit = (
                    f", max_statement_time = {float(statement_timeout_s)!r}"
                    if mysql_backend.is_mariadb(conn)
                    else ""  # MySQL's max_execution_time only bounds SELECT
                )
                cursor.execute(
                    "SET SESSION time_zone = '+00:00', sql_mode = %s,"
                    f" innodb_lock_wait_timeout = {waits}, lock_wait_timeout = {waits}{limit}",
                    [SQL_MODE],
                )
                cursor.execute("SELECT @@max_allowed_packet")
                packet = int(cursor.fetchone()[0])
                cursor.close()
            yield MariaDBSession(conn, errors, min(MAX_STATEMENT_BYTES, packet - 1024))
        finally:
            with contextlib.suppress(MySQLdb.Error):
                conn.close()

    def column_type(self, field_type: FieldType) -> str:
        return COLUMN_TYPES[field_type]

    def fits(self, field_type: FieldType, column_type: str) -> bool:
        if field_type is FieldType.ANY:
            return True
        accepted = FITS.get(column_type.partition("(")[0].strip().lower())
        return accepted is None or field_type in accepted  # other types: not checked


class _Errors:
    """Driver errors as NodeError: transient for connection trouble, lock waits, deadlocks and
    the time limit, permanent otherwise; the message names the row at fault (the server's
    text, e.g. ``Duplicate entry '1' for key 'PRIMARY'``), never the URL or a secret."""

    def __init__(self, url: str, redactor: Redactor, timeout_s: float) -> None:
        self.url = url
        self.redactor = redactor
        self.timeout_s = timeout_s

    def __enter__(self) -> _Errors:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, MySQLdb.Error):
            return
        code = mysql_backend._code(exc)
        if code in mysql_backend.TIMEOUT_ERRORS:
            raise NodeError(
                f"a statement ran longer than the statement timeout ({self.timeout_s:g} s)",
                permanent=False,
            ) from None
        if code >= 2000 or code in TRANSIENT_ERRORS:
            raise NodeError(f"database unavailable: {self.message(exc)}", permanent=False) from None
        raise NodeError(f"write failed: {self.message(exc)}", permanent=True) from None

    def message(self, exc: BaseException) -> str:
        text = mysql_backend._message(exc)
        return self.redactor.cut(text.replace(self.url, "***"), 500)


def _q(name: str) -> str:
    """An identifier, quoted (a backtick inside is doubled)."""
    return "`" + name.replace("`", "``") + "`"


def _table(table: TableName) -> str:
    return f"{_q(table.schema)}.{_q(table.name)}" if table.schema else _q(table.name)


def _names(names: Sequence[str]) -> str:
    return ", ".join(map(_q, names))


class _Value:
    """A value in a statement: written by the driver's literal escaping."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _writable(value: Any) -> Any:
    """A record value as MariaDB stores it: objects and arrays as JSON text, aware datetimes
    as their UTC wall time, UUIDs as text."""
    kind = type(value)
    if kind is dict or kind is list:
        return dumps(value)
    if kind is datetime and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if kind is uuid.UUID:
        return str(value)
    return value


def _needs_conversion(value: Any) -> bool:
    kind = type(value)
    return (
        kind is dict
        or kind is list
        or kind is uuid.UUID
        or (kind is datetime and value.tzinfo is not None)
    )


class MariaDBSession(WriteSession):  # type: ignore[misc, unused-ignore]
    def __init__(self, conn: Any, errors: _Errors, statement_bytes: int) -> None:
        self.conn = conn
        self.errors = errors
        self.statement_bytes = statement_bytes
        self._marks_ready: set[TableName] = set()
        self._checked_tables: set[TableName] = set()
        self._unique_keys: set[tuple[TableName, tuple[str, ...]]] = set()
        self._mariadb = mysql_backend.is_mariadb(conn)

    # -- statements --------------------------------------------------------------------------

    def _sql(self, *parts: str | _Value) -> bytes:
        """SQL text and values, values escaped by the driver (identifiers are quoted by the
        caller with :func:`_q`)."""
        out = bytearray()
        for part in parts:
            if isinstance(part, _Value):
                out += self.conn.literal(part.value)
            else:
                out += part.encode(self.conn.encoding)
        return bytes(out)

    def _run(self, *parts: str | _Value) -> list[tuple[Any, ...]]:
        cursor = self.conn.cursor()
        try:
            cursor.execute(self._sql(*parts))
            return list(cursor.fetchall() or [])
        finally:
            cursor.close()

    def _affected(self, statement: bytes) -> int:
        cursor = self.conn.cursor()
        try:
            return int(cursor.execute(statement) or 0)
        finally:
            cursor.close()

    def _where_table(self, table: TableName) -> tuple[str | _Value, ...]:
        schema: str | _Value = _Value(table.schema) if table.schema else "DATABASE()"
        return ("TABLE_SCHEMA = ", schema, " AND TABLE_NAME = ", _Value(table.name))

    # -- reading the target ------------------------------------------------------------------

    @translated
    def table_columns(self, table: TableName) -> dict[str, str] | None:
        rows = self._run(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE FROM information_schema.COLUMNS WHERE ",
            *self._where_table(table),
            " ORDER BY ORDINAL_POSITION",
        )
        if not rows:
            return None
        # MariaDB's JSON is LONGTEXT with a json_valid() check of the column's own name.
        checks = (
            []
            if not self._mariadb
            else self._run(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE ",
                "CONSTRAINT_SCHEMA = ",
                _Value(table.schema) if table.schema else "DATABASE()",
                " AND TABLE_NAME = ",
                _Value(table.name),
            )
        )
        clauses = {str(clause).replace(" ", "") for (clause,) in checks}
        columns = {}
        for name, column_type, data_type in rows:
            is_json = data_type == "longtext" and f"json_valid({_q(name)})" in clauses
            columns[name] = "json" if is_json or data_type == "json" else str(column_type)
        return columns

    def _check_engine(self, table: TableName) -> None:
        """A table whose engine has no transactions cannot hold a batch and its mark together."""
        if table in self._checked_tables:
            return
        rows = self._run(
            "SELECT t.ENGINE, e.TRANSACTIONS FROM information_schema.TABLES t"
            " LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE WHERE t.",
            *self._where_table(table),
        )
        if rows and rows[0][0] is not None and rows[0][1] != "YES":
            raise NodeError(
                f"table '{table}' uses the {rows[0][0]} engine, which has no transactions: "
                "sql_write needs a transactional engine such as InnoDB",
                permanent=True,
            )
        self._checked_tables.add(table)

    def _check_unique_key(self, table: TableName, key: Sequence[str]) -> None:
        if (table, tuple(key)) in self._unique_keys:
            return
        rows = self._run(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE NON_UNIQUE = 0"
            " AND ",
            *self._where_table(table),
        )
        indexes: dict[str, set[str]] = {}
        for index, column in rows:
            indexes.setdefault(index, set()).add(column)
        if set(key) not in indexes.values():
            raise NodeError(
                f"table '{table}' has no unique index on exactly ({', '.join(key)}): upsert "
                "needs one (a primary key or UNIQUE index on the key columns)",
                permanent=True,
            )
        self._unique_keys.add((table, tuple(key)))

    # -- creating ----------------------------------------------------------------------------

    @translated
    def create_table(
        self, table: TableName, fields: Mapping[str, FieldType], key: Sequence[str] = ()
    ) -> None:
        columns = [
            f"{_q(name)} "
            + (KEY_STRING_TYPE if name in key and kind is FieldType.STRING else COLUMN_TYPES[kind])
            for name, kind in fields.items()
        ]
        if key:
            columns.append(f"PRIMARY KEY ({_names(key)})")
        self._run(
            f"CREATE TABLE IF NOT EXISTS {_table(table)} ({', '.join(columns)})"
            " ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
        )

    # -- write marks -------------------------------------------------------------------------

    def _marks(self, table: TableName) -> str:
        marks = table.sibling(MARKS_TABLE)
        if marks not in self._marks_ready:
            self._run(
                f"CREATE TABLE IF NOT EXISTS {_table(marks)} ("
                " run_id VARCHAR(100) NOT NULL, node_key VARCHAR(255) NOT NULL,"
                " batch INT NOT NULL, target VARCHAR(255) NOT NULL,"
                " `rows` INT NOT NULL DEFAULT 0, inserted INT NOT NULL DEFAULT 0,"
                " updated INT NOT NULL DEFAULT 0,"
                " state VARCHAR(10) NOT NULL DEFAULT 'done',"
                " written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
                " PRIMARY KEY (run_id, node_key, batch)"
                ") ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
            )
            self._marks_ready.add(marks)
        return _table(marks)

    @translated
    def committed(self, table: TableName, run_id: str, node_key: str) -> dict[int, BatchSummary]:
        marks = self._marks(table)
        rows = self._run(
            f"SELECT batch, `rows`, inserted, updated, state FROM {marks} WHERE run_id = ",  # noqa: S608 - quoted names, escaped values
            _Value(run_id),
            " AND node_key = ",
            _Value(node_key),
        )
        if any(batch == SWAP_BATCH and state != "done" for batch, *_counts, state in rows):
            self._finish_swap(table, run_id, node_key)
        return {
            int(batch): BatchSummary(int(batch), int(n), int(inserted), int(updated))
            for batch, n, inserted, updated, _state in rows
        }

    def _claim(
        self, marks: str, run_id: str, node_key: str, batch: int, target: TableName, state: str
    ) -> bool:
        """Take the batch's mark in the open transaction (waiting for a concurrent delivery
        that holds it); ``False`` when it is taken already."""
        try:
            self._run(
                f"INSERT INTO {marks} (run_id, node_key, batch, target, state) VALUES (",  # noqa: S608 - quoted names, escaped values
                _Value(run_id),
                ", ",
                _Value(node_key),
                ", ",
                _Value(batch),
                ", ",
                _Value(str(target)),
                ", ",
                _Value(state),
                ")",
            )
        except MySQLdb.IntegrityError as exc:
            if mysql_backend._code(exc) == DUPLICATE_KEY:
                return False
            raise
        return True

    # -- writing -----------------------------------------------------------------------------

    @translated
    def write(self, job: BatchWrite) -> BatchSummary | None:
        marks = self._marks(job.table)
        self._check_engine(job.table)
        rows = self._values(job.rows)
        if job.mode == "upsert":
            self._check_unique_key(job.table, job.key)
            rows = self._last_per_key(rows, [list(job.columns).index(k) for k in job.key])
        self._run("START TRANSACTION")
        try:
            if not self._claim(marks, job.run_id, job.node_key, job.batch, job.table, "done"):
                self.conn.rollback()
                return None
            if job.mode == "upsert":
                updated = self._existing(job, rows)
                inserted = len(rows) - updated
            else:
                inserted, updated = len(rows), 0
            self._insert(job, rows)
            self._run(
                f"UPDATE {marks} SET `rows` = ",  # noqa: S608 - quoted names, escaped values
                _Value(len(job.rows)),
                ", inserted = ",
                _Value(inserted),
                ", updated = ",
                _Value(updated),
                " WHERE run_id = ",
                _Value(job.run_id),
                " AND node_key = ",
                _Value(job.node_key),
                " AND batch = ",
                _Value(job.batch),
            )
            self.conn.commit()
        except BaseException:
            with contextlib.suppress(MySQLdb.Error):
                self.conn.rollback()
            raise
        return BatchSummary(job.batch, len(job.rows), inserted, updated)

    @staticmethod
    def _values(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """The rows with the values MariaDB cannot take as they are converted (see
        :func:`_writable`); columns without such values are left alone."""
        if not rows:
            return []
        width = len(rows[0])
        positions = [i for i in range(width) if any(_needs_conversion(row[i]) for row in rows)]
        if not positions:
            return list(rows)
        converted: list[Sequence[Any]] = []
        for row in rows:
            values = list(row)
            for i in positions:
                values[i] = _writable(values[i])
            converted.append(values)
        return converted

    @staticmethod
    def _last_per_key(rows: list[Sequence[Any]], positions: list[int]) -> list[Sequence[Any]]:
        """One row per key, the last of equal keys winning (rows with a null key all stay:
        they never conflict)."""
        by_key: dict[Any, Sequence[Any]] = {}
        unkeyed: list[Sequence[Any]] = []
        for row in rows:
            key = tuple(row[i] for i in positions)
            if any(part is None for part in key):
                unkeyed.append(row)
            else:
                by_key[key] = row
        if len(by_key) + len(unkeyed) == len(rows):
            return rows
        return [*by_key.values(), *unkeyed]

    def _existing(self, job: BatchWrite, rows: list[Sequence[Any]]) -> int:
        """How many of the batch's keys the table holds already, locked until the commit (so
        the counts stay true under concurrent writers)."""
        positions = [list(job.columns).index(k) for k in job.key]
        keys = [tuple(row[i] for i in positions) for row in rows]
        keys = [key for key in keys if all(part is not None for part in key)]
        found = 0
        columns = _names(job.key)
        for chunk in chunks(keys, KEYS_PER_LOOKUP):
            parts: list[str | _Value] = [
                f"SELECT COUNT(*) FROM {_table(job.table)} WHERE ({columns}) IN ("  # noqa: S608 - quoted names, escaped values
            ]
            for n, key in enumerate(chunk):
                parts.append(", (" if n else "(")
                for m, part in enumerate(key):
                    if m:
                        parts.append(", ")
                    parts.append(_Value(part))
                parts.append(")")
            parts.append(") FOR UPDATE")
            found += int(self._run(*parts)[0][0])
        return found

    def _insert(self, job: BatchWrite, rows: list[Sequence[Any]]) -> None:
        """Multi-row INSERT statements of at most ``statement_bytes`` each."""
        encoding = self.conn.encoding
        prefix = f"INSERT INTO {_table(job.table)} ({_names(job.columns)}) VALUES ".encode(  # noqa: S608 - quoted names, escaped values
            encoding
        )
        suffix = b""
        if job.mode == "upsert":
            others = [name for name in job.columns if name not in job.key] or list(job.key[:1])
            updates = ", ".join(f"{_q(name)} = VALUES({_q(name)})" for name in others)
            suffix = f" ON DUPLICATE KEY UPDATE {updates}".encode(encoding)
        literal = self.conn.literal
        statement = bytearray(prefix)
        first = True
        for row in rows:
            values = b"(" + b",".join([literal(value) for value in row]) + b")"
            if not first and len(statement) + len(values) + len(suffix) + 1 > self.statement_bytes:
                self._affected(bytes(statement + suffix))
                statement = bytearray(prefix)
                first = True
            if not first:
                statement += b","
            statement += values
            first = False
        if not first:
            self._affected(bytes(statement + suffix))

    # -- replace -----------------------------------------------------------------------------

    @translated
    def stage(self, target: TableName, staging: TableName) -> None:
        self._run(f"CREATE TABLE IF NOT EXISTS {_table(staging)} LIKE {_table(target)}")

    @translated
    def swap(self, target: TableName, staging: TableName, run_id: str, node_key: str) -> bool:
        marks = self._marks(target)
        self._run("START TRANSACTION")
        try:
            claimed = self._claim(marks, run_id, node_key, SWAP_BATCH, target, "swapping")
            self.conn.commit()
        except BaseException:
            with contextlib.suppress(MySQLdb.Error):
                self.conn.rollback()
            raise
        if not claimed:
            return False
        self._finish_swap(target, run_id, node_key)
        return True

    def _finish_swap(self, target: TableName, run_id: str, node_key: str) -> None:
        """Put the staging table in the place of ``target`` (one atomic RENAME), drop the old
        table, mark the swap done. Safe to repeat at any point: no staging table means the
        rename happened."""
        staging = staging_table(target, run_id, node_key)
        old = target.sibling(f"flowplatform_old_{digest(run_id, node_key, str(target))}")
        if self.table_columns(staging) is not None:
            renames = f"{_table(staging)} TO {_table(target)}"
            if self.table_columns(target) is not None:
                renames = f"{_table(target)} TO {_table(old)}, {renames}"
            try:
                self._run(f"RENAME TABLE {renames}")
            except MySQLdb.Error as exc:
                # Another delivery renamed it meanwhile: the staging table is gone now.
                if mysql_backend._code(exc) not in (TABLE_EXISTS, NO_SUCH_TABLE) or (
                    self.table_columns(staging) is not None
                ):
                    raise
        self._run(f"DROP TABLE IF EXISTS {_table(old)}")
        self._run(
            f"UPDATE {self._marks(target)} SET state = 'done' WHERE run_id = ",  # noqa: S608 - quoted names, escaped values
            _Value(run_id),
            " AND node_key = ",
            _Value(node_key),
            " AND batch = ",
            _Value(SWAP_BATCH),
        )

    @translated
    def discard(self, staging: TableName, run_id: str, node_key: str) -> None:
        marks = self._marks(staging)
        self._run(f"DROP TABLE IF EXISTS {_table(staging)}")
        self._run(
            f"DELETE FROM {marks} WHERE run_id = ",  # noqa: S608 - quoted names, escaped values
            _Value(run_id),
            " AND node_key = ",
            _Value(node_key),
        )
