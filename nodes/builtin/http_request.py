"""``http_request``: read the records of a JSON API, page after page."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from nodes.builtin.delivery import (
    Delivery,
    ExtraHeaders,
    HttpConnection,
    MaxRetries,
    RetryBackoffMaxS,
    RetryBackoffS,
    RetryPolicy,
    TargetUrl,
    TimeoutS,
    check_headers,
    check_url_fits,
    endpoint,
    guarded_session,
)
from nodes.builtin.page_reader import PageReader
from nodes.builtin.pagination import (
    NoPagination,
    Pagination,
    pagination_error,
    query_text,
)
from nodes.jsonbody import dumps_bytes
from nodes.sdk.batches import AnyBatch, Batch, RowBatch
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import FieldType, RecordSchema


class RunValue(NodeConfig):
    """A query value bound from the run: ``{"run": "interval_start"}``."""

    run: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="interval_start, interval_end, logical_date, run_id or a run param.",
    )


QueryValue = str | int | float | bool | RunValue


class HttpRequestConfig(NodeConfig):
    """Which API to read and how its records and pages are laid out."""

    url: TargetUrl
    connection: HttpConnection
    method: Literal["GET", "POST"] = Field("GET", description="GET, or POST with a body.")
    body: Any = Field(None, description="JSON body of a POST (sent with every page).")
    query: dict[str, QueryValue] = Field(
        default_factory=dict,
        description='Query parameters; a value {"run": "interval_start"} binds a run value '
        "(interval_start, interval_end, logical_date, run_id, run params).",
    )
    headers: ExtraHeaders
    records_path: str = Field(
        "",
        description='Dotted path of the records in the answer ("": the answer itself); '
        "a list is one record per item, an object one record.",
    )
    pagination: Pagination = Field(
        default_factory=NoPagination,
        description='{"type": "none" | "next_url" | "cursor" | "offset" | "page", ...}',
    )
    rate_limit_per_s: float | None = Field(
        None, gt=0, description="Most requests a second (retries included); unset: no limit."
    )
    timeout_s: TimeoutS
    max_retries: MaxRetries
    retry_backoff_s: RetryBackoffS
    retry_backoff_max_s: RetryBackoffMaxS
    columns: dict[str, FieldType] | None = Field(
        None,
        description="Declared output fields and their types: the records carry exactly these "
        "(a missing one is null). Unset: the records as the API sends them, schema unknown.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _pagination_errors_located(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> HttpRequestConfig:
        try:
            config: HttpRequestConfig = handler(data)
        except ValidationError as exc:
            errors = _query_errors([pagination_error(e) for e in exc.errors(include_url=False)])
            raise _rebuilt(exc.title, errors) from None
        return config

    @field_validator("headers")
    @classmethod
    def _single_line_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)

    @model_validator(mode="after")
    def _request_fits(self) -> HttpRequestConfig:
        check_url_fits(self.url, self.connection)
        if self.body is not None and self.method != "POST":
            raise ValueError("body: only a POST sends a body")
        return self


class HttpRequestNode(Node[HttpRequestConfig]):
    """A source: the records of a JSON API, read page after page, resumable after a loss."""

    type = "http_request"
    version = 1
    label = "HTTP request"
    description = "Read records from a JSON API (GET or POST), following its pagination."
    category = "source"
    inputs = ()
    outputs = (Port("out", description="One record per item of each page's record list."),)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        columns = self.config.columns
        return RecordSchema(dict(columns)) if columns is not None else RecordSchema.unknown()

    def execute(self, context: ExecutionContext, inputs: Mapping[str, Any]) -> Iterator[AnyBatch]:
        with guarded_session() as session:
            delivery = self._delivery(session, context)
            names = list(self.config.columns or ())
            for batch in self._batches(delivery, context):
                yield _rows(batch, names) if names else batch

    def _delivery(self, session: Any, context: ExecutionContext) -> Delivery:
        cfg = self.config
        json_body = {"Content-Type": "application/json"} if cfg.method == "POST" else {}
        delivery = Delivery(
            session,
            cfg.url,
            RetryPolicy(cfg.max_retries, cfg.retry_backoff_s, cfg.retry_backoff_max_s),
            cfg.timeout_s,
            headers={"Accept": "application/json", **json_body, **cfg.headers},
            is_cancelled=context.is_cancelled,
            logger=context.logger,
            redactor=context.redactor,
            min_interval_s=1 / cfg.rate_limit_per_s if cfg.rate_limit_per_s else 0.0,
        )
        endpoint(delivery, context, cfg.connection, cfg.url)
        return delivery

    def _batches(self, delivery: Delivery, context: ExecutionContext) -> Iterator[Batch]:
        cfg = self.config
        reader = PageReader(
            delivery,
            cfg.pagination,
            cfg.method,
            dumps_bytes(cfg.body) if cfg.method == "POST" else None,
            cfg.records_path,
            context,
        )
        return reader.batches(cfg.pagination.first(delivery.url, self._query(context)))

    def _query(self, context: ExecutionContext) -> dict[str, str]:
        """The configured query parameters as text, run values bound."""
        values = context.run_values
        query: dict[str, str] = {}
        for name, value in self.config.query.items():
            if isinstance(value, RunValue):
                if values.get(value.run) is None:
                    known = ", ".join(sorted(k for k, v in values.items() if v is not None))
                    raise NodeError(
                        f"query.{name}: the run has no value '{value.run}' (it has: {known})",
                        permanent=True,
                    )
                value = values[value.run]
            query[name] = query_text(value)
        return query


def _query_errors(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """A query value's errors without pydantic's try-every-member list: the errors of
    ``{"run": ...}`` for an object, else one error saying what a value may be."""
    found: list[ErrorDetails] = []
    for error in errors:
        loc = tuple(error["loc"])
        if len(loc) < 3 or loc[0] != "query":
            found.append(error)
        elif loc[2] == "RunValue" and error["type"] == "model_type":  # not an object
            message = 'a query value is a text, a number, a boolean or {"run": "<run value>"}'
            found.append({**error, "loc": loc[:2], "msg": message})
        elif loc[2] == "RunValue":
            found.append({**error, "loc": (*loc[:2], *loc[3:])})
    return found or errors


def _rebuilt(title: str, errors: list[ErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data(
        title,
        [
            # without a context, the message is kept as it is (braces included)
            InitErrorDetails(
                type=PydanticCustomError(e["type"], e["msg"]),
                loc=tuple(e["loc"]),
                input=e["input"],
            )
            for e in errors
        ],
    )


def _rows(batch: Batch, names: list[str]) -> RowBatch:
    return RowBatch(names, [tuple([record.get(name) for name in names]) for record in batch])
