"""One delivery of ``sql_write``: batches cut, written one in flight, marks honoured, the
table created, staged and swapped as the mode asks."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from operator import itemgetter
from typing import Any, TypeVar

from nodes.builtin.casts import field_type_of
from nodes.builtin.sql_write.config import SqlWriteConfig
from nodes.builtin.sql_write.dialect import (
    SWAP_BATCH,
    BatchSummary,
    BatchWrite,
    TableName,
    WriteSession,
    staging_table,
)
from nodes.sdk.batches import AnyBatch, Record, RowBatch
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.schema import FieldType

_B = TypeVar("_B")


class Loader:
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
                        # In the node's context (its span, its run in the log lines).
                        in_flight = writer.submit(contextvars.copy_context().run, self._write, job)
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
            text_columns=_text_columns(batch, self.columns),
            copy_text=_copy_text(batch, self.columns),
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
    """The batch as value tuples in ``columns`` order (a missing field: null); built when
    first used for a batch whose rows are not built yet (a ``RowBatch`` with a source)."""
    if type(batch) is RowBatch and batch.source is not None:
        return _LazyRows(batch, columns)
    return _built_rows(batch, columns)


def _built_rows(batch: AnyBatch, columns: Sequence[str]) -> Sequence[Sequence[Any]]:
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


class _LazyRows(Sequence[Sequence[Any]]):
    """A row batch's rows in ``columns`` order, built when first used (its length is
    known before)."""

    def __init__(self, batch: RowBatch, columns: Sequence[str]) -> None:
        self.batch, self.columns = batch, columns
        self.built: Sequence[Sequence[Any]] | None = None

    def __len__(self) -> int:
        return len(self.batch)

    def _rows(self) -> Sequence[Sequence[Any]]:
        if self.built is None:
            self.built = _built_rows(self.batch, self.columns)
        return self.built

    def __getitem__(self, index: Any) -> Any:
        return self._rows()[index]

    def __iter__(self) -> Iterator[Sequence[Any]]:
        return iter(self._rows())


def _copy_text(batch: AnyBatch, columns: Sequence[str]) -> Callable[[], bytes | None] | None:
    """The batch's ``COPY`` text in ``columns`` order, from its row source when it has one
    (``None``: it has not)."""
    if type(batch) is not RowBatch or batch.source is None:
        return None
    positions = batch.positions()
    if not all(name in positions for name in columns):
        return None
    source = batch.source
    return lambda: source.copy_text([positions[name] for name in columns])


def _text_columns(batch: AnyBatch, columns: Sequence[str]) -> Sequence[Sequence[str]] | None:
    """The batch's ``text_columns`` in ``columns`` order, when it has them (not asked of a
    batch whose rows are not built: its ``COPY`` text comes from :func:`_copy_text`)."""
    if type(batch) is not RowBatch or batch.source is not None:
        return None
    if batch.text_columns is None:
        return None
    if batch.names == list(columns):
        return batch.text_columns
    positions = batch.positions()
    if all(name in positions for name in columns):
        return [batch.text_columns[positions[name]] for name in columns]
    return None


def _getter(keys: list[Any]) -> Any:
    if len(keys) == 1:
        key = keys[0]
        return lambda row: (row[key],)
    return itemgetter(*keys)


def _field_types(batch: AnyBatch, columns: Sequence[str]) -> dict[str, FieldType]:
    """Each column's type from the first non-null value of the batch; text when all are null
    or the value is of no schema type (a UUID, say: written in its text form)."""
    rows = _rows(batch, columns)
    types: dict[str, FieldType] = {}
    for position, name in enumerate(columns):
        value = next((row[position] for row in rows if row[position] is not None), None)
        kind = field_type_of(value)
        types[name] = FieldType.STRING if kind is FieldType.ANY else kind
    return types
