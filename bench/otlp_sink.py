"""A local OTLP trace collector for the benchmarks: accepts spans over gRPC and counts them.

    .venv/bin/python bench/otlp_sink.py   # prints the port it listens on (127.0.0.1 only)

Then each line ``stats`` on its standard input is answered with ``{"requests": n, "spans": n}``
on its standard output; it stops at the end of its input. It runs in a process of its own, so
that receiving spans costs the process that sends them nothing but the sending.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.spans = 0

    def Export(self, request: Any, context: Any) -> Any:  # (the service's method name)
        count = sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
        with self.lock:
            self.requests += 1
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpSink:
    """This sink in its own process: ``url`` for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def stats(self) -> dict[str, int]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        answer: dict[str, int] = json.loads(self.process.stdout.readline())
        return answer

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def main() -> None:
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    for _line in sys.stdin:
        with sink.lock:
            print(json.dumps({"requests": sink.requests, "spans": sink.spans}), flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
