"""The platform's instrumentation of ``requests`` (``flowplatform.telemetry_requests``): the
client span a request gets, its context sent along, and the library's instrumentation when
the newer HTTP attribute names are asked for. Each case runs in a process of its own (tracing
is set up once per process), against a real HTTP server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import ROOT

SCRIPT = """
import json, sys
import requests
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from flowplatform import telemetry
from nodes.redaction import Redactor, scope

exporter = InMemorySpanExporter()
telemetry.setup("worker", processor=SimpleSpanProcessor(exporter))
base, refused = sys.argv[1], sys.argv[2]
session = requests.Session()
session.trust_env = False
with telemetry._tracer.start_as_current_span("node push"):
    session.post(f"{base}/ok?sig=secret-signature", data=b"[]", timeout=10)
    session.post(base.replace("http://", "http://user:pass@") + "/fails", data=b"", timeout=10)
    try:
        session.get(refused, timeout=10)
    except requests.ConnectionError:
        pass
    # A node's secret in a query value or an error: hidden by the node's redactor.
    with scope(Redactor(["apikey-0123456789"])):
        session.put(f"{base}/ok?api_key=apikey-0123456789", data=b"[]", timeout=10)
        try:
            session.get(refused + "?token=apikey-0123456789", timeout=10)
        except requests.ConnectionError:
            pass
session.get(f"{base}/ok", timeout=10)  # outside any span: a lone call, left out
telemetry.shutdown()
restored = not hasattr(requests.Session.send, "opentelemetry_instrumentation_requests_applied")
print(json.dumps({"restored": restored, "spans": [
    {**json.loads(s.to_json()), "scope": s.instrumentation_scope.name}
    for s in exporter.get_finished_spans()
]}))
"""


def run_script(httpserver: HTTPServer, **env: str) -> dict[str, Any]:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{free.getsockname()[1]}/nobody"
    variables = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    variables.update(env, DJANGO_SETTINGS_MODULE="tests.settings")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, httpserver.url_for("").rstrip("/"), refused],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def serve(httpserver: HTTPServer) -> list[str]:
    seen: list[str] = []

    def answer(request: Request) -> Response:
        seen.append(request.headers.get("traceparent", ""))
        return Response("{}", status=500 if request.path == "/fails" else 200)

    httpserver.expect_request("/ok").respond_with_handler(answer)
    httpserver.expect_request("/fails").respond_with_handler(answer)
    return seen


def test_a_request_is_a_client_span_under_the_current_span_with_its_context_sent(
    httpserver: HTTPServer,
) -> None:
    seen = serve(httpserver)
    result = run_script(httpserver)
    [node] = [s for s in result["spans"] if s["name"] == "node push"]
    [ok, failed] = [s for s in result["spans"] if s["name"] == "POST"]
    [refused, refused_secret] = [s for s in result["spans"] if s["name"] == "GET"]  # (lone: none)
    [secret] = [s for s in result["spans"] if s["name"] == "PUT"]
    trace_id = node["context"]["trace_id"]
    for span in (ok, failed, refused, secret, refused_secret):
        assert span["kind"] == "SpanKind.CLIENT"
        assert span["parent_id"] == node["context"]["span_id"]
        assert span["context"]["trace_id"] == trace_id
        assert span["scope"] == "opentelemetry.instrumentation.requests"
    assert ok["attributes"]["http.method"] == "POST"
    assert ok["attributes"]["http.status_code"] == 200
    assert "secret-signature" not in ok["attributes"]["http.url"]
    assert ok["status"]["status_code"] == "UNSET"
    assert failed["attributes"]["http.status_code"] == 500
    assert "pass" not in failed["attributes"]["http.url"]
    assert failed["status"]["status_code"] == "ERROR"
    assert refused["status"]["status_code"] == "ERROR"
    assert refused["events"][0]["name"] == "exception"
    # The node's secrets are in neither the URL nor the error.
    assert "apikey-0123456789" not in json.dumps([secret, refused_secret])
    assert "/ok?api_key=" in secret["attributes"]["http.url"]
    assert "Max retries" in refused_secret["events"][0]["attributes"]["exception.message"]
    # Each request sent its own span's context (the lone GET its unsampled one).
    sent = [header.rsplit("-", 1) for header in seen]
    assert sent[0][0] == f"00-{trace_id[2:]}-{ok['context']['span_id'][2:]}"
    assert sent[1][0] == f"00-{trace_id[2:]}-{failed['context']['span_id'][2:]}"
    assert [int(flags, 16) & 1 for _, flags in sent] == [1, 1, 1, 0]  # sampled but the last
    assert result["restored"]


def test_the_newer_http_attribute_names_use_the_librarys_instrumentation(
    httpserver: HTTPServer,
) -> None:
    serve(httpserver)
    result = run_script(httpserver, OTEL_SEMCONV_STABILITY_OPT_IN="http")
    [ok, failed] = [s for s in result["spans"] if s["name"] == "POST"]
    assert ok["attributes"]["http.request.method"] == "POST"
    assert ok["attributes"]["http.response.status_code"] == 200
    assert failed["attributes"]["http.response.status_code"] == 500
    assert result["restored"]
