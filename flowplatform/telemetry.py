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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
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
#: OTLP's transport when ``OTEL_EXPORTER_OTLP_PROTOCOL`` is unset: the specification's
#: default, without gRPC's threads in every exporting process (decision 0046).
DEFAULT_OTLP_PROTOCOL = "http/protobuf"

_tracer: Any = None  # the platform's tracer, once tracing is on in this process
_instrumented: list[Any] = []
#: Whether the engine's own bookkeeping is left out of the traces (the default sampling: no
#: ``OTEL_TRACES_SAMPLER``): the client calls (psycopg, redis, requests) made by a task
#: outside its nodes, or while a run is being recorded, are not instrumented at all, and the
#: messages that move a run along get no span of their own (``QuietTasks``).
_bookkeeping_left_out = False
# The pieces of the SDK the hooks use on every node, bound once tracing is on.
_otel_context: Any = None
_set_span_in_context: Any = None
_inject: Any = None
_QUIET: Any = None  # the context key that turns the instrumentations off (and on again)
_STATUS_OK: Any = None


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
    global _tracer, _bookkeeping_left_out, _otel_context, _set_span_in_context, _inject
    global _QUIET, _STATUS_OK
    if _tracer is not None:
        return True
    if processor is None and not enabled_by_environment():
        return False
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
    from opentelemetry.propagate import inject
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Status, StatusCode

    _otel_context, _set_span_in_context, _inject = otel_context, trace.set_span_in_context, inject
    _QUIET, _STATUS_OK = _SUPPRESS_INSTRUMENTATION_KEY, Status(StatusCode.OK)
    _bookkeeping_left_out = not os.environ.get("OTEL_TRACES_SAMPLER")

    attributes = (
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"flowplatform-{kind}"}
    )
    provider = TracerProvider(resource=Resource.create(attributes), sampler=_sampler())
    for span_processor in [processor] if processor else _processors_from_environment():
        provider.add_span_processor(span_processor)
    trace.set_tracer_provider(provider)
    _instrument(kind, provider)
    if _bookkeeping_left_out:
        from nodes.builtin import pg_pool

        pg_pool.around_reset = untraced
    _tracer = provider.get_tracer("flowplatform")
    return True


def _sampler() -> Any:
    """``OTEL_TRACES_SAMPLER`` when set. Otherwise every trace, without the database and Redis
    calls made outside any trace (heartbeats, lease renewals, probes, scrapes: each would be
    a trace of one span). (The engine's bookkeeping is left out before any span is made: see
    ``QuietTasks``.)"""
    from opentelemetry.sdk.trace import sampling

    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()
    from opentelemetry.trace import SpanKind

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

    return sampling.ParentBased(root=NoLoneClientCalls())


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
        or DEFAULT_OTLP_PROTOCOL
    ).strip()
    if protocol == "grpc":
        from flowplatform.telemetry_export import SpanExporter

        return SpanExporter()
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

    from flowplatform.telemetry_requests import RequestsInstrumentor

    instrumentors: dict[str, Any] = {
        "celery": _quiet_tasks_class()() if _bookkeeping_left_out else CeleryInstrumentor(),
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


#: The tasks that move a run along (run a node or a partition, close or fail a run, reap
#: stalled runs): by default they get no span of their own (``QuietTasks``); the spans of
#: the nodes they execute tell what a run did.
ENGINE_TASK_PREFIX = "flows."


def is_engine_task(name: str) -> bool:
    return name.startswith(ENGINE_TASK_PREFIX)


def _quiet_tasks_class() -> type[Any]:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor, celery_getter, utils
    from opentelemetry.propagate import extract
    from opentelemetry.trace import INVALID_SPAN, SpanKind

    class QuietTasks(CeleryInstrumentor):  # type: ignore[misc]
        """Celery's instrumentation (a span ``run/<task>`` per task run, with the library's
        attributes, a span per message sent, the trace's context in the message headers),
        with the engine's bookkeeping left out:

        - the engine's tasks (``is_engine_task``) get no span of their own: such a task
          runs in the context its message carried, so the node it executes is a child of
          the run's root span (a retry's too), and that context goes on in the headers of
          what it sends (the next task, a retry, a fan-out);
        - the client calls a task makes outside its nodes (taking, claiming and finishing a
          node, storing its result): ``node_execution`` turns them on again for what a node
          does;
        - the messages the engine sends to move a run along (dispatching it from
          ``run_span``, a node's next task, a retry) get no span of their own (nor their Redis
          command): the task they start is a child of the sender's span.

        A task's span is made and ended here with the library's name, kind, parent and
        attributes, and without its task-duration histogram (there is no OpenTelemetry meter
        provider: the platform's metrics are Prometheus'); failures and retries are recorded
        on it by the library's own handlers."""

        def _trace_prerun(self, *args: Any, **kwargs: Any) -> None:
            task, task_id = kwargs.get("task"), kwargs.get("task_id")
            if task is None or task_id is None:
                return
            parent = extract(task.request, getter=celery_getter) or None
            if is_engine_task(task.name):
                # No span: the task runs in the context its message carried (a node span is
                # then a child of the run's root span), which goes on in what it sends.
                span = INVALID_SPAN
                context = parent
            else:
                span = self._tracer.start_span(
                    f"run/{task.name}", context=parent, kind=SpanKind.CONSUMER
                )
                context = _set_span_in_context(span, parent)
            token = _otel_context.attach(_otel_context.set_value(_QUIET, True, context))
            utils.attach_context(task, task_id, span, None, token)

        def _trace_postrun(self, *args: Any, **kwargs: Any) -> None:
            task, task_id = kwargs.get("task"), kwargs.get("task_id")
            if task is None or task_id is None:
                return
            found = utils.retrieve_context(task, task_id)
            if found is None:
                return
            span, _, token = found
            if span.is_recording():
                attributes = _Attributes({"celery.action": "run"})
                utils.set_attributes_from_context(attributes, kwargs)
                utils.set_attributes_from_context(attributes, task.request)
                attributes.set_attribute("celery.task_name", task.name)
                span.set_attributes(attributes.values)
            span.end()
            utils.detach_context(task, task_id)
            _otel_context.detach(token)

        def _trace_before_publish(self, *args: Any, **kwargs: Any) -> None:
            if not _otel_context.get_value(_QUIET):
                super()._trace_before_publish(*args, **kwargs)
                return
            headers = kwargs.get("headers")
            if headers:
                _inject(headers)

        def _trace_after_publish(self, *args: Any, **kwargs: Any) -> None:
            if not _otel_context.get_value(_QUIET):
                super()._trace_after_publish(*args, **kwargs)

    return QuietTasks


class _Attributes:
    """Collects what the Celery instrumentation's helper sets on a span, to set it at once."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self.values[key] = value


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
            self.span.set_attributes(
                {f"{ATTR}.run_id": str(run.id), f"{ATTR}.version": run.version.number}
            )

    def bind(self, function: Callable[[], None]) -> Callable[[], None]:
        """``function`` run later within this span's context (its tasks join the trace)."""
        if self.span is None:
            return function
        captured = _otel_context.get_current()

        def within() -> None:
            token = _otel_context.attach(captured)
            try:
                function()
            finally:
                _otel_context.detach(token)

        return within


@contextmanager
def run_span(flow: str, trigger: str) -> Iterator[RunSpan]:
    """The root span ``flow_run <slug>`` of a run being started (nothing when tracing is off).
    Inside, the statements that record the run are left out by default (bookkeeping); the
    message that dispatches it is traced and carries the span's context."""
    if _tracer is None:
        yield RunSpan()
        return
    span = _tracer.start_span(
        f"flow_run {flow}", attributes={f"{ATTR}.flow": flow, f"{ATTR}.trigger": trigger}
    )
    token = _otel_context.attach(_current(span, quiet=True))
    try:
        yield RunSpan(span)
    except BaseException as exc:
        from opentelemetry.trace import Status, StatusCode

        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        _otel_context.detach(token)
        span.end()


def _current(span: Any, quiet: bool) -> Any:
    """The current context with ``span`` as its span; its client calls traced (``quiet``
    False: what a node does) or, when the bookkeeping is left out, not (``quiet`` True)."""
    context = _set_span_in_context(span)
    if _bookkeeping_left_out:
        context = _otel_context.set_value(_QUIET, quiet, context)
    return context


@contextmanager
def untraced() -> Iterator[None]:
    """The client calls made inside this block are bookkeeping, not what a node does: not
    traced by default (no ``OTEL_TRACES_SAMPLER``), even inside a node's span. For what the
    engine or a node's connection pool does around the node's own work: saving a checkpoint,
    setting a session up or resetting it for the next query. Nothing when tracing is off."""
    if not _bookkeeping_left_out:
        yield
        return
    token = _otel_context.attach(_otel_context.set_value(_QUIET, True))
    try:
        yield
    finally:
        _otel_context.detach(token)


# --- One node execution ---------------------------------------------------------------------


class NodeObservation:
    """Handed to the code inside ``node_execution``: report the rows when the node succeeds."""

    __slots__ = ("rows_in", "rows_out", "succeeded")

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
        span = token = None
        if _tracer is not None:
            span = _start_node_span(node_run, flow, version, attempt)
            token = _otel_context.attach(_current(span, quiet=False))
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
            if span is not None:
                _otel_context.detach(token)
                _end_node_span(span, observation, status, error, redactor)


def _end_node_span(
    span: Any,
    observation: NodeObservation,
    status: str,
    error: BaseException | None,
    redactor: Redactor | None,
) -> None:
    attributes: dict[str, Any] = {
        f"{ATTR}.rows_in": observation.rows_in,
        f"{ATTR}.rows_out": observation.rows_out,
        f"{ATTR}.status": status,
    }
    if status == "failed":
        from opentelemetry.trace import Status, StatusCode

        from flows.transitions import clip_error  # (imports this module)

        message = f"{type(error).__name__}: {error}" if error is not None else "failed"
        if redactor is not None:
            message = redactor.redact(message)
        message = clip_error(message)  # as much as the node run keeps
        attributes[f"{ATTR}.error"] = message
        span.set_attributes(attributes)
        span.set_status(Status(StatusCode.ERROR, message))
    else:
        span.set_attributes(attributes)
        span.set_status(_STATUS_OK)
    span.end()


class PartitionObservation:
    """Handed to the code inside ``partition_execution``: the rows of each node ({key: [in,
    out]}), whether the partition succeeded, and which node failed it."""

    __slots__ = ("failed_node", "rows", "succeeded")

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.succeeded = False
        self.failed_node = ""


def _start_node_span(
    node_run: NodeRun, flow: str, version: int, attempt: int, partition: int | None = None
) -> Any:
    """The span ``node <key>`` of one execution of a node run (of one of its partitions when
    ``partition`` is given), with the node's attributes; tracing is on."""
    assert _tracer is not None
    attributes: dict[str, Any] = {
        f"{ATTR}.flow": flow,
        f"{ATTR}.version": version,
        f"{ATTR}.run_id": str(node_run.run_id),
        f"{ATTR}.node_key": node_run.node_key,
        f"{ATTR}.node_type": node_run.node_type,
        f"{ATTR}.attempt": attempt,
    }
    if partition is not None:
        attributes[f"{ATTR}.partition"] = partition
    return _tracer.start_span(f"node {node_run.node_key}", attributes=attributes)


@contextmanager
def partition_execution(
    node_runs: Sequence[NodeRun],
    flow: str,
    version: int,
    partition: int,
    attempt: int,
    retry: bool,
    redactor: Redactor | None = None,
) -> Iterator[PartitionObservation]:
    """Around one partition of a fan-out, executed through ``node_runs`` by one task: per node,
    a span ``node <key>`` with ``flowplatform.partition`` (tracing on) and the node metrics,
    counted as a whole node's execution is (``node_execution``); and the run of its log
    lines. When it fails, the node that raised counts ``failed`` and the others ``cancelled``;
    a cancelled partition counts ``cancelled``."""
    observation = PartitionObservation()
    started = time.perf_counter()
    first = node_runs[0] if node_runs else None  # (none: a partition that only stores a partial)
    context = (
        run_context(run_id=first.run_id, node_key=first.node_key, flow=flow)
        if first is not None
        else nullcontext()
    )
    with context:
        spans = []
        if _tracer is not None:
            spans = [
                _start_node_span(node_run, flow, version, attempt, partition)
                for node_run in node_runs
            ]
        error: BaseException | None = None
        cancelled = False
        try:
            yield observation
        except BaseException as exc:
            error = exc
            # (a lease taken over: another delivery goes on with the partition)
            cancelled = type(exc).__name__ in ("RunCancelled", "PartitionStopped", "LeaseLost")
            raise
        finally:
            elapsed = time.perf_counter() - started
            for i, node_run in enumerate(node_runs):
                status = _partition_status(observation, node_run.node_key, cancelled)
                rows_in, rows_out = observation.rows.get(node_run.node_key, (0, 0))
                seen = NodeObservation()
                seen.rows_in, seen.rows_out = rows_in, rows_out
                metrics.node_finished(node_run.node_type, status, elapsed, rows_in, rows_out, retry)
                if spans:
                    _end_node_span(spans[i], seen, status, error, redactor)


def _partition_status(observation: PartitionObservation, key: str, cancelled: bool) -> str:
    if observation.succeeded:
        return "succeeded"
    if cancelled or (observation.failed_node and observation.failed_node != key):
        return "cancelled"
    return "failed"


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
