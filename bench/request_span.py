"""What tracing a ``requests`` call costs the thread that sends it, in one process.

    .venv/bin/python bench/request_span.py [--requests 2000] [--rounds 7]

Each side runs in a process of its own (tracing is set up once per process), in turns:
``untraced`` (tracing on, ``requests`` not instrumented), ``library``
(``opentelemetry-instrumentation-requests``' own wrapper) and ``platform``
(``flowplatform.telemetry_requests``). Each request is a POST made inside a node-like span,
answered at once by an adapter mounted on the session (no network: the figure is the
instrumentation's, not the peer's), spans handed to a batch span processor whose exporter
drops them (the export is the batch thread's, measured end to end by
``bench/observability.py``). CPU time of the sending thread per request, best and median of
the rounds; the traced sides' cost is their difference to ``untraced``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("untraced", "library", "platform")


def measure(side: str, count: int, rounds: int) -> list[float]:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    if side == "untraced":
        os.environ["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "requests"
    import requests
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from requests.adapters import BaseAdapter
    from requests.models import Response

    from flowplatform import telemetry, telemetry_requests

    if side == "library":
        telemetry_requests.uses_library = lambda: True  # type: ignore[assignment]

    class Answer(BaseAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Response:
            response = Response()
            response.status_code, response.request, response.url = 200, request, request.url
            response._content = b"{}"
            return response

        def close(self) -> None:
            pass

    class Dropped(SpanExporter):  # type: ignore[misc]
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    telemetry.setup("worker", processor=BatchSpanProcessor(Dropped()))
    tracer = telemetry._tracer
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", Answer())
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k"}

    def post(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("node push"):
                session.post("http://crm.internal/ingest", data=b"[]", headers=headers, timeout=10)

    post(200)
    figures = []
    for _ in range(rounds):
        started = time.thread_time()
        post(count)
        figures.append((time.thread_time() - started) / count * 1e6)
    telemetry.shutdown()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--turns", type=int, default=3, help="processes per side, in turns")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(" ".join(f"{f:.1f}" for f in measure(args.side, args.requests, args.rounds)))
        return
    results: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(args.turns):
        for side in SIDES:
            command = [sys.executable, __file__, "--side", side, "--requests", str(args.requests)]
            command += ["--rounds", str(args.rounds)]
            out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
            results[side] += [float(f) for f in out.stdout.split()]
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    best = {side: min(figures) for side, figures in results.items()}
    for side, figures in results.items():
        extra = (
            ""
            if side == "untraced"
            else f"; traced request: {best[side] - best['untraced']:.1f} µs"
        )
        print(
            f"{side:9} µs per request (sending thread): best {best[side]:.1f}, "
            f"median {statistics.median(figures):.1f}{extra}"
        )


if __name__ == "__main__":
    main()
