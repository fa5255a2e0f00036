"""Overhead benchmark: a trivial 4-node flow against the same job as a raw 4-task Celery chain.

    .venv/bin/python bench/overhead.py [--runs 30] [--concurrent 100] [--observe]

The job: read 10 rows from PostgreSQL, keep 8, reshape them, add a field. The flow is
``sql_query -> filter -> map_fields -> map_fields``; the raw chain is four plain tasks doing the
same (rows travel in the messages, no state is recorded; the first task opens a connection, as
a hand-written task does, where ``sql_query`` keeps idle connections between runs). Both run on
one broker and one worker with 2 pool processes.

- latency: the median of ``--runs`` sequential runs, from the call that starts it
  (``start_run`` / ``apply_async``) to the end of its last task (``finished_at`` / the time the
  last task returns);
- throughput: ``--concurrent`` runs started at once, divided by the time until the last ends.

The ratios are printed last. ``--observe`` turns tracing and metrics on (as a deployment
would: spans exported over OTLP/gRPC in batches, to a local collector; the worker serving
``/metrics`` for its pool in multiprocess mode); ``bench/observability.py`` compares the two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Peer, Worker, configure, source_url, wait_for

FLOW = {
    "slug": "bench-overhead",
    "name": "Overhead benchmark",
    "nodes": [
        {
            "key": "rows",
            "type": "sql_query",
            "config": {
                "connection": "warehouse",
                "query": "select n, 'item ' || n as name from generate_series(1, 10) n",
            },
        },
        {
            "key": "keep",
            "type": "filter",
            "config": {"conditions": [{"field": "n", "op": "gt", "value": 2}]},
        },
        {
            "key": "shape",
            "type": "map_fields",
            "config": {"mapping": {"value": "n", "label": "name"}},
        },
        {
            "key": "tag",
            "type": "map_fields",
            "config": {"mapping": {"source": {"value": "bench"}}, "keep_unmapped": True},
        },
    ],
    "edges": [
        {"from": "rows", "to": "keep"},
        {"from": "keep", "to": "shape"},
        {"from": "shape", "to": "tag"},
    ],
}


def install_flow() -> None:
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection

    connection = Connection.objects.filter(name="warehouse").first() or Connection(name="warehouse")
    connection.set_url(source_url())
    connection.set_headers({})
    connection.save()
    apply_flow_file(FLOW)


def raw_chain():  # type: ignore[no-untyped-def]
    from celery import chain

    from bench.rawtasks import raw_filter, raw_map, raw_query, raw_tag

    return chain(raw_query.s(source_url()), raw_filter.s(), raw_map.s(), raw_tag.s())


def flow_runs(count: int) -> float:
    """Start ``count`` runs at once; seconds until the last finished."""
    from flows.models import FlowRun
    from flows.services import start_run

    started = time.time()
    ids = [start_run("bench-overhead").id for _ in range(count)]

    def all_done() -> list[FlowRun] | None:
        runs = list(FlowRun.objects.filter(id__in=ids))
        return runs if all(r.is_finished for r in runs) else None

    runs = wait_for(all_done, 600, "the flow runs")
    if any(r.status != "succeeded" for r in runs):
        raise SystemExit(f"a flow run failed: {[r.error for r in runs if r.error][:1]}")
    return max(r.finished_at.timestamp() for r in runs) - started  # type: ignore[union-attr]


def raw_runs(count: int) -> float:
    started = time.time()
    results = [raw_chain().apply_async() for _ in range(count)]
    ends = [result.get(timeout=600) for result in results]
    return max(ends) - started


def latencies(job, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    return [job(1) for _ in range(runs)]


def observe() -> Any:
    """Tracing and metrics on for this process and the worker it starts, as a deployment turns
    them on: spans exported over OTLP (gRPC, the default protocol; ``OTEL_EXPORTER_OTLP_PROTOCOL
    =http/protobuf`` for the other) to a local collector of their own, the worker serving
    ``/metrics`` for its pool. Returns the collector."""
    import socket

    from bench.otlp_sink import OtlpSink

    http = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "http/protobuf"
    sink = Peer() if http else OtlpSink()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")  # BENCH: =none for metrics alone
    os.environ.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=sink.url, FLOWPLATFORM_WORKER_METRICS_PORT=str(port)
    )
    return sink


def observed(sink: Any) -> str:
    """Proof that it was on: span batches received, node runs counted by the worker."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    port = os.environ["FLOWPLATFORM_WORKER_METRICS_PORT"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    node_runs = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "flowplatform_node_runs_total"
    )
    time.sleep(6)  # the batch span processor exports every 5 s
    return f"observed: {sink.stats()['requests']} span batches exported, {node_runs:.0f} node runs counted"


def main() -> None:
    parser = argparse.ArgumentParser(description="Overhead benchmark: flow vs raw chain")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--observe", action="store_true", help="tracing and metrics on")
    args = parser.parse_args()
    sink = observe() if args.observe else None
    configure()
    if sink is not None:
        from flowplatform import telemetry

        telemetry.setup("cli")  # this process starts the runs: it opens their root spans
    install_flow()
    worker = Worker(concurrency=2, include=["bench.rawtasks"]).wait_ready()
    try:
        flow_runs(2), raw_runs(2)  # warm-up: imports, connections
        flow_lat, raw_lat = [], []
        worker_cpu = starter_cpu = 0.0
        for _ in range(args.runs):  # interleaved, so both see the same machine
            cpu_before, own_before = worker.cpu_s(), time.process_time()
            flow_lat.append(flow_runs(1))
            worker_cpu += worker.cpu_s() - cpu_before
            starter_cpu += time.process_time() - own_before
            raw_lat.append(raw_runs(1))
        flow_total = flow_runs(args.concurrent)
        raw_total = raw_runs(args.concurrent)
        if sink is not None:
            print(observed(sink))
    finally:
        worker.stop()
        if sink is not None:
            from flowplatform import telemetry

            telemetry.shutdown()  # the last spans of this process, before the sink goes
            sink.stop()
    flow_med, raw_med = statistics.median(flow_lat), statistics.median(raw_lat)
    flow_tp, raw_tp = args.concurrent / flow_total, args.concurrent / raw_total
    print(
        f"latency, median of {args.runs}: flow {flow_med * 1000:.1f} ms, raw chain {raw_med * 1000:.1f} ms"
    )
    print(
        f"throughput, {args.concurrent} at once: flow {flow_tp:.1f} runs/s ({flow_total:.2f}s), "
        f"raw chain {raw_tp:.1f} runs/s ({raw_total:.2f}s)"
    )
    print(
        f"CPU per flow run: worker {worker_cpu / args.runs * 1000:.1f} ms, "
        f"starting process {starter_cpu / args.runs * 1000:.1f} ms"
    )
    print(f"latency ratio flow/raw: {flow_med / raw_med:.2f} (goal <= 1.5)")
    print(f"throughput ratio flow/raw: {flow_tp / raw_tp:.2f} (goal >= 0.66)")


if __name__ == "__main__":
    main()
