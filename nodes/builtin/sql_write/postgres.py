"""The PostgreSQL dialect of ``sql_write``: ``COPY`` for every batch, write marks, rename swap.

- ``insert``: ``COPY target (columns) FROM STDIN`` (text format: the server casts each value to
  its column's type).
- ``upsert``: ``COPY`` into a temporary table dropped at commit, then ``INSERT … SELECT DISTINCT
  ON (key) … ON CONFLICT (key) DO UPDATE`` (the last record of a key in a batch wins; ``xmax``
  tells inserted rows from updated ones).
- ``replace``: the batches go into a staging table made ``LIKE target INCLUDING ALL``; the swap
  renames the old table away, renames the staging table into its place and drops the old one,
  in one transaction (readers wait on the lock, then read the new table).

Connections come from :mod:`nodes.builtin.pg_pool` (guarded by :mod:`nodes.dbguard`, kept for
the next node when a write ends cleanly).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import chain
from operator import attrgetter
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from nodes.builtin import pg_pool
from nodes.builtin.sql_write.dialect import (
    MARKS_TABLE,
    SWAP_BATCH,
    BatchSummary,
    BatchWrite,
    Dialect,
    TableName,
    WriteSession,
    digest,
    translated,
)
from nodes.redaction import Redactor
from nodes.sdk.errors import NodeError
from nodes.sdk.schema import FieldType

COLUMN_TYPES = {
    FieldType.STRING: "text",
    FieldType.INTEGER: "bigint",
    FieldType.FLOAT: "double precision",
    FieldType.DECIMAL: "numeric",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATE: "date",
    FieldType.DATETIME: "timestamp with time zone",
    FieldType.JSON: "jsonb",
    FieldType.ANY: "jsonb",
}

_TEXT = {FieldType.STRING, FieldType.INTEGER, FieldType.FLOAT, FieldType.DECIMAL}
_TEXT |= {FieldType.BOOLEAN, FieldType.DATE, FieldType.DATETIME}
_NUMBERS = {FieldType.INTEGER, FieldType.FLOAT, FieldType.DECIMAL}
#: Database type (as ``format_type`` names it, without modifiers) -> field types that fit.
FITS: dict[str, set[FieldType]] = {
    "smallint": {FieldType.INTEGER},
    "integer": {FieldType.INTEGER},
    "bigint": {FieldType.INTEGER},
    "numeric": _NUMBERS,
    "real": _NUMBERS,
    "double precision": _NUMBERS,
    "text": _TEXT,
    "character varying": _TEXT,
    "character": _TEXT,
    "boolean": {FieldType.BOOLEAN},
    "date": {FieldType.DATE, FieldType.DATETIME},
    "timestamp without time zone": {FieldType.DATETIME, FieldType.DATE},
    "timestamp with time zone": {FieldType.DATETIME, FieldType.DATE},
    "json": set(FieldType),
    "jsonb": set(FieldType),
    "uuid": {FieldType.STRING},
}

_JSON_TYPES = ("json", "jsonb")


class PostgresDialect(Dialect):
    name = "PostgreSQL"

    @contextlib.contextmanager
    def open(
        self,
        url: str,
        redactor: Redactor,
        *,
        statement_timeout_s: float,
        connect_timeout_s: int = 10,
    ) -> Iterator[WriteSession]:
        timeout_ms = str(max(1, round(statement_timeout_s * 1000)))
        errors = _Errors(url, redactor, statement_timeout_s)

        def begin(conn: psycopg.Connection) -> None:
            conn.autocommit = True  # each write is an explicit transaction
            conn.read_only = None  # a connection kept by sql_query was read-only
            conn.execute("SELECT set_config('statement_timeout', %s, false)", [timeout_ms])

        with errors, pg_pool.connection(url, begin, connect_timeout_s) as conn:
            yield PostgresSession(conn, errors)

    def column_type(self, field_type: FieldType) -> str:
        return COLUMN_TYPES[field_type]

    def fits(self, field_type: FieldType, column_type: str) -> bool:
        if field_type is FieldType.ANY or column_type.endswith("[]"):
            return True
        accepted = FITS.get(column_type.partition("(")[0].strip())
        return accepted is None or field_type in accepted  # other types: not checked


class _Errors:
    """Turns driver errors into NodeError: transient for connection trouble and timeouts,
    permanent otherwise; the message holds the driver's first line and detail (which name the
    failing value or row), never the URL or a secret."""

    def __init__(self, url: str, redactor: Redactor, timeout_s: float) -> None:
        self.url = url
        self.redactor = redactor
        self.timeout_s = timeout_s

    def __enter__(self) -> _Errors:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, psycopg.errors.QueryCanceled):
            raise NodeError(
                f"a statement ran longer than the statement timeout ({self.timeout_s:g} s)",
                permanent=False,
            ) from None
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            raise NodeError(f"database unavailable: {self.message(exc)}", permanent=False) from None
        if isinstance(exc, psycopg.Error):
            raise NodeError(f"write failed: {self.message(exc)}", permanent=True) from None

    def message(self, exc: psycopg.Error) -> str:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if exc.diag.message_detail:
            text = f"{text} ({exc.diag.message_detail})"
        return self.redactor.cut(text.replace(self.url, "***"), 500)


class PostgresSession(WriteSession):
    def __init__(self, conn: psycopg.Connection, errors: _Errors) -> None:
        self.conn = conn
        self.errors = errors
        self._marks_ready: set[TableName] = set()
        self._json_positions: dict[tuple[TableName, tuple[str, ...]], list[int]] = {}

    # -- reading the target ------------------------------------------------------------------

    @translated
    def table_columns(self, table: TableName) -> dict[str, str] | None:
        oid = self._oid(table)
        if oid is None:
            return None
        rows = self.conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [oid],
        ).fetchall()
        return dict(rows)

    @translated
    def unique_keys(self, table: TableName) -> list[frozenset[str]] | None:
        oid = self._oid(table)
        if oid is None:
            return None
        rows = self.conn.execute(
            "SELECT array_agg(a.attname) FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL"
            " GROUP BY i.indexrelid",
            [oid],
        ).fetchall()
        return [frozenset(row[0]) for row in rows]

    def _oid(self, table: TableName) -> int | None:
        # The name as a quoted identifier, bound as a value: to_regclass parses it.
        qualified = _ident(table).as_string(self.conn)
        row = self.conn.execute("SELECT to_regclass(%s)::oid", [qualified]).fetchone()
        return None if row is None else row[0]

    # -- creating ----------------------------------------------------------------------------

    @translated
    def create_table(
        self, table: TableName, fields: Mapping[str, FieldType], key: Sequence[str] = ()
    ) -> None:
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(COLUMN_TYPES[kind]))
            for name, kind in fields.items()
        ]
        if key:
            columns.append(sql.SQL("PRIMARY KEY ({})").format(_idents(key)))
        statement = sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            _ident(table), sql.SQL(", ").join(columns)
        )
        _create_once(self.conn, statement)

    # -- write marks -------------------------------------------------------------------------

    @translated
    def committed(self, table: TableName, run_id: str, node_key: str) -> dict[int, BatchSummary]:
        marks = self._marks(table)
        rows = self.conn.execute(
            sql.SQL(
                "SELECT batch, rows, inserted, updated FROM {} WHERE run_id = %s AND node_key = %s"
            ).format(marks),
            [run_id, node_key],
        ).fetchall()
        return {row[0]: BatchSummary(*row) for row in rows}

    def _marks(self, table: TableName) -> sql.Composable:
        marks = table.sibling(MARKS_TABLE)
        if marks not in self._marks_ready:
            _create_once(
                self.conn,
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " run_id text NOT NULL, node_key text NOT NULL, batch integer NOT NULL,"
                    " target text NOT NULL, rows integer NOT NULL DEFAULT 0,"
                    " inserted integer NOT NULL DEFAULT 0, updated integer NOT NULL DEFAULT 0,"
                    " written_at timestamp with time zone NOT NULL DEFAULT now(),"
                    " PRIMARY KEY (run_id, node_key, batch))"
                ).format(_ident(marks)),
            )
            self._marks_ready.add(marks)
        return _ident(marks)

    def _claim(
        self,
        marks: sql.Composable,
        run_id: str,
        node_key: str,
        batch: int,
        target: TableName,
        rows: int = 0,
    ) -> bool:
        """Take the batch's mark in the open transaction (waiting for a concurrent delivery
        that holds it); ``False`` when it is committed already. ``rows``: the figures of an
        insert, known before it runs (rows = inserted)."""
        claimed = self.conn.execute(
            sql.SQL(
                "INSERT INTO {} (run_id, node_key, batch, target, rows, inserted)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
            ).format(marks),
            [run_id, node_key, batch, str(target), rows, rows],
        ).fetchone()
        return claimed is not None

    # -- writing -----------------------------------------------------------------------------

    @translated
    def write(self, job: BatchWrite) -> BatchSummary | None:
        marks = self._marks(job.table)
        json_columns = self._json_columns(job.table, job.columns)
        upsert = job.mode == "upsert"
        with self.conn.transaction():
            # An insert's figures are known: its mark is taken with them (no update after).
            rows = 0 if upsert else len(job.rows)
            if not self._claim(marks, job.run_id, job.node_key, job.batch, job.table, rows):
                return None
            if not job.durable:
                # Flushed with the next durable commit (WAL is flushed in order): see BatchWrite.
                self.conn.execute("SET LOCAL synchronous_commit = off")
            if not upsert:
                self._copy(_ident(job.table), job.columns, job, json_columns)
                return BatchSummary(job.batch, len(job.rows), len(job.rows), 0)
            inserted, updated = self._upsert(job, json_columns)
            self.conn.execute(
                sql.SQL(
                    "UPDATE {} SET rows = %s, inserted = %s, updated = %s"
                    " WHERE run_id = %s AND node_key = %s AND batch = %s"
                ).format(marks),
                [len(job.rows), inserted, updated, job.run_id, job.node_key, job.batch],
            )
        return BatchSummary(job.batch, len(job.rows), inserted, updated)

    def _json_columns(self, table: TableName, columns: Sequence[str]) -> list[int]:
        """Positions of the written columns that hold JSON (their values are sent as JSON)."""
        found = self._json_positions.get((table, tuple(columns)))
        if found is None:
            types = self.table_columns(table) or {}
            found = [i for i, name in enumerate(columns) if types.get(name) in _JSON_TYPES]
            self._json_positions[table, tuple(columns)] = found
        return found

    def _copy(
        self,
        target: sql.Composable,
        columns: Sequence[str],
        job: BatchWrite,
        json_columns: list[int],
    ) -> None:
        """The job's rows, as the text its row source gives, or its ``text_columns`` (the
        values as ``str()`` of each, sent as they are), or converted; JSON columns' values
        are written as JSON."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, _idents(columns))
        rows, text_columns = job.rows, job.text_columns
        text: str | bytes | None = None
        if job.copy_text is not None and not json_columns:
            text = job.copy_text()
        if text is None and text_columns is not None and not json_columns:
            text = copy_text_of_columns(text_columns)
        elif text is None and not json_columns:
            text = copy_text(rows, len(columns))
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            if text is not None:
                copy.write(text)
                return
            if json_columns:
                rows = map(_jsonify(json_columns), rows)  # type: ignore[assignment]
            for row in rows:
                copy.write_row(row)

    def _upsert(self, job: BatchWrite, json_columns: list[int]) -> tuple[int, int]:
        batch = sql.Identifier("flowplatform_batch")
        order = sql.Identifier("flowplatform_row")
        columns = _idents(job.columns)
        self.conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
            ).format(batch, columns, _ident(job.table))
        )
        self.conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint GENERATED ALWAYS AS IDENTITY").format(
                batch, order
            )
        )
        self._copy(batch, job.columns, job, json_columns)
        others = [name for name in job.columns if name not in job.key] or list(job.key[:1])
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in others
        )
        key = _idents(job.key)
        row = self.conn.execute(
            sql.SQL(
                "WITH written AS (INSERT INTO {target} ({columns})"
                " SELECT DISTINCT ON ({key}) {columns} FROM {batch} ORDER BY {key}, {order} DESC"
                " ON CONFLICT ({key}) DO UPDATE SET {updates}"
                " RETURNING xmax = 0 AS fresh)"
                " SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh)"
                " FROM written"
            ).format(
                target=_ident(job.table),
                columns=columns,
                key=key,
                batch=batch,
                order=order,
                updates=updates,
            )
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    # -- replace -----------------------------------------------------------------------------

    @translated
    def stage(self, target: TableName, staging: TableName) -> None:
        _create_once(
            self.conn,
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)").format(
                _ident(staging), _ident(target)
            ),
        )

    @translated
    def swap(self, target: TableName, staging: TableName, run_id: str, node_key: str) -> bool:
        marks = self._marks(target)
        old = target.sibling(f"flowplatform_old_{digest(run_id, node_key, str(target))}")
        with self.conn.transaction():
            if not self._claim(marks, run_id, node_key, SWAP_BATCH, target):
                return False
            oid = self._oid(target)
            exists = oid is not None
            if oid is not None:
                self._refuse_dependents(target, oid)
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                        _ident(target), sql.Identifier(old.name)
                    )
                )
                self._adopt_sequences(old, staging)
            self.conn.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    _ident(staging), sql.Identifier(target.name)
                )
            )
            if exists:
                self.conn.execute(sql.SQL("DROP TABLE {}").format(_ident(old)))
        return True

    def _refuse_dependents(self, target: TableName, oid: int) -> None:
        """Views and foreign keys that use the table would keep the old one (or stop the drop):
        refuse the swap, naming them."""
        dependents = self.conn.execute(
            "SELECT DISTINCT r.ev_class::regclass::text FROM pg_depend d"
            " JOIN pg_rewrite r ON r.oid = d.objid"
            " WHERE d.refobjid = %(oid)s AND d.classid = 'pg_rewrite'::regclass"
            " AND r.ev_class <> %(oid)s"
            " UNION SELECT conname || ' on ' || conrelid::regclass::text FROM pg_constraint"
            " WHERE confrelid = %(oid)s AND contype = 'f' AND conrelid <> %(oid)s",
            {"oid": oid},
        ).fetchall()
        if dependents:
            names = ", ".join(sorted(row[0] for row in dependents))
            raise NodeError(
                f"table '{target}' cannot be replaced: other objects depend on it ({names});"
                " use upsert, or drop them first",
                permanent=True,
            )

    def _adopt_sequences(self, old: TableName, new: TableName) -> None:
        """Sequences owned by the old table's columns (``serial``), which the new table's
        defaults use too, change hands before the old table is dropped."""
        owned = self.conn.execute(
            "SELECT d.objid::regclass::text, a.attname FROM pg_depend d"
            " JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
            " JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
            " WHERE d.refobjid = to_regclass(%s) AND d.deptype = 'a'",
            [_ident(old).as_string(self.conn)],
        ).fetchall()
        for sequence, column in owned:
            # ``sequence`` is regclass text: an already quoted, qualified name.
            self.conn.execute(
                sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                    sql.SQL(sequence), _ident(new, column)
                )
            )

    @translated
    def discard(self, staging: TableName, run_id: str, node_key: str) -> None:
        marks = self._marks(staging)
        with self.conn.transaction():
            self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(staging)))
            self.conn.execute(
                sql.SQL("DELETE FROM {} WHERE run_id = %s AND node_key = %s").format(marks),
                [run_id, node_key],
            )


# -- COPY text, a column at a time -----------------------------------------------------------
#: What COPY's text format escapes in a value, as psycopg's ``write_row`` does.
_COPY_ESCAPES = str.maketrans(
    {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}
)
_OTHER_ESCAPED = ("\\", "\r", "\b", "\v", "\f")  # besides the tab and the line end
_ESCAPED = re.compile("[\b\t\n\v\f\r\\\\]")
_NULL = "\\N"


def _text_column(values: Sequence[str]) -> Sequence[str]:
    if _ESCAPED.search("".join(values)):
        return [value.translate(_COPY_ESCAPES) for value in values]
    return values


def _finite_decimals(values: Sequence[Decimal]) -> Sequence[str] | None:
    return list(map(str, values)) if all(map(Decimal.is_finite, values)) else None


def _datetimes(values: Sequence[datetime]) -> Sequence[str]:
    """``str()`` of each: by orjson for a column of naive or ``timezone.utc`` datetimes (the
    same text, a few times faster), else one by one (orjson would round an offset's seconds)."""
    if set(map(_TZINFO, values)) <= _ORJSON_ZONES:
        # '["2025-01-01T10:00:00+00:00","..."]': no "T" but the separator, no '","' inside
        listed = orjson.dumps(values).decode()[2:-2].replace("T", " ")
        return listed.split('","')
    return list(map(datetime.__str__, values))


_TZINFO = attrgetter("tzinfo")
_ORJSON_ZONES = {None, UTC}


def _booleans(values: Sequence[bool]) -> Sequence[str]:
    return ["t" if value else "f" for value in values]


#: Value type -> the text psycopg's text dumper gives for every value of a column of it
#: (``None``: not for this column; the batch then goes through ``write_row``).
_COLUMN_TEXT: dict[type, Callable[[Sequence[Any]], Sequence[str] | None]] = {
    str: _text_column,
    int: lambda values: list(map(int.__repr__, values)),
    Decimal: _finite_decimals,
    float: lambda values: list(map(float.__repr__, values)),
    bool: _booleans,
    datetime: _datetimes,
    date: lambda values: list(map(date.__str__, values)),
}


def copy_text(rows: Sequence[Sequence[Any]], width: int) -> str | None:
    """The rows as the text of ``COPY … FROM STDIN``, built a column at a time: the same
    text as ``write_row`` (psycopg's text dumpers, then COPY's escapes), null as ``\\N``.
    ``None`` when a column mixes types or holds a type without a column conversion here
    (JSON, UUID, non-finite decimals...): the caller writes those rows one by one.

    Rows of strings only (text as read) are joined as they are and the whole text checked
    once (as many tabs and line ends as the rows and columns give, no backslash, ``\\r``,
    ``\\b``, ``\\v``, ``\\f``); otherwise, and when a value needs COPY's escapes, by column: a
    string column is checked in one search and escaped value by value only when it must be."""
    if not rows:
        return ""
    if set(map(len, rows)) != {width}:
        return None
    if set(map(type, rows[0])) == {str} and set(map(type, chain.from_iterable(rows))) == {str}:
        text = "\n".join(map("\t".join, rows))  # text as read: nothing to convert
        if _plain(text, len(rows), width):
            return text + "\n"
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for index, values in enumerate(columns):
        kinds = set(map(type, values))
        nulls = type(None) in kinds
        kinds.discard(type(None))
        if not kinds:
            columns[index] = [_NULL] * len(values)
            continue
        if len(kinds) != 1:
            return None
        convert = _COLUMN_TEXT.get(kinds.pop())
        if convert is None:
            return None
        if nulls:
            present = [value for value in values if value is not None]
            converted = convert(present)
            if converted is None:
                return None
            texts = iter(converted)
            columns[index] = [_NULL if value is None else next(texts) for value in values]
        else:
            whole = convert(values)
            if whole is None:
                return None
            columns[index] = whole
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def copy_text_of_columns(columns: Sequence[Sequence[str]]) -> str:
    """The text of ``COPY … FROM STDIN`` for columns of strings only (``RowBatch.text_columns``,
    all of one length): joined as they are when no value holds a character COPY escapes (the
    whole text checked once), else each column escaped as :func:`copy_text` does."""
    if not columns or not columns[0]:
        return ""
    text = "\n".join(map("\t".join, zip(*columns, strict=True)))
    if not _plain(text, len(columns[0]), len(columns)):
        escaped = list(map(_text_column, columns))
        text = "\n".join(map("\t".join, zip(*escaped, strict=True)))
    return text + "\n"


def _plain(text: str, rows: int, width: int) -> bool:
    """Whether no value in the joined ``text`` holds a character COPY escapes."""
    return (
        text.count("\t") == rows * (width - 1)
        and text.count("\n") == rows - 1
        and not any(char in text for char in _OTHER_ESCAPED)
    )


def _ident(table: TableName, *more: str) -> sql.Identifier:
    names = (table.schema, table.name) if table.schema else (table.name,)
    return sql.Identifier(*names, *more)


def _idents(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _jsonify(positions: list[int]) -> Any:
    def row_with_json(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for i in positions:
            if values[i] is not None:
                values[i] = Jsonb(values[i])
        return values

    return row_with_json


def _create_once(conn: psycopg.Connection, statement: sql.Composed) -> None:
    """``CREATE … IF NOT EXISTS`` that also survives a concurrent creation of the same name
    (PostgreSQL then reports a duplicate catalog row instead of skipping)."""
    try:
        with conn.transaction():
            conn.execute(statement)
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
        with conn.transaction():
            conn.execute(statement)
