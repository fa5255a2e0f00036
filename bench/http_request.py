"""``http_request`` benchmark: reading a paginated JSON API, the node against a hand-written loop.

    .venv/bin/python bench/http_request.py [--pages 1000] [--size 100] [--rounds 5]

A local API (its own process, keep-alive, pages encoded once at start) serves ``--pages``
pages of ``--size`` records (``GET /items?page=N&per_page=S``, ``{"data": [...]}``), then an
empty page. Three readers, side by side, rounds alternating:

- *hand-written*: a process of its own, a ``requests`` session, ``response.json()``, stop at the empty page; it only
  counts the records (the most favourable baseline: it keeps nothing);
- *node*: ``http_request`` with page pagination, in a process of its own, run as the engine runs it
  (pages saved to flow-data storage for a resume, checkpoints taken), batches consumed;
- *flow*: the same node as a one-node flow on a ``celery worker`` (the output stored as
  usual); wall time from ``start_run`` to the run's ``finished_at``.

Pages per second are compared: node / hand-written and flow / hand-written (goal ≥ 0.8), as
medians and best rounds (on a loaded machine the best round is the steadier figure), with the
CPU time each side used (the flow's: every worker process, Celery and the engine included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Worker, configure, run_child, wait_for


def setup_django() -> None:
    """Settings only (the node reads the address policy): no database needed."""
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")
    os.environ.setdefault("FLOWPLATFORM_HTTP_ALLOW_PRIVATE", "true")
    django.setup()


# --- the API ---------------------------------------------------------------------------------
def serve(pages: int, size: int) -> None:
    """Serve the pages on a free loopback port; print the port, then serve until killed."""
    bodies = [
        json.dumps(
            {
                "data": [
                    {
                        "id": i,
                        "name": f"Client {i} ✓ Ünïcödé",
                        "email": f"c{i}@example.test",
                        "status": ("paid", "pending", "refunded")[i % 3],
                        "amount": round(1 + (i % 5000) / 100, 2),
                        "created_at": "2026-01-01T10:00:00+00:00",
                        "tags": ["a", "b"],
                    }
                    for i in range(p * size, (p + 1) * size)
                ]
            }
        ).encode()
        for p in range(pages)
    ]
    empty = b'{"data": []}'

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            page = int(query.get("page", ["1"])[0])
            body = bodies[page - 1] if 1 <= page <= len(bodies) else empty
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Api:
    def __init__(self, pages: int, size: int) -> None:
        args = [sys.executable, __file__, "--serve", "--pages", str(pages), "--size", str(size)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/items"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# --- the readers -----------------------------------------------------------------------------
def hand_written(url: str, size: int) -> dict[str, Any]:
    import requests

    started, cpu = time.perf_counter(), time.process_time()
    pages = records = 0
    with requests.Session() as session:
        page = 1
        while True:
            response = session.get(url, params={"page": page, "per_page": size}, timeout=30)
            response.raise_for_status()
            data = response.json()["data"]
            pages += 1
            if not data:
                break
            records += len(data)
            page += 1
    if pages != page:
        raise SystemExit(f"read {pages} pages, expected {page}")
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"wall_s": wall_s, "cpu_s": cpu_s, "records": records}


def config(url: str, size: int) -> dict[str, Any]:
    return {
        "url": url,
        "records_path": "data",
        "pagination": {"type": "page", "size": size, "size_param": "per_page"},
    }


def node_in_process(url: str, size: int) -> dict[str, Any]:
    from django.core.files.storage import FileSystemStorage

    from nodes.builtin.http_request import HttpRequestNode
    from nodes.sdk import ExecutionContext

    with tempfile.TemporaryDirectory() as scratch:
        context = ExecutionContext(
            run_id="bench",
            storage=FileSystemStorage(location=scratch),
            save_checkpoint=lambda value: None,  # the engine writes a row; measured in the flow
        )
        started, cpu = time.perf_counter(), time.process_time()
        records = sum(map(len, HttpRequestNode(config(url, size)).execute(context, {})))
        wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"wall_s": wall_s, "cpu_s": cpu_s, "records": records}


def install_flow(url: str, size: int) -> None:
    from flows.flowfile import apply_flow_file

    node = {"key": "api", "type": "http_request", "config": config(url, size)}
    apply_flow_file({"slug": "bench-http-request", "name": "API", "nodes": [node], "edges": []})


def flow_on_worker(worker: Worker) -> dict[str, Any]:
    from flows.models import FlowRun
    from flows.services import start_run

    started, cpu = time.time(), worker.cpu_s()
    run = start_run("bench-http-request")

    def finished() -> FlowRun | None:
        run.refresh_from_db()
        return run if run.is_finished else None

    wait_for(finished, 600, "the flow run")
    if run.status != "succeeded" or run.finished_at is None:
        raise SystemExit(f"flow run {run.id} {run.status}: {run.error}")
    api = run.node_runs.get(node_key="api")
    wall_s = run.finished_at.timestamp() - started
    return {"wall_s": wall_s, "cpu_s": worker.cpu_s() - cpu, "records": api.rows_out}


def in_subprocess(reader: str, url: str, size: int) -> dict[str, Any]:
    """Run a reader in a fresh process of its own (as a script would run)."""
    return run_child([__file__, reader, url, "--size", str(size)], timeout=600)


# --- the comparison --------------------------------------------------------------------------
def measure(pages: int, size: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    api = Api(pages, size)
    worker = Worker(concurrency=1).wait_ready()
    readers: dict[str, Callable[[], dict[str, Any]]] = {
        "hand-written": lambda: in_subprocess("--hand-written", api.url, size),
        "node": lambda: in_subprocess("--node", api.url, size),
        "flow": lambda: flow_on_worker(worker),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in readers}
    try:
        install_flow(api.url, size)
        for read in readers.values():  # warm-up: imports, connections, the pool
            read()
        for index in range(rounds):
            for name, read in readers.items():
                result = read()
                if result["records"] != pages * size:
                    raise SystemExit(f"{name} read {result['records']} records, not {pages * size}")
                results[name].append(result)
                rate = (pages + 1) / result["wall_s"]
                print(
                    f"  round {index + 1} {name:<12} {result['wall_s']:6.2f}s {rate:7.0f} pages/s"
                    f"  CPU {result['cpu_s']:5.2f}s",
                    flush=True,
                )
    finally:
        worker.stop()
        api.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="http_request: node vs hand-written requests")
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hand-written", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--node", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.pages, args.size)
        return
    if args.hand_written:
        print(json.dumps(hand_written(args.hand_written, args.size)))
        return
    if args.node:
        setup_django()
        print(json.dumps(node_in_process(args.node, args.size)))
        return
    configure()
    print(f"http_request: {args.pages:,} pages of {args.size} records, {args.rounds} rounds")
    results = measure(args.pages, args.size, args.rounds)
    requests = args.pages + 1
    rate, best, cpu = {}, {}, {}
    for name, runs in results.items():
        rate[name] = requests / statistics.median(r["wall_s"] for r in runs)
        best[name] = requests / min(r["wall_s"] for r in runs)
        cpu[name] = statistics.median(r["cpu_s"] for r in runs)
        print(
            f"{name:<12} {rate[name]:6.0f} pages/s median, {best[name]:6.0f} best; "
            f"CPU {cpu[name]:.2f}s median ({1000 * cpu[name] / requests:.2f} ms a page)"
        )
    hand = "hand-written"
    for name in ("node", "flow"):
        print(
            f"ratio pages/s {name} / hand-written: {rate[name] / rate[hand]:.2f} median, "
            f"{best[name] / best[hand]:.2f} best (goal >= 0.8); "
            f"CPU {cpu[name] / cpu[hand]:.2f}x"
        )


if __name__ == "__main__":
    main()
    sys.exit(0)
