"""The platform's span encoding gives byte for byte the message of the OTLP library's encoder."""

from __future__ import annotations

import enum
import random
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as library_encode_spans,
)
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from flowplatform.telemetry_export import encode_spans


class Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def provider(kept: Kept, **resource: Any) -> TracerProvider:
    made = TracerProvider(
        resource=Resource.create(resource, schema_url="https://example.com/schema"),
        span_limits=SpanLimits(max_span_attributes=12, max_events=2, max_links=2),
    )
    made.add_span_processor(SimpleSpanProcessor(kept))
    return made


def same(spans: list[ReadableSpan]) -> None:
    ours = encode_spans(spans)
    theirs = library_encode_spans(spans)
    assert ours == theirs
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )


def test_the_platforms_spans_encode_as_the_library_encodes_them() -> None:
    kept = Kept()
    tracer = provider(kept, **{"service.name": "flowplatform-worker"}).get_tracer("flowplatform")
    celery = provider(kept, **{"service.name": "flowplatform-worker"}).get_tracer(
        "opentelemetry.instrumentation.celery", "0.66b1", schema_url="https://opentelemetry.io/s"
    )
    with (
        tracer.start_as_current_span("flow_run orders", attributes={"flowplatform.flow": "o"}),
        celery.start_as_current_span(
            "run/flows.run_node",
            kind=SpanKind.CONSUMER,
            attributes={"celery.timelimit": ("3600", ""), "celery.retries": 2},
        ),
    ):
        with tracer.start_as_current_span(
            "node rows",
            attributes={"flowplatform.version": 3, "flowplatform.attempt": 1},
        ) as span:
            span.set_attributes({"flowplatform.rows_out": 10, "flowplatform.status": "ok"})
            span.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("node fails") as span:
            span.set_attribute("flowplatform.error", "ValueError: no")
            span.set_status(Status(StatusCode.ERROR, "ValueError: no"))
    same(kept.spans)


def test_uncommon_values_events_links_remote_parents_and_dropped_counts() -> None:
    kept = Kept()
    first = provider(kept, **{"service.name": "a", "deployment.environment": "test"})
    second = provider(kept, **{"service.name": "b"})
    remote = extract(
        {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "vendor=value,other=1",
        }
    )
    tracer = first.get_tracer("x", attributes={"scope.attribute": True})
    with tracer.start_as_current_span(
        "remote child",
        context=remote,
        kind=SpanKind.SERVER,
        attributes={
            "colour": Colour.RED,
            "level": Level.HIGH,
            "ratio": 0.5,
            "flag": False,
            "names": ["a", "b"],
            "numbers": (1, 2, 3),
            "flags": (True, False),
            "floats": (1.5,),
            "empty": (),
            "bytes": b"raw",
        },
        links=[Link(remote_context(), {"why": "because"})],
    ) as span:
        span.add_event("started", {"n": 1})
        span.add_event("again")
        span.add_event("dropped: over the limit")
        span.record_exception(RuntimeError("boom"))
        for index in range(20):  # over the attribute limit: dropped_attributes_count
            span.set_attribute(f"extra.{index}", index)
    with second.get_tracer("y").start_as_current_span("other resource", kind=SpanKind.PRODUCER):
        pass
    with tracer.start_as_current_span("back to the first", kind=SpanKind.CLIENT):
        pass
    same(kept.spans)


def remote_context() -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_spans_encode_as_the_library_encodes_them(seed: int) -> None:
    rng = random.Random(seed)
    kept = Kept()
    providers = [provider(kept, **{"service.name": f"s{n}"}) for n in range(2)]
    tracers = [p.get_tracer(f"scope{n}") for p in providers for n in range(2)]

    def value() -> Any:
        kind = rng.randrange(6)
        if kind == 0:
            return "".join(rng.choice("aé€x ") for _ in range(rng.randrange(8)))
        if kind == 1:
            return rng.randrange(-(2**40), 2**40)
        if kind == 2:
            return rng.random() * 1e6
        if kind == 3:
            return rng.random() < 0.5
        if kind == 4:
            return [str(rng.randrange(9)) for _ in range(rng.randrange(4))]
        return tuple(rng.randrange(9) for _ in range(rng.randrange(4)))

    for _ in range(60):
        tracer = rng.choice(tracers)
        kind = rng.choice(list(SpanKind))
        attributes = {f"k{n}": value() for n in range(rng.randrange(15))}
        with tracer.start_as_current_span(f"span {rng.random()}", kind=kind, attributes=attributes):
            if rng.random() < 0.5:
                with tracer.start_as_current_span("child") as child:
                    code = rng.choice(list(StatusCode))
                    if code is not StatusCode.UNSET:
                        description = "why" if code is StatusCode.ERROR else None
                        child.set_status(Status(code, description))
    rng.shuffle(kept.spans)
    same(kept.spans)


def test_the_exporter_sends_the_spans_to_an_otlp_collector_over_grpc() -> None:
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from flowplatform.telemetry_export import SpanExporter as PlatformExporter

    received: list[Any] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:  # (the service's method name)
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        kept = Kept()
        tracer = provider(kept, **{"service.name": "flowplatform-worker"}).get_tracer("t")
        for key in ("rows", "keep", "shape"):
            with tracer.start_as_current_span(f"node {key}", attributes={"flowplatform.rows": 1}):
                pass
        exporter = PlatformExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
        try:
            assert exporter.export(kept.spans) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
    finally:
        server.stop(0)
    assert len(received) == 1
    assert received[0] == library_encode_spans(kept.spans)
    names = [s.name for s in received[0].resource_spans[0].scope_spans[0].spans]
    assert names == ["node rows", "node keep", "node shape"]
