"""``file_read``: stream the records of the files matching a glob, in a directory or a bucket."""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nodes.builtin.file_formats import (
    FileFormatError,
    decompressed,
    read_csv,
    read_json_array,
    read_jsonl,
    read_parquet,
)
from nodes.builtin.path_template import RUN_NAMES, PathTemplate, glob_escape, run_path_values
from nodes.filestore import FileStore, check_relative, glob_regex, open_store
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, AnyBatch, RecordStream, RowBatch
from nodes.sdk.capabilities import Rereadable, SlicedSource
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import FieldType, RecordSchema

FILE_FIELD = "_file"
#: At most this many slices (partitions) per run: more files are grouped, consecutive files.
MAX_FILE_SLICES = 1000


def _per_file(per_file: bool | None, rows: int | None) -> bool:
    return bool(per_file) if per_file is not None else not rows


class FileReadConfig(NodeConfig):
    """Which files to read and how to parse them."""

    connection: str = Field(min_length=1, description="Name of the file connection (file or s3).")
    path: str = Field(
        min_length=1,
        description="Glob relative to the connection (inbox/2025-*/orders-*.csv.gz; ** spans "
        "directories). Run values may appear as {interval_start:%Y-%m-%d} (names: "
        "interval_start, interval_end, logical_date, run_id).",
    )
    format: Literal["csv", "jsonl", "json", "parquet"] = Field(
        "csv", description="csv, jsonl (one object per line), json (one array) or parquet."
    )
    compression: Literal["auto", "gzip", "none"] = Field(
        "auto", description="auto: gzip for names ending in .gz; gzip; none."
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field delimiter.")
    quotechar: str = Field('"', min_length=1, max_length=1, description="CSV quote character.")
    header: bool = Field(True, description="CSV: the first line names the columns.")
    encoding: str = Field("utf-8", min_length=1, description="Text encoding (csv, jsonl, json).")
    columns: dict[str, FieldType] | None = Field(
        None,
        description="Declared columns and types: only these are read, CSV values are cast "
        "(an empty cell is null), and the schema is known to the nodes after. Without: every "
        "column, CSV values as text, schema unknown.",
    )
    with_file_name: bool = Field(
        False, description="Add a _file field: the file's path relative to the connection."
    )
    run_files: bool = Field(
        False,
        description="Read only the files the run names — the run value file_name (one file) or "
        "file_names (a list), as a file trigger sets them — instead of every file matching "
        "path; each must match path. A run naming no file fails (a preview reads path).",
    )
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, le=100_000, description="Records per batch.")
    allow_empty: bool = Field(
        False, description="Succeed with no records when no file matches (default: fail)."
    )
    partition_rows: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="Cut the output into partitions of this many rows: the partitionable nodes "
        "that follow run once per partition, in parallel across workers.",
    )
    partition_per_file: bool | None = Field(
        None,
        description="One partition per file, each file read by its own task in parallel "
        "(more than 1,000 files: groups of consecutive files). Default (null): per file "
        "unless partition_rows is set; false: never (the files are read one after the other, "
        "cut by partition_rows when set).",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        check_relative(value, "path")
        PathTemplate.parse(value, RUN_NAMES)
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding '{value[:40]}'") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FileReadConfig:
        if self.format == "csv" and not self.header and not self.columns:
            raise ValueError("a CSV without a header needs columns (their names, in file order)")
        if self.columns and FILE_FIELD in self.columns and self.with_file_name:
            raise ValueError(f"columns may not name '{FILE_FIELD}' with with_file_name")
        return self


class FileReadNode(Rereadable, SlicedSource, Node[FileReadConfig]):
    """A source: the records of every matching file, file after file in name order. Read per
    file in partitions, its output is not stored: each file is read again when asked, only
    while it is the version the run read (its size and stamp, decision 0044)."""

    type = "file_read"
    version = 1
    label = "Read files"
    description = "Read CSV, JSON Lines, JSON or Parquet files from a directory or an S3 bucket."
    category = "source"
    inputs = ()
    outputs = (Port("out", description="One record per row or object of the files."),)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        if self.config.columns is None:
            return RecordSchema.unknown()
        fields = dict(self.config.columns)
        if self.config.with_file_name:
            fields[FILE_FIELD] = FieldType.STRING
        return RecordSchema(fields)

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        store, keys = self._files(context)
        for key in keys:
            if context.is_cancelled():
                return
            yield from self._read(store, key)

    @classmethod
    def partitions_by_default(cls, config: Mapping[str, Any]) -> bool:
        """Per file unless ``partition_per_file`` is false or ``partition_rows`` cuts by rows."""
        return _per_file(config.get("partition_per_file"), config.get("partition_rows"))

    def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> Iterable[Any] | None:
        """Per file (see :meth:`partitions_by_default`): one slice per file, ``{"file": key}``;
        more than ``MAX_FILE_SLICES`` files: ``{"files": [key, ...]}``, consecutive files."""
        if not _per_file(self.config.partition_per_file, self.config.partition_rows):
            return None
        keys = self._files(context)[1]  # listed now: a failure fails the source at once
        if len(keys) <= MAX_FILE_SLICES:
            return ({"file": key} for key in keys)
        per_slice = -(-len(keys) // MAX_FILE_SLICES)
        return ({"files": keys[i : i + per_slice]} for i in range(0, len(keys), per_slice))

    def execute_slice(self, context: ExecutionContext, slice_: Any) -> Iterator[AnyBatch]:
        return self.read_pinned(context, slice_, {})

    def read_pinned(
        self, context: ExecutionContext, slice_: Any, pins: dict[str, str]
    ) -> Iterator[AnyBatch]:
        """The slice's files; ``pins``: each file's ``size:stamp`` (read only that version)."""
        store = self._store(context)
        for key in slice_["files"] if "files" in slice_ else [slice_["file"]]:
            if context.is_cancelled():
                return
            yield from self._read(store, key, pins)

    def _store(self, context: ExecutionContext) -> FileStore:
        return open_store(context.connection(self.config.connection).url)

    def _files(self, context: ExecutionContext) -> tuple[FileStore, list[str]]:
        try:
            pattern = PathTemplate.parse(self.config.path, RUN_NAMES).render(
                run_path_values(context.run_values), escape=glob_escape
            )
        except ValueError as exc:
            raise NodeError(f"path: {exc}", permanent=True) from None
        store = self._store(context)
        named = _run_files(context) if self.config.run_files else None
        if named is None:
            keys = store.list(pattern)
        else:
            regex = glob_regex(pattern)
            for key in named:
                if not regex.match(key):
                    message = f"run_files: '{key[:200]}' does not match path '{pattern}'"
                    raise NodeError(message, permanent=True)
            keys = named
        if not keys and not self.config.allow_empty:
            raise NodeError(f"no file matches '{pattern}'", permanent=True)
        return store, keys

    def _read(
        self, store: FileStore, key: str, pins: dict[str, str] | None = None
    ) -> Iterator[AnyBatch]:
        config = self.config
        with contextlib.ExitStack() as stack:
            if pins is None:
                raw = stack.enter_context(store.open_read(key))
            else:
                opened = stack.enter_context(store.open_pinned(key, pins.get(key)))
                pins[key], raw = opened.pin, opened.stream
            stream = stack.enter_context(
                contextlib.closing(decompressed(raw, key, config.compression))
            )
            try:
                for batch in self._batches(stream):
                    yield _with_file(batch, key) if config.with_file_name else batch
            except FileFormatError as exc:
                where = f" {exc.where}" if exc.where else ""
                column = f", column {exc.column}" if exc.column else ""
                raise NodeError(f"{key}{where}{column}: {exc}", permanent=True) from None
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # truncated or corrupt
                raise NodeError(f"{key}: not a valid gzip file ({exc})", permanent=True) from None
            except OSError as exc:  # the disk or the network: reading again may work
                raise NodeError(f"{key}: reading failed ({exc.strerror or exc})") from None

    def _batches(self, stream: Any) -> Iterator[AnyBatch]:
        config = self.config
        size = config.batch_size
        if config.format == "csv":
            return read_csv(
                stream,
                columns=config.columns,
                header=config.header,
                delimiter=config.delimiter,
                quotechar=config.quotechar,
                encoding=config.encoding,
                batch_size=size,
            )
        if config.format == "jsonl":
            return read_jsonl(
                stream, columns=config.columns, encoding=config.encoding, batch_size=size
            )
        if config.format == "json":
            return read_json_array(
                stream, columns=config.columns, encoding=config.encoding, batch_size=size
            )
        return read_parquet(stream, columns=config.columns, batch_size=size)


def _run_files(context: ExecutionContext) -> list[str] | None:
    """The files the run names (``file_names``, else ``file_name``), checked relative; None in
    a preview that names none (it reads ``path``)."""
    values = context.run_values
    named = values.get("file_names", values.get("file_name"))
    if named is None and context.previewing:
        return None
    if isinstance(named, str):
        named = [named]
    if not isinstance(named, list) or not all(isinstance(n, str) and n for n in named):
        raise NodeError(
            "run_files: this run names no files (the run value file_name or file_names, set "
            "by a file trigger)",
            permanent=True,
        )
    try:
        return [check_relative(name, "file name") for name in named]
    except ValueError as exc:
        raise NodeError(f"run_files: {exc}", permanent=True) from None


def _with_file(batch: AnyBatch, key: str) -> AnyBatch:
    if type(batch) is RowBatch:
        if batch.source is not None:
            return RowBatch(
                [*batch.names, FILE_FIELD], None, source=batch.source.with_constant(key)
            )
        texts = batch.text_columns
        if texts is not None:
            texts = [*texts, [key] * len(batch.rows)]
        return RowBatch([*batch.names, FILE_FIELD], [(*row, key) for row in batch.rows], texts)
    return [{**record, FILE_FIELD: key} for record in batch]


__all__ = ["FileReadNode"]
