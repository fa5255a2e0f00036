"""``sql_write``: write records into a database table, each batch exactly once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from importlib import import_module
from typing import Any

from nodes.builtin.sql_write.config import SqlWriteConfig
from nodes.builtin.sql_write.dialect import Dialect, TableName, dialect_for
from nodes.builtin.sql_write.run import Loader
from nodes.redaction import Redactor
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, AnyBatch, Batch, first_input, rebatch
from nodes.sdk.capabilities import AcceptsRows, Partitionable
from nodes.sdk.context import ExecutionContext
from nodes.sdk.node import Node
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

#: How long the save-time check waits for the target database.
CHECK_TIMEOUT_S = 3


class SqlWriteNode(Partitionable, AcceptsRows, Node[SqlWriteConfig]):
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

    @classmethod
    def partitionable_with(cls, config: Mapping[str, Any]) -> bool:
        """Insert and upsert run once per partition of a partitioned source (write marks per
        partition); replace does not: it swaps the whole table once."""
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
            run = Loader(self.config, session, context)
            summaries = run.write(rebatch(first_input(inputs), cfg.batch_size))
            yield from rebatch(([summary] for summary in summaries), DEFAULT_BATCH_SIZE)
