"""Traces (OpenTelemetry) and the engine's observation hooks.

Tracing is configured only by the standard ``OTEL_*`` variables and is off unless
``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT``/``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED``
turns it off. Off, nothing of the SDK is loaded and the hooks below only move metrics.

One trace per flow run: ``run_span`` opens the root span ``flow_run <slug>`` in ``start_run``
(a child of the caller's span: the API request, the Celery task of a schedule), the Celery
instrumentation carries its context in the headers of every task of the canvas (across
workers and retries), and ``node_execution`` opens ``node <key>`` for every node execution.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from flowplatform import metrics
from flowplatform.env import SettingsError
from flowplatform.logs import run_context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from flows.models import FlowRun, NodeRun
    from nodes.redaction import Redactor

logger = logging.getLogger("flowplatform.telemetry")

ATTR = "flowplatform"  # attribute prefix: flowplatform.flow, flowplatform.run_id, ...

_tracer: Any = None  # the platform's tracer, once tracing is on in this process
_instrumented: list[Any] = []


def enabled_by_environment() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _tracer is not None


def setup(kind: str, processor: SpanProcessor | None = None) -> bool:
    """Turn tracing on in this process when the environment asks for it (or ``processor`` is
    given: tests); ``kind`` names the process (web, worker, beat, cli) in the default service
    name ``flowplatform-<kind>``. Call it once, early (before the WSGI handler is built; in a
    pool process after the fork). Returns whether tracing is on."""
    global _tracer
    if _tracer is not None:
        return True
    if processor is None and not enabled_by_environment():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    attributes = (
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"flowplatform-{kind}"}
    )
    provider = TracerProvider(resource=Resource.create(attributes), sampler=_sampler())
    for span_processor in [processor] if processor else _processors_from_environment():
        provider.add_span_processor(span_processor)
    trace.set_tracer_provider(provider)
    _instrument(kind, provider)
    _tracer = provider.get_tracer("flowplatform")
    return True


def _sampler() -> Any:
    """``OTEL_TRACES_SAMPLER`` when set. Otherwise every trace, without the database and Redis
    calls made outside any trace (heartbeats, lease renewals, probes, scrapes: each would be
    a trace of one span) and without the engine's own bookkeeping statements around a node
    (taking, claiming, finishing it: the client calls made directly under a Celery task's
    span). What a node does (its queries, its HTTP calls), what a request does, and every
    message sent are traced."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import sampling

    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()
    from opentelemetry.trace import SpanKind

    class NoBookkeeping(sampling.Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> sampling.SamplingResult:
            parent = trace.get_current_span(parent_context)
            parent_span = parent.get_span_context()
            if not parent_span.trace_flags.sampled:
                return sampling.SamplingResult(sampling.Decision.DROP)
            if kind == SpanKind.CLIENT and getattr(parent, "name", "").startswith("run/"):
                return sampling.SamplingResult(sampling.Decision.DROP)
            return sampling.SamplingResult(
                sampling.Decision.RECORD_AND_SAMPLE, attributes, parent_span.trace_state
            )

        def get_description(self) -> str:
            return "NoBookkeeping"

    class NoLoneClientCalls(sampling.Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> sampling.SamplingResult:
            if kind == SpanKind.CLIENT:
                return sampling.SamplingResult(sampling.Decision.DROP)
            return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "NoLoneClientCalls"

    return sampling.ParentBased(root=NoLoneClientCalls(), local_parent_sampled=NoBookkeeping())


def _processors_from_environment() -> list[Any]:
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    processors: list[Any] = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name == "otlp":
            processors.append(BatchSpanProcessor(_otlp_exporter()))
        elif name == "console":
            # One JSON object per line on the process's real stdout (a worker redirects
            # sys.stdout to its log).
            out = sys.__stdout__ or sys.stdout
            exporter = ConsoleSpanExporter(
                out=out, formatter=lambda span: span.to_json(indent=None) + "\n"
            )
            processors.append(SimpleSpanProcessor(exporter))
        elif name != "none":
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (use otlp, console or none)"
            )
    return processors


def _otlp_exporter() -> Any:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HTTPSpanExporter,
        )

        return HTTPSpanExporter()
    raise SettingsError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (use grpc or http/protobuf)"
    )


def _instrument(kind: str, provider: Any) -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    instrumentors: dict[str, Any] = {
        "celery": CeleryInstrumentor(),
        "psycopg": PsycopgInstrumentor(),
        "requests": RequestsInstrumentor(),
        "redis": RedisInstrumentor(),
    }
    if kind in ("web", "cli"):
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        instrumentors["django"] = DjangoInstrumentor()
    # The standard switch of the Python SDK: names of instrumentations to leave out.
    disabled = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    for name in (n.strip() for n in disabled.split(",")):
        instrumentors.pop(name, None)
    for instrumentor in instrumentors.values():
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
            _instrumented.append(instrumentor)


def shutdown() -> None:
    """Flush the spans, remove the instrumentation and turn tracing off in this process."""
    global _tracer
    if _tracer is None:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
    while _instrumented:
        _instrumented.pop().uninstrument()
    _tracer = None


def current_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) in hex, or None (tracing off, or no span)."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def trace_url(trace_id: str) -> str:
    """The link to a trace (``FLOWPLATFORM_TRACE_URL_TEMPLATE``), or "" when not configured."""
    from django.conf import settings

    template = settings.FLOWPLATFORM_TRACE_URL_TEMPLATE
    return template.replace("{trace_id}", trace_id) if template and trace_id else ""


# --- The root span of a run -----------------------------------------------------------------


class RunSpan:
    """What ``start_run`` learns from its span: the trace id to store, and how to keep the
    span's context for a dispatch that happens later (on commit)."""

    def __init__(self, span: Any = None) -> None:
        self.span = span
        self.trace_id = ""
        if span is not None:
            self.trace_id = f"{span.get_span_context().trace_id:032x}"

    def started(self, run: FlowRun) -> None:
        if self.span is not None:
            self.span.set_attribute(f"{ATTR}.run_id", str(run.id))
            self.span.set_attribute(f"{ATTR}.version", run.version.number)
            self.span.set_attribute(f"{ATTR}.trigger", run.trigger)

    def bind(self, function: Callable[[], None]) -> Callable[[], None]:
        """``function`` run later within this span's context (its tasks join the trace)."""
        if self.span is None:
            return function
        from opentelemetry import context as otel_context

        captured = otel_context.get_current()

        def within() -> None:
            token = otel_context.attach(captured)
            try:
                function()
            finally:
                otel_context.detach(token)

        return within


@contextmanager
def run_span(flow: str, trigger: str) -> Iterator[RunSpan]:
    """The root span ``flow_run <slug>`` of a run being started (nothing when tracing is off)."""
    if _tracer is None:
        yield RunSpan()
        return
    with _tracer.start_as_current_span(
        f"flow_run {flow}", attributes={f"{ATTR}.flow": flow, f"{ATTR}.trigger": trigger}
    ) as span:
        yield RunSpan(span)


# --- One node execution ---------------------------------------------------------------------


class NodeObservation:
    """Handed to the code inside ``node_execution``: report the rows when the node succeeds."""

    def __init__(self) -> None:
        self.rows_in = 0
        self.rows_out = 0
        self.succeeded = False

    def done(self, rows_in: int, rows_out: int) -> None:
        self.rows_in, self.rows_out, self.succeeded = rows_in, rows_out, True


@contextmanager
def node_execution(
    node_run: NodeRun, flow: str, version: int, redactor: Redactor | None = None
) -> Iterator[NodeObservation]:
    """Around one execution of a node: its span ``node <key>`` (tracing on), its metrics,
    and the run/node/flow of its log lines. An exception leaving the block marks the span an
    error (with the redacted message) and counts a failed execution (a cancelled one for
    ``RunCancelled``)."""
    observation = NodeObservation()
    attempt = node_run.attempts
    retry = attempt - 1 - node_run.workers_lost > 0
    status = "failed"
    started = time.perf_counter()
    with run_context(run_id=node_run.run_id, node_key=node_run.node_key, flow=flow):
        span_cm = _node_span(node_run, flow, version, attempt) if _tracer is not None else None
        span = span_cm.__enter__() if span_cm is not None else None
        error: BaseException | None = None
        try:
            yield observation
            status = "succeeded" if observation.succeeded else "failed"
        except BaseException as exc:
            error = exc
            status = "cancelled" if type(exc).__name__ == "RunCancelled" else "failed"
            raise
        finally:
            metrics.node_finished(
                node_run.node_type,
                status,
                time.perf_counter() - started,
                observation.rows_in,
                observation.rows_out,
                retry,
            )
            if span_cm is not None:
                _end_node_span(span, observation, status, error, redactor)
                span_cm.__exit__(None, None, None)


def _node_span(node_run: NodeRun, flow: str, version: int, attempt: int) -> Any:
    return _tracer.start_as_current_span(
        f"node {node_run.node_key}",
        attributes={
            f"{ATTR}.flow": flow,
            f"{ATTR}.version": version,
            f"{ATTR}.run_id": str(node_run.run_id),
            f"{ATTR}.node_key": node_run.node_key,
            f"{ATTR}.node_type": node_run.node_type,
            f"{ATTR}.attempt": attempt,
        },
        record_exception=False,
        set_status_on_exception=False,
    )


def _end_node_span(
    span: Any,
    observation: NodeObservation,
    status: str,
    error: BaseException | None,
    redactor: Redactor | None,
) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(f"{ATTR}.rows_in", observation.rows_in)
    span.set_attribute(f"{ATTR}.rows_out", observation.rows_out)
    span.set_attribute(f"{ATTR}.status", status)
    if status == "failed":
        message = f"{type(error).__name__}: {error}" if error is not None else "failed"
        if redactor is not None:
            message = redactor.redact(message)
        span.set_attribute(f"{ATTR}.error", message[:2000])
        span.set_status(Status(StatusCode.ERROR, message[:2000]))
    else:
        span.set_status(Status(StatusCode.OK))


@contextmanager
def partition_execution(
    run_id: str, flow: str, version: int, source: str, partition: int
) -> Iterator[Callable[[dict[str, list[int]]], None]]:
    """Around one partition of a fan-out: the span ``node <source>`` with
    ``flowplatform.partition`` (tracing on) and the run of its log lines. Call what it yields
    with the rows of each node ({key: [in, out]}) when the partition is through."""
    with run_context(run_id=run_id, node_key=source, flow=flow):
        if _tracer is None:
            yield lambda rows: None
            return
        attributes = {
            f"{ATTR}.flow": flow,
            f"{ATTR}.version": version,
            f"{ATTR}.run_id": run_id,
            f"{ATTR}.node_key": source,
            f"{ATTR}.partition": partition,
        }
        with _tracer.start_as_current_span(
            f"node {source}",
            attributes=attributes,
            record_exception=False,  # its text may hold a secret: the run records it redacted
            set_status_on_exception=False,
        ) as span:

            def rows(counts: dict[str, list[int]]) -> None:
                for key, (rows_in, rows_out) in counts.items():
                    span.set_attribute(f"{ATTR}.rows_in.{key}", rows_in)
                    span.set_attribute(f"{ATTR}.rows_out.{key}", rows_out)

            from opentelemetry.trace import Status, StatusCode

            try:
                yield rows
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise


# --- Runs ending ----------------------------------------------------------------------------


def run_finished(run_id: str, status: str = "", run: FlowRun | None = None) -> None:
    """Count a run that has just ended (``flowplatform_runs_total``, its duration). ``run``:
    the run's instance when the caller has it, with its trigger, creation time and version
    (with its flow) loaded: then no query is made (the end is now)."""
    if not metrics.collecting():
        return
    known = _finished_run_fields(run) if status else None
    if known is not None:
        flow, trigger, created_at = known
        from django.utils import timezone

        metrics.run_finished(flow, status, trigger, (timezone.now() - created_at).total_seconds())
        return
    from flows.models import FlowRun

    row = (
        FlowRun.objects.filter(id=run_id)
        .values_list("flow__slug", "status", "trigger", "created_at", "finished_at")
        .first()
    )
    if row is None:
        return
    flow, status, trigger, created_at, finished_at = row
    duration = (finished_at - created_at).total_seconds() if finished_at and created_at else None
    metrics.run_finished(flow, status, trigger, duration)


def _finished_run_fields(run: FlowRun | None) -> tuple[str, str, Any] | None:
    """(flow slug, trigger, created_at) of a run instance, when loaded (never a query)."""
    if run is None:
        return None
    loaded = run.__dict__
    if loaded.get("trigger") is None or loaded.get("created_at") is None:
        return None  # deferred
    version = run._state.fields_cache.get("version")
    flow = (
        version._state.fields_cache.get("flow")
        if version is not None
        else run._state.fields_cache.get("flow")
    )
    if flow is None:
        return None
    return flow.slug, loaded["trigger"], loaded["created_at"]
