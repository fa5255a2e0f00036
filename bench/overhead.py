"""Overhead benchmark: the minimal flow against the same job as a raw 4-task Celery chain.

    .venv/bin/python bench/overhead.py [--runs 30] [--concurrent 100] [--rounds 3] [--observe]

The job users run: read 10 rows from PostgreSQL, keep 8, reshape them, POST each record to an
HTTP endpoint (a peer on loopback, in a process of its own). The flow is
``sql_query -> filter -> map_fields -> http_post`` (``http_post`` with its defaults: one
request per record); the raw chain is four plain tasks doing the same (connect and select,
filter, map, one POST per record over one session; rows travel in the messages, no state is
recorded). Both run on one broker and one worker with 2 pool processes.

- latency: ``--runs`` sequential runs, flow and chain interleaved, from the call that starts it
  (``start_run`` / ``apply_async``) to the end of its last task (``finished_at`` / the time the
  last task returns): median and 95th percentile; and how long after that end the caller
  waiting for it returns (``wait_for_run`` / ``AsyncResult.get()``);
- throughput: ``--concurrent`` runs started at once, divided by the time until the last ends;
- where it went, per run of each phase (``Meter``): CPU of the worker's processes, of this
  (starting) process, of the PostgreSQL backends of the platform's and the source's databases,
  and the pool processes' time on a CPU, waiting for one, and blocked (PostgreSQL's answers
  and commits, Redis, the peer, or no work).

Everything is measured ``--rounds`` times, flow and chain side by side in each round; the
figures printed last are the medians over the rounds, with the ratios. ``--observe`` turns
tracing and metrics on (as a deployment would: spans exported over OTLP (http/protobuf) in batches, to a
local collector; the worker serving ``/metrics`` for its pool in multiprocess mode);
``bench/observability.py`` compares the two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Peer, Worker, children, configure, schedstat_s, source_url, wait_for

#: Records each run sends (rows 3..10 of the 10 read).
RECORDS_PER_RUN = 8

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
            "config": {"mapping": {"order_id": "n", "label": "name", "source": {"value": "bench"}}},
        },
        {
            "key": "push",
            "type": "http_post",
            "config": {"connection": "crm", "url": "/ingest"},
        },
    ],
    "edges": [
        {"from": "rows", "to": "keep"},
        {"from": "keep", "to": "shape"},
        {"from": "shape", "to": "push"},
    ],
}


def install_flow(peer_url: str) -> None:
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection

    for name, url in (("warehouse", source_url()), ("crm", peer_url)):
        connection = Connection.objects.filter(name=name).first() or Connection(name=name)
        connection.set_url(url)
        connection.set_headers({})
        connection.save()
    apply_flow_file(FLOW)


def raw_chain(peer_url: str):  # type: ignore[no-untyped-def]
    from celery import chain

    from bench.rawtasks import raw_filter, raw_map, raw_post, raw_query

    return chain(
        raw_query.s(source_url()), raw_filter.s(), raw_map.s(), raw_post.s(f"{peer_url}/ingest")
    )


def flow_runs(count: int) -> float:
    """Start ``count`` runs at once; seconds until the last finished."""
    from flows.models import FlowRun
    from flows.services import start_run

    started = time.time()
    ids = [start_run("bench-overhead").id for _ in range(count)]
    pending = list(ids)

    def all_done() -> bool:
        # As cheap as the raw chains' check, which stops at the first result not ready: one
        # small query a poll. (Reading all the runs every 50 ms cost this process 2-5 ms of
        # CPU per run, and the database its share, competing with the worker for the cores.)
        while pending and FlowRun.objects.filter(id=pending[0], finished_at__isnull=False).exists():
            pending.pop(0)
        return not pending

    wait_for(all_done, 600, "the flow runs")
    runs = list(FlowRun.objects.filter(id__in=ids))
    if any(r.status != "succeeded" for r in runs):
        raise SystemExit(f"a flow run failed: {[r.error for r in runs if r.error][:1]}")
    return max(r.finished_at.timestamp() for r in runs) - started  # type: ignore[union-attr]


def raw_runs(count: int, peer_url: str) -> float:
    started = time.time()
    results = [raw_chain(peer_url).apply_async() for _ in range(count)]
    # Each chain's end is the time its last task returned (in its result). The results are
    # read by polling: the result backend's pub/sub wake-up is sometimes lost under load,
    # and ``get()`` then waits for its whole timeout.
    wait_for(lambda: all(result.ready() for result in results), 600, "the raw chains")
    ends = [result.get(timeout=10) for result in results]
    return max(ends) - started


def flow_once() -> tuple[float, float]:
    """One run: seconds from ``start_run`` to the run's end, and from its end until
    ``wait_for_run`` returned."""
    from flows.services import start_run, wait_for_run

    started = time.time()
    run = wait_for_run(start_run("bench-overhead"), timeout=600)
    returned = time.time()
    if run.status != "succeeded" or run.finished_at is None:
        raise SystemExit(f"a flow run failed: {run.error}")
    return run.finished_at.timestamp() - started, returned - run.finished_at.timestamp()


def raw_once(peer_url: str) -> tuple[float, float]:
    """One chain: seconds from ``apply_async`` to its last task's end, and from that end until
    ``AsyncResult.get()`` returned."""
    started = time.time()
    ended = raw_chain(peer_url).apply_async().get(timeout=600)
    return ended - started, time.time() - ended


class Meter:
    """CPU used so far: the worker's processes, this process (the samplers' threads apart), the
    PostgreSQL backends of the platform's database and of the source's (sampled from ``/proc``:
    a backend that starts and ends between two samples, as a raw chain's connection per run
    does, is missed); and the time the pool processes waited for a CPU while runnable."""

    def __init__(self, worker: Worker) -> None:
        from bench.etl import DatabaseCpu

        self.worker = worker
        platform = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
        self.databases = {
            "platform": DatabaseCpu(platform, every_s=0.25),
            "source": DatabaseCpu(source_url().rsplit("/", 1)[1], every_s=0.25),
        }
        self.scans_s = 0.0  # this thread's CPU reading them

    def read(self) -> dict[str, float]:
        pool = children(self.worker.process.pid)
        running, waiting = (sum(figures) for figures in zip(*map(schedstat_s, pool), strict=True))
        scanning = time.thread_time()
        for db in self.databases.values():  # (now: a phase may be shorter than a sample)
            db.scan_now()
        self.scans_s += time.thread_time() - scanning
        samplers = self.scans_s + sum(db.sampler_cpu_s for db in self.databases.values())
        return {
            "wall": time.monotonic(),
            "worker": self.worker.cpu_s(),
            "starter": time.process_time() - samplers,
            **{f"db_{name}": db.used_s() for name, db in self.databases.items()},
            "pool_running": running,
            "pool_waiting": waiting,
            "pool_count": len(pool),
        }

    def stop(self) -> None:
        for db in self.databases.values():
            db.stop()


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What was spent between two readings; ``pool_blocked``: the pool processes' time neither
    on a CPU nor runnable (waiting for PostgreSQL, Redis, the peer, or for work)."""
    used = {name: after[name] - before[name] for name in before if name != "pool_count"}
    used["pool_blocked"] = (
        used["wall"] * after["pool_count"] - used["pool_running"] - used["pool_waiting"]
    )
    return used


PHASE_FIGURES = (
    "worker", "starter", "db_platform", "db_source", "pool_running", "pool_waiting", "pool_blocked"
)  # fmt: skip


def phase_line(label: str, used: dict[str, float], runs: int) -> str:
    """The CPU and waiting per run of one phase, in ms."""
    figures = ", ".join(f"{name} {used[name] / runs * 1000:.1f}" for name in PHASE_FIGURES)
    return f"  {label}, ms per run: {figures}"


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


@dataclass
class Round:
    """One round's figures, flow and raw chain side by side (seconds, runs/s)."""

    flow_lat: list[float]
    raw_lat: list[float]
    flow_wait: list[float]  # from the run's end until wait_for_run returned
    raw_wait: list[float]  # from the chain's end until AsyncResult.get() returned
    flow_tp: float
    raw_tp: float
    worker_cpu_s: float  # per flow run
    starter_cpu_s: float  # per flow run
    raw_worker_cpu_s: float  # per raw chain run
    raw_starter_cpu_s: float  # per raw chain run
    phases: dict[str, dict[str, float]]  # what each phase spent (``spent``), in all

    def line(self, number: int) -> str:
        return (
            f"round {number}: latency median flow {statistics.median(self.flow_lat) * 1000:.1f} "
            f"ms / raw {statistics.median(self.raw_lat) * 1000:.1f} ms, p95 flow "
            f"{p95(self.flow_lat) * 1000:.1f} / raw {p95(self.raw_lat) * 1000:.1f} ms; "
            f"throughput flow {self.flow_tp:.1f} / raw {self.raw_tp:.1f} runs/s; waiter "
            f"returns after the end: flow {statistics.median(self.flow_wait) * 1000:.1f} / raw "
            f"{statistics.median(self.raw_wait) * 1000:.1f} ms"
        )


def one_round(meter: Meter, peer_url: str, runs: int, concurrent: int) -> Round:
    lat: dict[str, list[float]] = {"flow": [], "raw": []}
    wait: dict[str, list[float]] = {"flow": [], "raw": []}
    phases: dict[str, dict[str, float]] = {}

    def add(phase: str, used: dict[str, float]) -> None:
        into = phases.setdefault(phase, dict.fromkeys(used, 0.0))
        for name, value in used.items():
            into[name] += value

    def measured(kind: str, job: Callable[[], tuple[float, float]]) -> None:
        before = meter.read()
        latency, waited = job()
        add(f"{kind} one at a time", spent(before, meter.read()))
        lat[kind].append(latency)
        wait[kind].append(waited)

    for _ in range(runs):  # interleaved, so both see the same machine
        measured("flow", flow_once)
        measured("raw", lambda: raw_once(peer_url))
    before = meter.read()
    flow_tp = concurrent / flow_runs(concurrent)
    add(f"flow {concurrent} at once", spent(before, meter.read()))
    before = meter.read()
    raw_tp = concurrent / raw_runs(concurrent, peer_url)
    add(f"raw {concurrent} at once", spent(before, meter.read()))
    flow, raw = phases["flow one at a time"], phases["raw one at a time"]
    return Round(
        lat["flow"], lat["raw"], wait["flow"], wait["raw"], flow_tp, raw_tp,
        flow["worker"] / runs, flow["starter"] / runs, raw["worker"] / runs, raw["starter"] / runs,
        phases,
    )  # fmt: skip


def observe() -> Any:
    """Tracing and metrics on for this process and the worker it starts, as a deployment turns
    them on: spans exported over OTLP (http/protobuf, the default protocol;
    ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` for the other) to a local collector of their own, the worker serving
    ``/metrics`` for its pool. Returns the collector."""
    import socket

    from bench.otlp_sink import OtlpSink
    from flowplatform.telemetry import DEFAULT_OTLP_PROTOCOL

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or DEFAULT_OTLP_PROTOCOL
    http = protocol == "http/protobuf"
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
    from bench.common import worker_node_runs

    node_runs = worker_node_runs()
    time.sleep(6)  # the batch span processor exports every 5 s
    return f"observed: {sink.stats()['requests']} span batches exported, {node_runs:.0f} node runs counted"


def main() -> None:
    parser = argparse.ArgumentParser(description="Overhead benchmark: flow vs raw chain")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--observe", action="store_true", help="tracing and metrics on")
    args = parser.parse_args()
    sink = observe() if args.observe else None
    configure()
    if sink is not None:
        from flowplatform import telemetry

        telemetry.setup("cli")  # this process starts the runs: it opens their root spans
    peer = Peer()
    install_flow(peer.url)
    worker = Worker(concurrency=2, include=["bench.rawtasks"]).wait_ready()
    meter = Meter(worker)
    rounds: list[Round] = []
    try:
        flow_runs(2), raw_runs(2, peer.url)  # warm-up: imports, connections
        peer.reset()
        for number in range(1, args.rounds + 1):
            rounds.append(one_round(meter, peer.url, args.runs, args.concurrent))
            print(rounds[-1].line(number), flush=True)
            for phase, used in rounds[-1].phases.items():
                print(phase_line(phase, used, args.concurrent if "once" in phase else args.runs))
        sent = peer.stats()["records"]
        if sink is not None:
            print(observed(sink))
    finally:
        meter.stop()
        worker.stop()
        peer.stop()
        if sink is not None:
            from flowplatform import telemetry

            telemetry.shutdown()  # the last spans of this process, before the sink goes
            sink.stop()
    expected = 2 * args.rounds * (args.runs + args.concurrent) * RECORDS_PER_RUN
    if sent != expected:
        raise SystemExit(f"the peer received {sent} records, expected {expected}")

    def median(figure) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(figure(r) for r in rounds)

    flow_med = median(lambda r: statistics.median(r.flow_lat))
    raw_med = median(lambda r: statistics.median(r.raw_lat))
    flow_p95, raw_p95 = median(lambda r: p95(r.flow_lat)), median(lambda r: p95(r.raw_lat))
    flow_tp, raw_tp = median(lambda r: r.flow_tp), median(lambda r: r.raw_tp)
    print(f"medians of {len(rounds)} rounds ({sent} records delivered, every one):")
    print(
        f"latency, median of {args.runs}: flow {flow_med * 1000:.1f} ms, "
        f"raw chain {raw_med * 1000:.1f} ms"
    )
    print(f"latency p95: flow {flow_p95 * 1000:.1f} ms, raw chain {raw_p95 * 1000:.1f} ms")
    flow_wait = median(lambda r: statistics.median(r.flow_wait))
    flow_wait_p95 = median(lambda r: p95(r.flow_wait))
    raw_wait = median(lambda r: statistics.median(r.raw_wait))
    print(
        f"waiter returns after the end, median: flow (wait_for_run) {flow_wait * 1000:.1f} ms "
        f"(p95 {flow_wait_p95 * 1000:.1f}), raw chain (AsyncResult.get) {raw_wait * 1000:.1f} ms "
        "(goal for the flow: <= 20 ms)"
    )
    print(
        f"throughput, {args.concurrent} at once: flow {flow_tp:.1f} runs/s, "
        f"raw chain {raw_tp:.1f} runs/s"
    )
    print(
        f"CPU per flow run: worker {median(lambda r: r.worker_cpu_s) * 1000:.1f} ms, "
        f"starting process {median(lambda r: r.starter_cpu_s) * 1000:.1f} ms"
    )
    print(
        f"CPU per raw chain run: worker {median(lambda r: r.raw_worker_cpu_s) * 1000:.1f} ms, "
        f"starting process {median(lambda r: r.raw_starter_cpu_s) * 1000:.1f} ms"
    )
    print(f"latency ratio flow/raw: {flow_med / raw_med:.2f} (goal <= 1.5)")
    print(f"latency p95 ratio flow/raw: {flow_p95 / raw_p95:.2f}")
    print(f"throughput ratio flow/raw: {flow_tp / raw_tp:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
