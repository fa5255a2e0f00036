"""``http_post``: send records as JSON to an HTTP endpoint, and report on each request."""

from __future__ import annotations

import contextvars
import hashlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from nodes.builtin.delivery import (
    CREDENTIAL_HEADERS,
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
    target,
)
from nodes.jsonbody import dumps_batch, dumps_bytes
from nodes.netguard import GuardedSession
from nodes.redaction import MASK, basic_auth_secrets, header_secrets
from nodes.sdk.batches import (
    DEFAULT_BATCH_SIZE,
    AnyBatch,
    Batch,
    Record,
    as_records,
    first_input,
    rebatch,
)
from nodes.sdk.capabilities import AcceptsRows, Partitionable
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port, PortKind
from nodes.sdk.schema import FieldType, RecordSchema

SUMMARY_SCHEMA = RecordSchema(
    {
        "batch": FieldType.INTEGER,
        "records": FieldType.INTEGER,
        "status": FieldType.INTEGER,
        "attempts": FieldType.INTEGER,
        "idempotency_key": FieldType.STRING,
    }
)


class HttpPostConfig(NodeConfig):
    """Where and how to send the records."""

    url: TargetUrl
    connection: HttpConnection
    headers: ExtraHeaders
    batch_size: int = Field(
        1, ge=1, le=100_000, description="1: one JSON object per request; more: a JSON array."
    )
    timeout_s: TimeoutS
    max_retries: MaxRetries
    retry_backoff_s: RetryBackoffS
    retry_backoff_max_s: RetryBackoffMaxS

    @field_validator("headers")
    @classmethod
    def _single_line_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)

    @model_validator(mode="after")
    def _url_fits_connection(self) -> HttpPostConfig:
        check_url_fits(self.url, self.connection)
        return self


def idempotency_key(context: ExecutionContext, batch_index: int) -> str:
    """The same for every attempt and redelivery of one batch of one node run."""
    seed = f"{context.run_id}:{context.node_key}:{context.partition or 0}:{batch_index}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


class HttpPostNode(Partitionable, AcceptsRows, Node[HttpPostConfig]):
    """A destination: POSTs records as JSON, retrying safely; outputs one summary per request."""

    type = "http_post"
    version = 1
    label = "HTTP POST"
    description = "POST records as JSON to a URL, with retries and an Idempotency-Key header."
    category = "destination"
    inputs = (Port("in", description="Records to send."),)
    outputs = (Port("out", PortKind.SUMMARY, description="One record per request sent."),)
    counts = ("records sent", "requests")

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return SUMMARY_SCHEMA

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[Batch]:
        with guarded_session() as session:
            delivery = self._delivery(session, context)
            summaries = self._summaries(delivery, context, first_input(inputs))
            yield from rebatch(([summary] for summary in summaries), DEFAULT_BATCH_SIZE)

    def preview(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[Batch]:
        """What the node would send, without sending anything: one record per request, with
        its method, URL, headers (credentials redacted) and JSON body."""
        url, credentials, auth = target(context, self.config.connection, self.config.url)
        context.redactor.add(header_secrets(credentials.values()))
        context.redactor.add(basic_auth_secrets(*auth) if auth else ())
        headers = {
            **credentials,
            "Content-Type": "application/json",
            **self.config.headers,
            **({"Authorization": "Basic ***"} if auth else {}),
        }
        shown = {
            name: MASK if name.lower() in CREDENTIAL_HEADERS else context.redactor.redact(value)
            for name, value in headers.items()
        }
        requests = (
            {
                "batch": index,
                "records": len(batch),
                "method": "POST",
                "url": context.redactor.redact(url),
                "headers": {**shown, "Idempotency-Key": idempotency_key(context, index)},
                "body": as_records(batch)[0] if self.config.batch_size == 1 else as_records(batch),
            }
            for index, batch in enumerate(rebatch(first_input(inputs), self.config.batch_size))
        )
        yield from rebatch(([request] for request in requests), DEFAULT_BATCH_SIZE)

    def _delivery(self, session: GuardedSession, context: ExecutionContext) -> Delivery:
        cfg = self.config
        delivery = Delivery(
            session,
            cfg.url,
            RetryPolicy(cfg.max_retries, cfg.retry_backoff_s, cfg.retry_backoff_max_s),
            cfg.timeout_s,
            headers={"Content-Type": "application/json", **cfg.headers},
            is_cancelled=context.is_cancelled,
            logger=context.logger,
            redactor=context.redactor,
        )
        endpoint(delivery, context, cfg.connection, cfg.url)
        return delivery

    def _summaries(
        self, delivery: Delivery, context: ExecutionContext, stream: Iterable[AnyBatch]
    ) -> Iterator[Record]:
        """Send batch after batch, one request in flight: while the peer answers batch N, the
        next batch is read from upstream and encoded (the request waits on the network in a
        thread of its own). Batches are acknowledged and summarised in order; the last one
        acknowledged is checkpointed (:class:`_Acknowledged`)."""
        # A re-delivered node resumes after the last batch the peer acknowledged.
        acked = _Acknowledged(context, (context.checkpoint or {}).get("acked", -1))
        resume_after = acked.saved
        stop = threading.Event()
        delivery.is_cancelled = stop.is_set  # the sender thread never queries the database
        delivery.stop = stop  # and stops waiting to retry as soon as the node stops
        in_flight: _Request | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="http_post") as sender:
            try:
                for index, batch in enumerate(rebatch(stream, self.config.batch_size)):
                    key = idempotency_key(context, index)
                    if index <= resume_after:
                        if context.is_cancelled():
                            raise NodeError("cancelled", permanent=True)
                        yield _summary(index, len(batch), None, 0, key)
                        continue
                    try:
                        single = self.config.batch_size == 1
                        body = dumps_bytes(batch[0]) if single else dumps_batch(batch)
                    except TypeError as exc:
                        raise NodeError(
                            f"batch {index} cannot be sent as JSON: {exc}", permanent=True
                        ) from None
                    if in_flight is not None:
                        summary, in_flight = self._settle(in_flight, context, stop, acked), None
                        yield summary
                    if context.is_cancelled():
                        raise NodeError("cancelled", permanent=True)
                    # In the node's context: its span (the request is traced under it),
                    # its run in the log lines.
                    future = sender.submit(
                        contextvars.copy_context().run,
                        delivery.post,
                        body,
                        {"Idempotency-Key": key},
                    )
                    in_flight = _Request(index, len(batch), key, future)
                if in_flight is not None:
                    summary, in_flight = self._settle(in_flight, context, stop, acked), None
                    yield summary
            except BaseException:
                # (Never at a yield: no request is unsettled there.) Reading the next batch
                # failed, or the request itself: no more retries, and what the peer took
                # (a batch it took meanwhile included) is checkpointed, so that a retry of the
                # node does not send it again.
                if in_flight is not None:
                    stop.set()
                    self._acknowledge_if_taken(in_flight, context, acked)
                acked.save_before_stopping()
                raise

    @staticmethod
    def _acknowledge_if_taken(
        request: _Request, context: ExecutionContext, acked: _Acknowledged
    ) -> None:
        try:
            request.future.result()
        except Exception:  # noqa: BLE001 - not taken: the node's error stands
            return
        acked.acknowledge(request.index)
        context.logger.info("batch %d: taken before the node stopped", request.index)

    @staticmethod
    def _settle(
        request: _Request,
        context: ExecutionContext,
        stop: threading.Event,
        acked: _Acknowledged,
    ) -> Record:
        """Wait for a request's answer (passing on a cancellation meanwhile), record it as
        acknowledged, and return its summary; raises what the delivery raised."""
        while True:
            try:
                status, attempts = request.future.result(timeout=_CANCEL_CHECK_S)
                break
            except FutureTimeout:
                if context.is_cancelled():
                    stop.set()
        acked.acknowledge(request.index)
        context.logger.info(
            "batch %d: %d records, HTTP %d after %d attempts",
            request.index,
            request.records,
            status,
            attempts,
        )
        return _summary(request.index, request.records, status, attempts, request.key)


#: Least time between two checkpoints of one node run, seconds. A node whose peer answers
#: slower than this checkpoints every batch; a faster one about this often (one database
#: write each), instead of once per request. After a worker is lost, the batches
#: acknowledged since the last checkpoint are sent again, with the same Idempotency-Key.
CHECKPOINT_EVERY_S = 0.1

#: A checkpoint waits at least this many times as long as the last one took to save, so that
#: saving them takes at most about 1/20 of a node's time however slow the database answers
#: (the posting waits while one is saved).
CHECKPOINT_COST_FACTOR = 20


class _Acknowledged:
    """The last batch the peer acknowledged, and the last one saved as the checkpoint."""

    def __init__(self, context: ExecutionContext, saved: int) -> None:
        self.context = context
        self.saved = self.index = saved
        self._saved_at = time.monotonic()
        self._every = CHECKPOINT_EVERY_S

    def acknowledge(self, index: int) -> None:
        self.index = index
        if time.monotonic() - self._saved_at >= self._every:
            self._save()

    def save_before_stopping(self) -> None:
        """The node is stopping on an error: save what the peer took, so that a retry resumes
        after it. A failure to save leaves the node's own error to be raised."""
        try:
            self._save()
        except Exception:  # noqa: BLE001 - the retry then sends those batches again, same keys
            self.context.logger.warning("batch %d: checkpoint not saved", self.index)

    def _save(self) -> None:
        started = time.monotonic()
        if self.index > self.saved:
            self.context.save_checkpoint({"acked": self.index})
            self.saved = self.index
        self._saved_at = time.monotonic()
        cost = self._saved_at - started
        self._every = max(CHECKPOINT_EVERY_S, CHECKPOINT_COST_FACTOR * cost)


#: How often a node waiting on a slow request looks whether its run was cancelled, seconds.
_CANCEL_CHECK_S = 1.0


@dataclass(frozen=True)
class _Request:
    """A batch sent and not yet answered."""

    index: int
    records: int
    key: str
    future: Future[tuple[int, int]]


def _summary(index: int, records: int, status: int | None, attempts: int, key: str) -> Record:
    return {
        "batch": index,
        "records": records,
        "status": status,
        "attempts": attempts,
        "idempotency_key": key,
    }
