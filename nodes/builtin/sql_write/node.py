"""``sql_write``: write records into a database table, each batch exactly once."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from importlib import import_module
from operator import itemgetter
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from nodes.builtin.sql_write.dialect import (
    SWAP_BATCH,
    BatchSummary,
    BatchWrite,
    Dialect,
    TableName,
    WriteSession,
    dialect_for,
    staging_table,
)
from nodes.redaction import Redactor
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import (
    DEFAULT_BATCH_SIZE,
    AnyBatch,
    Batch,
    Node,
    NodeConfig,
    Record,
    RowBatch,
    first_input,
    rebatch,
)
from nodes.sdk.ports import Port, PortKind
from nodes.sdk.schema import FieldType, Problem, RecordSchema

SUMMARY_SCHEMA = RecordSchema(
    {
        "batch": FieldType.INTEGER,
        "rows": FieldType.INTEGER,
        "inserted": FieldType.INTEGER,
        "updated": FieldType.INTEGER,
    }
)

#: Identifiers longer than this are refused (PostgreSQL would cut them silently; MariaDB: 64).
MAX_IDENTIFIER = 63
#: How long the save-time check waits for the target database.
CHECK_TIMEOUT_S = 3
_B = TypeVar("_B")
_NAME = re.compile(r"^[^\x00]{1,63}$")


def _identifier(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"'{name[:80]}' is not a valid name (1 to 63 characters, no NUL)")
    return name


class SqlWriteConfig(NodeConfig):
    """Where and how to write the records."""

    connection: str = Field(min_length=1, description="Name of the database connection.")
    table: str = Field(
        min_length=1,
        max_length=2 * MAX_IDENTIFIER + 1,
        description="Target table: name or schema.name (always quoted as an identifier).",
    )
    mode: Literal["insert", "upsert", "replace"] = Field(
        "insert",
        description="insert: add the records; upsert: insert or update on key; replace: load "
        "a staging table and swap it in at the end, in one transaction.",
    )
    key: list[str] = Field(
        default_factory=list,
        description="Conflict columns of upsert (a unique index on them); with create_table, "
        "the primary key of the new table.",
    )
    columns: list[str] | None = Field(
        None,
        description="Columns to write, from the fields of the same names (default: all fields).",
    )
    batch_size: int = Field(
        5000, ge=1, le=100_000, description="Records per batch; each batch is one transaction."
    )
    create_table: bool = Field(
        False, description="Create the table when it does not exist (types from the records)."
    )
    statement_timeout_s: float = Field(
        300, gt=0, le=86_400, description="Longest a statement may run, in seconds."
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str) -> str:
        parsed = TableName.parse(table)
        for part in filter(None, (parsed.schema, parsed.name)):
            _identifier(part)
        if parsed.schema == "":
            raise ValueError("the schema part is empty (write name or schema.name)")
        return table

    @field_validator("key", "columns")
    @classmethod
    def _names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        for name in names:
            _identifier(name)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"'{repeated[0]}' is listed twice")
        return names

    @model_validator(mode="after")
    def _mode_needs(self) -> SqlWriteConfig:
        if self.mode == "upsert" and not self.key:
            raise ValueError("key: upsert needs the key columns (a unique index on them)")
        if self.columns is not None:
            if not self.columns:
                raise ValueError("columns: name at least one column (or leave it unset)")
            missing = [name for name in self.key if name not in self.columns]
            if missing:
                raise ValueError(f"key: '{missing[0]}' is not one of the columns written")
        return self


class SqlWriteNode(Node):
    """A destination: records into a table, batch by batch, each batch committed with its
    write mark so that a redelivered task never writes a batch twice."""

    type = "sql_write"
    version = 1
    label = "SQL write"
    description = (
        "Write records into a PostgreSQL table: insert, upsert on a key, or replace the whole "
        "table at once. Each batch is committed exactly once, whatever happens to the worker."
    )
    category = "destination"
    inputs = (Port("in", description="Records to write."),)
    outputs = (Port("out", PortKind.SUMMARY, description="One record per committed batch."),)
    Config = SqlWriteConfig
    accepts_rows = True
    #: Insert and upsert run once per partition of a partitioned source (write marks per
    #: partition); replace does not: it swaps the whole table once.
    partitionable = True
    config: SqlWriteConfig

    @classmethod
    def partitionable_with(cls, config: Mapping[str, Any]) -> bool:
        return bool(config.get("mode", "insert") != "replace")

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return SUMMARY_SCHEMA

    # -- save time ---------------------------------------------------------------------------

    def check(self, inputs: Mapping[str, RecordSchema]) -> list[Problem]:
        cfg = self.config
        fields = next(iter(inputs.values()), RecordSchema.unknown()).fields
        problems: list[Problem] = []
        if fields is not None and cfg.columns is not None:
            problems += [
                Problem(f"config.columns[{i}]", f"field '{name}' is not in the upstream records")
                for i, name in enumerate(cfg.columns)
                if name not in fields
            ]
        written = cfg.columns if cfg.columns is not None else fields
        if written is not None and cfg.columns is None:
            problems += [
                Problem(f"config.key[{i}]", f"key '{name}' is not a field of the upstream records")
                for i, name in enumerate(cfg.key)
                if name not in written
            ]
        target = self._target()
        if target is None:
            return problems
        dialect, table, unique = target
        if table is None:
            if not cfg.create_table:
                problems.append(
                    Problem(
                        "config.table", f"table '{cfg.table}' does not exist (or set create_table)"
                    )
                )
            return problems
        for name, path in self._written_paths(written):
            if name not in table:
                problems.append(Problem(path, f"table '{cfg.table}' has no column '{name}'"))
            elif fields and name in fields and not dialect.fits(fields[name], table[name]):
                problems.append(
                    Problem(
                        path,
                        f"field '{name}' ({fields[name]}) cannot be stored in column "
                        f"'{name}' ({table[name]})",
                    )
                )
        missing_key = [
            Problem(f"config.key[{i}]", f"table '{cfg.table}' has no column '{name}'")
            for i, name in enumerate(cfg.key)
            if name not in table
        ]
        unindexed = unique is not None and frozenset(cfg.key) not in unique
        if cfg.mode == "upsert" and not missing_key and unindexed:
            missing_key.append(
                Problem(
                    "config.key",
                    f"table '{cfg.table}' has no primary key or unique index on exactly "
                    f"({', '.join(cfg.key)}): upsert needs one",
                )
            )
        return problems + missing_key

    def _written_paths(self, written: Iterable[str] | None) -> list[tuple[str, str]]:
        """Each written column with the config path a problem about it points at."""
        if self.config.columns is not None:
            return [(name, f"config.columns[{i}]") for i, name in enumerate(self.config.columns)]
        return [(name, f"inputs.in.{name}") for name in written or ()]

    def _target(
        self,
    ) -> tuple[Dialect, dict[str, str] | None, list[frozenset[str]] | None] | None:
        """The dialect, the target table's columns (``None`` for a missing table) and unique
        keys (``None``: not known), or ``None`` when the target cannot be read now: then
        nothing is checked against it."""
        try:
            # Looked up here, not imported: running the node needs no Django model.
            lookup = import_module("nodes.models").lookup_connection
            info = lookup(self.config.connection)
            dialect = dialect_for(info.scheme)
            redactor = Redactor()
            redactor.add_connection(info)
            with dialect.open(
                info.url,
                redactor,
                statement_timeout_s=CHECK_TIMEOUT_S,
                connect_timeout_s=CHECK_TIMEOUT_S,
            ) as session:
                table = TableName.parse(self.config.table)
                return dialect, session.table_columns(table), session.unique_keys(table)
        except Exception:  # noqa: BLE001 - unreachable, unknown or refused: checked at run time
            return None

    # -- run time ----------------------------------------------------------------------------

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[Batch]:
        cfg = self.config
        connection = context.connection(cfg.connection)
        dialect = dialect_for(connection.scheme)
        with dialect.open(
            connection.url, context.redactor, statement_timeout_s=cfg.statement_timeout_s
        ) as session:
            run = _Run(self.config, session, context)
            summaries = run.write(rebatch(first_input(inputs), cfg.batch_size))
            yield from rebatch(([summary] for summary in summaries), DEFAULT_BATCH_SIZE)


class _Run:
    """One delivery of the node: the batches to write, the ones committed before, the table."""

    def __init__(
        self, config: SqlWriteConfig, session: WriteSession, context: ExecutionContext
    ) -> None:
        self.config = config
        self.session = session
        self.context = context
        self.target = TableName.parse(config.table)
        self.node_key = context.node_key
        if context.partition is not None:
            self.node_key = f"{context.node_key}[{context.partition}]"
        self.into = self.target  # the staging table, in replace mode
        self.columns: list[str] | None = config.columns
        self.staged = False  # the staging table exists (replace mode)

    def write(self, batches: Iterable[AnyBatch]) -> Iterator[Record]:
        run_id = self.context.run_id
        done = self.session.committed(self.target, run_id, self.node_key)
        if SWAP_BATCH in done:  # a replace that ended before this delivery: report it again
            yield from (done[index].as_record() for index in sorted(done) if index >= 0)
            return
        if self.config.mode == "replace":
            if self.context.partition is not None:
                raise NodeError("replace cannot run once per partition", permanent=True)
            self.into = staging_table(self.target, run_id, self.node_key)
        try:
            yield from self._batches(batches, done)
            if self.config.mode == "replace":
                if self.columns is None:
                    self._prepare([])  # no records: the table is replaced by an empty one
                if not self.staged:
                    self.context.logger.info("no records and no table: %s not created", self.target)
                elif self.session.swap(self.target, self.into, run_id, self.node_key):
                    self.context.logger.info("replaced %s", self.target)
        except NodeError as exc:
            if exc.permanent and self.into != self.target:
                with contextlib.suppress(NodeError):
                    self.session.discard(self.into, run_id, self.node_key)
            raise

    def _batches(
        self, batches: Iterable[AnyBatch], done: dict[int, BatchSummary]
    ) -> Iterator[Record]:
        """Write batch after batch with one write in flight: while the database takes batch N,
        the next batch is read from upstream and turned into rows (in this thread; the write
        runs in a thread of its own). Summaries come out in batch order."""
        in_flight: Future[BatchSummary] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sql_write") as writer:
            try:
                for index, batch, last in _with_last(batches):
                    if self.context.is_cancelled():
                        raise NodeError("cancelled", permanent=True)
                    if index == 0:
                        self._prepare(batch)
                    job = None
                    if index not in done:
                        job = self._job(index, batch, durable=last or index + 1 in done)
                    if in_flight is not None:
                        summary, in_flight = in_flight.result(), None
                        yield summary.as_record()
                    if job is None:
                        yield done[index].as_record()
                    else:
                        in_flight = writer.submit(self._write, job)
                if in_flight is not None:
                    summary, in_flight = in_flight.result(), None
                    yield summary.as_record()
            finally:
                if in_flight is not None:  # never give the connection back mid-write
                    with contextlib.suppress(Exception):
                        in_flight.result()

    def _write(self, job: BatchWrite) -> BatchSummary:
        summary = self.session.write(job)
        if summary is None:  # committed meanwhile by another delivery of this batch
            summary = self.session.committed(self.target, job.run_id, job.node_key)[job.batch]
        self.context.logger.info(
            "batch %d: %d rows, %d inserted, %d updated",
            job.batch,
            summary.rows,
            summary.inserted,
            summary.updated,
        )
        return summary

    def _job(self, index: int, batch: AnyBatch, durable: bool) -> BatchWrite:
        assert self.columns is not None
        mode = self.config.mode
        return BatchWrite(
            table=self.into,
            columns=self.columns,
            rows=_rows(batch, self.columns),
            mode="upsert" if mode == "upsert" else "insert",
            key=self.config.key if mode == "upsert" else (),
            run_id=self.context.run_id,
            node_key=self.node_key,
            batch=index,
            durable=durable,
        )

    def _prepare(self, first: AnyBatch) -> None:
        """Settle the columns from the first batch; create the table (or the staging table)
        and check that it has every column written."""
        cfg = self.config
        if self.columns is None:
            self.columns = _fields(first)
        missing_key = [name for name in cfg.key if name not in self.columns]
        if cfg.mode == "upsert" and missing_key:
            raise NodeError(
                f"key column '{missing_key[0]}' is not a field of the records", permanent=True
            )
        existing = self.session.table_columns(self.target)
        if existing is None:
            if not cfg.create_table:
                raise NodeError(
                    f"table '{self.target}' does not exist (create it, or set create_table)",
                    permanent=True,
                )
            if not first and not self.columns:
                return  # nothing to create a table from
            fields = _field_types(first, self.columns)
            self.session.create_table(self.into, fields, cfg.key)
            self.staged = True
            return
        absent = [name for name in self.columns if name not in existing]
        if absent:
            raise NodeError(
                f"table '{self.target}' has no column '{absent[0]}'"
                + (f" (nor {', '.join(absent[1:])})" if absent[1:] else ""),
                permanent=True,
            )
        if self.into != self.target:
            self.session.stage(self.target, self.into)
            self.staged = True


def _with_last(batches: Iterable[_B]) -> Iterator[tuple[int, _B, bool]]:
    """Each batch with its index and whether it is the last (one batch read ahead)."""
    stream = iter(batches)
    current = next(stream, None)
    index = 0
    while current is not None:
        following = next(stream, None)
        yield index, current, following is None
        current, index = following, index + 1


def _fields(batch: AnyBatch) -> list[str]:
    """The field names of a batch: a row batch's names, or the first record's keys."""
    if type(batch) is RowBatch:
        return list(batch.positions())
    return list(batch[0]) if batch else []


def _rows(batch: AnyBatch, columns: Sequence[str]) -> Sequence[Sequence[Any]]:
    """The batch as value tuples in ``columns`` order (a missing field: null)."""
    if type(batch) is RowBatch:
        if batch.names == list(columns):
            return batch.rows
        positions = batch.positions()
        if all(name in positions for name in columns):
            return list(map(_getter([positions[name] for name in columns]), batch.rows))
        batch = batch.records()
    try:
        return list(map(_getter(list(columns)), batch))
    except KeyError:
        return [tuple(record.get(name) for name in columns) for record in batch]


def _getter(keys: list[Any]) -> Any:
    if len(keys) == 1:
        key = keys[0]
        return lambda row: (row[key],)
    return itemgetter(*keys)


def field_type_of(value: Any) -> FieldType | None:
    """The field type a value has (``None`` for null: no information)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, int):
        return FieldType.INTEGER
    if isinstance(value, float):
        return FieldType.FLOAT
    if isinstance(value, Decimal):
        return FieldType.DECIMAL
    if isinstance(value, datetime):
        return FieldType.DATETIME
    if isinstance(value, date):
        return FieldType.DATE
    if isinstance(value, dict | list):
        return FieldType.JSON
    return FieldType.STRING


def _field_types(batch: AnyBatch, columns: Sequence[str]) -> dict[str, FieldType]:
    """Each column's type from the first non-null value of the batch (text when all null)."""
    rows = _rows(batch, columns)
    types: dict[str, FieldType] = {}
    for position, name in enumerate(columns):
        kinds = (field_type_of(row[position]) for row in rows)
        types[name] = next((kind for kind in kinds if kind is not None), FieldType.STRING)
    return types
