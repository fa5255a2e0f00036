"""``sql_query``: stream the rows of a read-only SQL query from a named connection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from nodes.builtin.mysql_backend import mysql_rows
from nodes.builtin.sql_backends import (
    limited_query,
    placeholders,
    postgres_rows,
    postgres_slice_bounds,
    slice_query,
    sqlite_rows,
)
from nodes.builtin.sql_query_auto import estimated_rows, key_slices, quote_mysql
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, AnyBatch, RecordStream
from nodes.sdk.capabilities import PartitionPolicy, SlicedSource
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import FieldType, RecordSchema

#: The longest statement timeout a node may ask for (the node's hard time limit ends it sooner).
MAX_STATEMENT_TIMEOUT_S = 86_400
#: ``partition_rows`` when the platform decides (the default).
AUTO: Literal["auto"] = "auto"

BACKENDS = {
    "postgresql": postgres_rows,
    "postgres": postgres_rows,
    "mysql": mysql_rows,
    "mariadb": mysql_rows,
    "sqlite": sqlite_rows,
}


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
    partition_rows: Annotated[int, Field(ge=1, le=100_000_000)] | Literal["auto"] | None = Field(
        AUTO,
        description="Cut the output into partitions of this many rows: the partitionable nodes "
        "that follow (filter, map_fields, http_post...) then run once per partition, in "
        'parallel across workers. "auto" (the default): the platform decides as each run '
        "starts, from the database's row estimate of the query: at least "
        "FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS rows (50,000) are read in partitions of about "
        "FLOWPLATFORM_AUTO_PARTITION_ROWS (50,000), in parallel ranges of the table's integer "
        "key when the query is a plain select of one table, otherwise cut as it streams; "
        "fewer are read whole. null: never partitioned.",
    )
    partition_column: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description='With partition_rows (a number, or "auto" when the run partitions) on '
        "PostgreSQL: read the partitions in parallel, each partition task its own range of "
        "this output column (a key such as id: ordered, ideally indexed). The ranges are "
        "planned when the run starts: from the database's statistics for an indexed integer "
        "column of a plain single-table select, else by counting rows. Unset: the query is "
        'read once and cut as it streams, or, with "auto", in ranges of a key the platform '
        "finds.",
    )
    statement_timeout_s: float = Field(
        300,
        gt=0,
        le=MAX_STATEMENT_TIMEOUT_S,
        description="Longest a statement (each fetch; on MariaDB/MySQL the whole read) may "
        "run, in seconds (at most a day). "
        "Enforced by the server and by a client-side watchdog a query cannot lift.",
    )
    columns: dict[str, FieldType] | None = Field(
        None, description="Declared output columns and their types; the schema is unknown without."
    )

    @model_validator(mode="after")
    def _partition_column_needs_rows(self) -> SqlQueryConfig:
        if self.partition_column and not self.partition_rows:
            raise ValueError(
                'partition_column needs partition_rows (rows per partition, or "auto")'
            )
        return self


class SqlQueryNode(SlicedSource, Node[SqlQueryConfig]):
    """A source: the rows of one query, in a read-only transaction, through a server-side cursor."""

    type = "sql_query"
    version = 1
    label = "SQL query"
    description = (
        "Run a read-only SQL query on PostgreSQL, MariaDB/MySQL (or SQLite) and stream its rows."
    )
    category = "source"
    inputs = ()
    outputs = (Port("out", description="One record per row, keyed by column name."),)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        columns = self.config.columns
        return RecordSchema(dict(columns)) if columns is not None else RecordSchema.unknown()

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        url, backend = self._backend(context)
        yield from backend(
            url,
            self.config.query,
            self._bound_values(context),
            batch_size=self.config.batch_size,
            timeout_s=self.config.statement_timeout_s,
            is_cancelled=context.is_cancelled,
            **self._backend_options(backend),
        )

    def _backend_options(self, backend: Any) -> dict[str, Any]:
        """MariaDB's JSON columns arrive as text: those declared ``json`` are parsed."""
        if backend is not mysql_rows or not self.config.columns:
            return {}
        json_columns = [n for n, t in self.config.columns.items() if t == FieldType.JSON]
        return {"json_columns": json_columns} if json_columns else {}

    def preview(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        """The query's first ``context.sample_limit`` rows: ``LIMIT`` pushed down (the query
        wrapped as a subquery, the limit a bound value), the statement timeout cut to the
        preview's time left."""
        limit = context.sample_limit
        if limit is None:
            yield from self.execute(context, inputs)
            return
        url, backend = self._backend(context)
        query, values = limited_query(self.config.query, self._bound_values(context), limit)
        yield from backend(
            url,
            query,
            values,
            batch_size=self.config.batch_size,
            timeout_s=context.time_left(self.config.statement_timeout_s),
            is_cancelled=context.is_cancelled,
            **self._backend_options(backend),
        )

    @classmethod
    def partitions_by_default(cls, config: Mapping[str, Any]) -> bool:
        """With ``partition_rows`` ``"auto"`` (or unset): each run decides
        (:meth:`partition_rows_for_run`)."""
        return bool(config.get("partition_rows", AUTO) == AUTO)

    def partition_rows_for_run(
        self, context: ExecutionContext, policy: PartitionPolicy
    ) -> int | None:
        """From the database's estimate of the query's rows: partitions when there are many
        (``policy``), ``None`` when there are few, on SQLite, or when the estimate fails (the
        query is then read whole, and its own errors reported as usual)."""
        try:
            url, backend = self._backend(context)
            if backend is sqlite_rows:
                return None
            estimate = estimated_rows(
                url,
                backend is mysql_rows,
                self.config.query,
                self._bound_values(context),
                self.config.statement_timeout_s,
            )
        except NodeError as exc:
            context.logger.info("no row estimate, the query is read whole: %s", exc)
            return None
        return policy.rows_for(estimate)

    def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> Iterable[Any] | None:
        """With ``partition_column`` on PostgreSQL: ranges of that column of about
        ``rows_per_slice`` rows each (:meth:`_slices`): ``{"column": ..., "from": ...,
        "to": ...}`` from the statistics of an indexed integer key, else ``{"from": ...,
        "to": ...}`` (text; open ends ``None``), each produced as soon as the database
        reaches its end. With ``partition_rows``
        ``"auto"`` (and no column) on PostgreSQL or MariaDB/MySQL: ranges of the table's
        integer key, ``{"column": ..., "from": ..., "to": ...}``, when the query is a plain
        select of one table (:mod:`nodes.builtin.sql_query_auto`). ``None``: read once, cut."""
        url, backend = self._backend(context)
        column = self.config.partition_column
        if column:
            if backend is not postgres_rows:
                return None  # MariaDB/MySQL, SQLite: read once and cut
            return self._slices(context, url, column, rows_per_slice)
        if self.config.partition_rows != AUTO or backend is sqlite_rows:
            return None
        try:
            slices = key_slices(
                url,
                backend is mysql_rows,
                self.config.query,
                self._bound_values(context),
                rows_per_slice,
                self.config.statement_timeout_s,
            )
        except NodeError as exc:
            context.logger.info("no key ranges, the query is read once: %s", exc)
            return None
        return None if slices is None else (slice_ for slice_ in slices)

    def _slices(
        self, context: ExecutionContext, url: str, column: str, rows_per_slice: int
    ) -> Iterator[dict[str, Any]]:
        """The expert's ``partition_column``: key ranges from two index look-ups and the
        planner's statistics when the query is a plain select of one table and the column an
        integer leading a B-tree index of it (as ``"auto"`` finds its own key); otherwise,
        or when that cannot be asked, ranges of exactly ``rows_per_slice`` rows counted by a
        ``row_number()`` scan of the query's output (any ordered type, any query)."""
        values = self._bound_values(context)
        timeout_s = self.config.statement_timeout_s
        try:
            ranges = key_slices(
                url, False, self.config.query, values, rows_per_slice, timeout_s, column
            )
        except NodeError as exc:
            context.logger.info("no key ranges from statistics, rows are counted: %s", exc)
            ranges = None
        if ranges is not None:
            yield from ranges
            return
        low: str | None = None
        bounds = postgres_slice_bounds(
            url,
            self.config.query,
            values,
            column=column,
            rows_per_slice=rows_per_slice,
            timeout_s=timeout_s,
            is_cancelled=context.is_cancelled,
        )
        next(bounds, None)  # the smallest value: the first slice is open below
        for bound in bounds:
            yield {"from": low, "to": bound}
            low = bound
        yield {"from": low, "to": None}

    def execute_slice(self, context: ExecutionContext, slice_: Any) -> Iterator[AnyBatch]:
        url, backend = self._backend(context)
        column = slice_.get("column") or self.config.partition_column
        assert column is not None
        query, values = slice_query(
            self.config.query,
            self._bound_values(context),
            column,
            slice_["from"],
            slice_["to"],
            quote_mysql if backend is mysql_rows else None,
        )
        yield from backend(
            url,
            query,
            values,
            batch_size=self.config.batch_size,
            timeout_s=self.config.statement_timeout_s,
            is_cancelled=context.is_cancelled,
            **self._backend_options(backend),
        )

    def _backend(self, context: ExecutionContext) -> tuple[str, Any]:
        connection = context.connection(self.config.connection)
        backend = BACKENDS.get(connection.scheme)
        if backend is None:
            raise NodeError(
                f"connection '{connection.name}' is not PostgreSQL, MariaDB/MySQL or SQLite "
                f"(scheme '{connection.scheme}')",
                permanent=True,
            )
        return connection.url, backend

    def _bound_values(self, context: ExecutionContext) -> dict[str, Any] | None:
        """The values of the query's parameters (``None`` when it has none); run params win."""
        names = placeholders(self.config.query)
        if not names:
            return None
        values = {**context.run_values, **self.config.params, **context.params}
        for name in names:
            if name.startswith("payload.") and name not in values:
                values[name] = context.payload_value(name.removeprefix("payload."))
            if name not in values:
                raise NodeError(
                    f"query parameter '{name}' has no value: set it in params or as a run param",
                    permanent=True,
                )
        return {name: values[name] for name in names}
