"""OTLP's transport: http/protobuf unless ``OTEL_EXPORTER_OTLP_PROTOCOL`` says otherwise
(decision 0046), spans received by a collector on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import ROOT

SCRIPT = (
    "import django; django.setup()\n"
    "from flowplatform import telemetry\n"
    "assert telemetry.setup('cli')\n"
    "with telemetry.run_span('otlp-check', 'manual'):\n"
    "    pass\n"
    "telemetry.shutdown()\n"
)


class Collector:
    """What an OTLP/HTTP collector receives: the path, content type and spans of each export."""

    def __init__(self) -> None:
        self.exports: list[tuple[str, str, list[str]]] = []
        received = self.exports

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                names = [
                    span.name
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                ]
                received.append((self.path, self.headers.get("Content-Type", ""), names))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    peer = Collector()
    yield peer
    peer.server.shutdown()
    peer.server.server_close()


def run_traced(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", OTEL_TRACES_EXPORTER="otlp", **env_extra)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_spans_go_over_http_protobuf_when_no_protocol_is_set(collector: Collector) -> None:
    done = run_traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    assert done.returncode == 0, done.stderr
    # shutdown() flushed the batch before the process ended: the export is here already.
    assert collector.exports, "no export reached the collector"
    path, content_type, names = collector.exports[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    assert "flow_run otlp-check" in [
        n for _, _, span_names in collector.exports for n in span_names
    ]
    assert names


def test_an_unknown_protocol_is_refused_by_name() -> None:
    done = run_traced(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": "ws"}
    )
    assert done.returncode != 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL: 'ws' is not supported" in done.stderr
