"""``sql_query``: stream the rows of a read-only SQL query from a named connection."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import Field

from nodes.builtin.sql_backends import placeholders, postgres_rows, sqlite_rows
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import DEFAULT_BATCH_SIZE, Batch, Node, NodeConfig, RecordStream
from nodes.sdk.ports import Port
from nodes.sdk.schema import FieldType, RecordSchema

BACKENDS = {"postgresql": postgres_rows, "postgres": postgres_rows, "sqlite": sqlite_rows}


class SqlQueryConfig(NodeConfig):
    """The query to run and how to read its rows."""

    connection: str = Field(min_length=1, description="Name of the database connection.")
    query: str = Field(
        min_length=1,
        description="SQL with named parameters %(name)s (write a literal % as %% when the "
        "query has parameters). Values are always bound, never formatted in.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter values; they override run values (interval_start, "
        "interval_end, run_id, logical_date) and are overridden by the run's params.",
    )
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, le=100_000, description="Rows fetched per batch."
    )
    partition_rows: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="Cut the output into partitions of this many rows: the partitionable nodes "
        "that follow (filter, map_fields, http_post...) then run once per partition, in "
        "parallel across workers. Unset: one output.",
    )
    statement_timeout_s: float = Field(
        300, gt=0, description="Longest a statement (each fetch) may run, in seconds."
    )
    columns: dict[str, FieldType] | None = Field(
        None, description="Declared output columns and their types; the schema is unknown without."
    )


class SqlQueryNode(Node):
    """A source: the rows of one query, in a read-only transaction, through a server-side cursor."""

    type = "sql_query"
    version = 1
    label = "SQL query"
    description = "Run a read-only SQL query on PostgreSQL (or SQLite) and stream its rows."
    category = "source"
    inputs = ()
    outputs = (Port("out", description="One record per row, keyed by column name."),)
    Config = SqlQueryConfig
    config: SqlQueryConfig

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        columns = self.config.columns
        return RecordSchema(dict(columns)) if columns is not None else RecordSchema.unknown()

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[Batch]:
        connection = context.connection(self.config.connection)
        backend = BACKENDS.get(connection.scheme)
        if backend is None:
            raise NodeError(
                f"connection '{connection.name}' is not PostgreSQL or SQLite "
                f"(scheme '{connection.scheme}')",
                permanent=True,
            )
        yield from backend(
            connection.url,
            self.config.query,
            self._bound_values(context),
            batch_size=self.config.batch_size,
            timeout_s=self.config.statement_timeout_s,
            is_cancelled=context.is_cancelled,
        )

    def _bound_values(self, context: ExecutionContext) -> dict[str, Any] | None:
        """The values of the query's parameters (``None`` when it has none); run params win."""
        names = placeholders(self.config.query)
        if not names:
            return None
        values = {**context.run_values, **self.config.params, **context.params}
        for name in names:
            if name not in values:
                raise NodeError(
                    f"query parameter '{name}' has no value: set it in params or as a run param",
                    permanent=True,
                )
        return {name: values[name] for name in names}
