"""What ``sql_write`` asks of a database: the SQL dialect interface.

The node owns the behaviour (modes, batches, write marks, summaries); a dialect owns the SQL of
one database family and its driver. A dialect is looked up by the connection URL's scheme
(:data:`DIALECTS`, dotted paths imported on first use) and opens a :class:`WriteSession`: one
connection, outside any transaction between calls, on which every method below runs.

Rules every dialect keeps:

- identifiers are always quoted by the driver's identifier quoting, values always bound: a
  table or column name is never formatted into SQL as text;
- every connection goes through the database guard (:mod:`nodes.dbguard`);
- driver errors become :class:`~nodes.sdk.errors.NodeError` (``permanent`` when a retry cannot
  help) whose message went through the session's redactor: no URL, no password;
- :meth:`WriteSession.write` is one transaction: it claims the batch's write mark first (so a
  concurrent delivery of the same batch waits, then skips), writes the rows, records the counts
  on the mark, and commits. A batch is therefore written exactly once per ``(run_id,
  node_key, batch)``, whatever kills the worker and whenever.
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal, TypeVar

from nodes.redaction import Redactor
from nodes.sdk.errors import NodeError
from nodes.sdk.schema import FieldType

#: The table that records committed batches, in the target table's schema.
MARKS_TABLE = "flowplatform_write_marks"

#: The ``batch`` of the mark that records a ``replace`` swap (batches count from 0).
SWAP_BATCH = -1

WriteMode = Literal["insert", "upsert"]


@dataclass(frozen=True)
class TableName:
    """A table, optionally schema-qualified; both parts are identifiers, quoted when used."""

    name: str
    schema: str | None = None

    @classmethod
    def parse(cls, text: str) -> TableName:
        """``name`` or ``schema.name`` (the first dot separates them)."""
        schema, dot, name = text.partition(".")
        return cls(name, schema) if dot else cls(text)

    def sibling(self, name: str) -> TableName:
        """Another table in the same schema (the write marks, a staging table)."""
        return TableName(name, self.schema)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class BatchSummary:
    """What one committed batch did (the node's output record, and the mark's counts)."""

    batch: int
    rows: int
    inserted: int
    updated: int

    def as_record(self) -> dict[str, int]:
        return {
            "batch": self.batch,
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class BatchWrite:
    """One batch to write in one transaction, with its write mark."""

    table: TableName
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]  # value tuples in ``columns`` order
    mode: WriteMode
    key: Sequence[str]  # the conflict columns of ``upsert`` (empty otherwise)
    run_id: str
    node_key: str
    batch: int
    #: ``False``: the commit may return before it is on disk (a database crash may then lose
    #: the batch together with its mark, and a redelivery writes it again). The node makes its
    #: last write of a delivery durable, which makes every earlier one durable too.
    durable: bool = True
    #: Each column's values as ``str()`` of each, in ``columns`` order, when the batch came
    #: with them (``RowBatch.text_columns``): a dialect that writes text may send these
    #: instead of converting ``rows``.
    text_columns: Sequence[Sequence[str]] | None = None
    #: The text of ``COPY … FROM STDIN`` for the rows in ``columns`` order, from the batch's
    #: row source (``RowBatch.source``) when it has one: ``None`` from the call when it cannot
    #: give it (the rows are then converted).
    copy_text: Callable[[], bytes | None] | None = None


class WriteSession(ABC):
    """One open connection to the target database. Every method raises only
    :class:`~nodes.sdk.errors.NodeError` (redacted) for database errors."""

    @abstractmethod
    def table_columns(self, table: TableName) -> dict[str, str] | None:
        """The table's columns and their database types, in table order (``None``: no such
        table)."""

    def unique_keys(self, table: TableName) -> list[frozenset[str]] | None:
        """The column sets of the table's primary key and unique indexes, for the save-time
        check of an upsert ``key`` (``None``: not known, not checked)."""
        return None

    @abstractmethod
    def create_table(
        self, table: TableName, fields: Mapping[str, FieldType], key: Sequence[str] = ()
    ) -> None:
        """Create the table with one column per field (a type from :meth:`Dialect.column_type`)
        and ``key``, when given, as its primary key; nothing when it exists."""

    @abstractmethod
    def committed(self, table: TableName, run_id: str, node_key: str) -> dict[int, BatchSummary]:
        """The batches already committed for this run and node, by batch number, the swap of
        a ``replace`` included (as :data:`SWAP_BATCH`). The write-mark table is created here
        when it does not exist yet, next to ``table``."""

    @abstractmethod
    def write(self, job: BatchWrite) -> BatchSummary | None:
        """Claim the mark, write the rows (``insert``: plain insert; ``upsert``: insert or update
        on ``key``, the last of equal keys in a batch winning), record the counts, commit.
        ``None`` when the mark was already taken: another delivery committed this batch."""

    @abstractmethod
    def stage(self, target: TableName, staging: TableName) -> None:
        """Create ``staging`` with the columns, types and indexes of ``target``, unless it
        exists (a redelivered ``replace`` keeps the batches it already loaded)."""

    @abstractmethod
    def swap(self, target: TableName, staging: TableName, run_id: str, node_key: str) -> bool:
        """In one transaction: claim the swap mark (:data:`SWAP_BATCH`), put ``staging`` in the
        place of ``target`` (which may not exist) and drop the old table. Readers see the old
        table or the new one, never a half-loaded one. ``False`` when it was already done."""

    @abstractmethod
    def discard(self, staging: TableName, run_id: str, node_key: str) -> None:
        """Drop ``staging`` and forget this run's marks for it (a ``replace`` that failed for
        good: a new attempt starts over)."""


class Dialect(ABC):
    """The SQL of one database family, selected by connection URL scheme."""

    name: str

    @abstractmethod
    def open(
        self,
        url: str,
        redactor: Redactor,
        *,
        statement_timeout_s: float,
        connect_timeout_s: int = 10,
    ) -> AbstractContextManager[WriteSession]:
        """A session on a new (or kept) connection that passed the database guard, where no
        statement runs longer than ``statement_timeout_s``. Driver errors, while opening and
        in every session method, become redacted ``NodeError``."""

    @abstractmethod
    def column_type(self, field_type: FieldType) -> str:
        """The column type ``create_table`` gives a field of this type."""

    @abstractmethod
    def fits(self, field_type: FieldType, column_type: str) -> bool:
        """Whether values of ``field_type`` can be stored in a column of ``column_type`` (as the
        database reports it) without a cast that could fail: the save-time type check."""


#: Connection URL scheme -> dotted path of the dialect class.
DIALECTS: dict[str, str] = {
    "postgresql": "nodes.builtin.sql_write.postgres.PostgresDialect",
    "postgres": "nodes.builtin.sql_write.postgres.PostgresDialect",
    "mysql": "nodes.builtin.sql_write.mariadb.MariaDBDialect",
    "mariadb": "nodes.builtin.sql_write.mariadb.MariaDBDialect",
}


def dialect_for(scheme: str) -> Dialect:
    """The dialect for a connection URL scheme; a permanent NodeError when there is none."""
    path = DIALECTS.get(scheme.lower())
    if path is None:
        known = ", ".join(sorted(DIALECTS))
        raise NodeError(
            f"sql_write cannot write to '{scheme}' connections (supported: {known})",
            permanent=True,
        )
    module, _, attr = path.rpartition(".")
    try:
        found = import_module(module)
    except ModuleNotFoundError:  # a dialect whose driver or module is not installed here
        raise NodeError(
            f"sql_write cannot write to '{scheme}' connections on this installation",
            permanent=True,
        ) from None
    dialect: Dialect = getattr(found, attr)()
    return dialect


def staging_table(target: TableName, run_id: str, node_key: str) -> TableName:
    """The staging table of one ``replace`` run of one node: the same name at every delivery,
    in the target's schema."""
    return target.sibling(f"flowplatform_stage_{digest(run_id, node_key, str(target))}")


def digest(*parts: str) -> str:
    """A short stable name part (16 hex digits) for derived table names."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``values`` cut into slices of at most ``size`` (multi-row statements with a bound on the
    parameters per statement)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


_F = TypeVar("_F", bound=Callable[..., Any])


def translated(method: _F) -> _F:
    """Run a session method inside the session's ``errors`` context, which turns the driver's
    errors into NodeError (each dialect's session defines how)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.errors:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
