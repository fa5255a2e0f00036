"""``file_write``: write the incoming records as files, each one whole or not at all."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import IO, Any, Literal

from pydantic import Field, field_validator, model_validator

from nodes.builtin.file_formats import RecordWriter, extension, make_writer, parquet_types
from nodes.builtin.path_template import RUN_NAMES, PathTemplate, run_path_values
from nodes.filestore import FileStore, check_relative, open_store
from nodes.sdk.batches import Batch, RecordStream, first_input, rebatch
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port, PortKind
from nodes.sdk.schema import FieldType, RecordSchema

#: Names a file_write path may use: the run's values, and the file's own.
WRITE_NAMES = RUN_NAMES | {"flow", "node", "part", "ext"}

SUMMARY = RecordSchema(
    {"path": FieldType.STRING, "rows": FieldType.INTEGER, "bytes": FieldType.INTEGER}
)


class FileWriteConfig(NodeConfig):
    """Where and how to write the files."""

    connection: str = Field(min_length=1, description="Name of the file connection (file or s3).")
    path: str = Field(
        min_length=1,
        description="Template of each file's path, relative to the connection: "
        "exports/{flow}/{interval_start:%Y/%m/%d}/part-{part:05d}.{ext}. Names: flow, node, "
        "part (0, 1, ...), ext, interval_start, interval_end, logical_date, run_id.",
    )
    format: Literal["csv", "jsonl", "parquet"] = Field("csv", description="csv, jsonl or parquet.")
    compression: Literal["none", "gzip"] = Field(
        "none", description="gzip: the whole file for csv/jsonl (ext csv.gz), pages for parquet."
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field delimiter.")
    max_rows_per_file: int | None = Field(
        None, ge=1, description="Start a new file (the next part) after this many rows."
    )
    columns: dict[str, FieldType] | None = Field(
        None,
        description="Parquet: the type of a column that may be null throughout a file's first "
        "batch (other columns take the type of their values).",
    )
    batch_size: int = Field(
        10_000, ge=1, le=1_000_000, description="Rows written at a time (Parquet: per row group)."
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        check_relative(value, "path")
        PathTemplate.parse(value, WRITE_NAMES)
        return value

    @model_validator(mode="after")
    def _parts_named(self) -> FileWriteConfig:
        if (
            self.max_rows_per_file
            and "part" not in PathTemplate.parse(self.path, WRITE_NAMES).names
        ):
            raise ValueError("with max_rows_per_file the path needs {part}, or files overwrite")
        return self


class FileWriteNode(Node[FileWriteConfig]):
    """A sink: files of at most ``max_rows_per_file`` records; one summary record per file."""

    type = "file_write"
    version = 1
    label = "Write files"
    description = "Write records as CSV, JSON Lines or Parquet files to a directory or S3 bucket."
    category = "destination"
    inputs = (Port("in", description="The records to write."),)
    outputs = (
        Port("out", PortKind.SUMMARY, description="One record per file: path, rows, bytes."),
    )

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return SUMMARY

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        store = open_store(context.connection(self.config.connection).url)
        # Parquet column types, from the declared columns and then from each file written.
        known = parquet_types(self.config.columns or {}) if self.config.format == "parquet" else {}
        limit = self.config.max_rows_per_file or sys.maxsize
        current: _File | None = None
        part = 0
        try:
            for batch in rebatch(first_input(inputs), self.config.batch_size):
                start = 0
                while start < len(batch):
                    if current is None:
                        current = self._open(store, context, part, known)
                    piece = batch[start : start + limit - current.writer.rows]
                    current.writer.write(piece)
                    start += len(piece)
                    if current.writer.rows >= limit:
                        yield [current.commit()]
                        current, part = None, part + 1
                if context.is_cancelled():
                    return  # the file being written is dropped, not committed
            if current is not None:
                yield [current.commit()]
                current = None
        finally:
            if current is not None:
                current.abort()

    def _open(
        self, store: FileStore, context: ExecutionContext, part: int, known: dict[str, Any]
    ) -> _File:
        config = self.config
        try:
            run_values = run_path_values(context.run_values)
        except ValueError as exc:
            raise NodeError(f"path: {exc}", permanent=True) from None
        values = {
            **run_values,
            "flow": context.flow or "flow",
            "node": context.node_key,
            "part": part,
            "ext": extension(config.format, config.compression),
        }
        try:
            key = check_relative(PathTemplate.parse(config.path, WRITE_NAMES).render(values))
        except ValueError as exc:
            raise NodeError(f"path: {exc}", permanent=True) from None
        writer = partial(make_writer, config.format, compression=config.compression)
        return _File(store, key, partial(writer, delimiter=config.delimiter, known=known))


class _File:
    """One file being written: committed whole, or aborted leaving nothing."""

    def __init__(
        self, store: FileStore, key: str, writer: Callable[[IO[bytes]], RecordWriter]
    ) -> None:
        self.key = key
        self.stack = contextlib.ExitStack()
        self.raw = self.stack.enter_context(store.open_write(key))
        self.writer = writer(self.raw)

    def commit(self) -> dict[str, Any]:
        self.writer.close()
        size = self.raw.tell()
        self.stack.close()  # the rename, or the upload
        return {"path": self.key, "rows": self.writer.rows, "bytes": size}

    def abort(self) -> None:
        """Leave nothing behind: the temporary file is removed, the upload never made."""
        with contextlib.suppress(Exception):
            self.writer.close()  # its buffers go to the temporary file, discarded below
        error = NodeError("aborted")
        self.stack.__exit__(NodeError, error, None)
