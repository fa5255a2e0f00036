"""ETL benchmark: the minimal flow against the same job written by hand, side by side.

    .venv/bin/python bench/etl.py [--rows 300000] [--rounds 3] [--big-rows 3000000]

The job: read every row of an orders table from PostgreSQL, keep the paid ones with a positive
amount (one third), reshape them, and POST them in batches of 500 to a local HTTP peer.

- *default*: ``examples/paid-orders.json`` as users write it, pointed at the table: its source
  config as the example has it (no partition setting), ``http_post`` sending the job's batches
  of 500;
- *tuned*: the same with the expert's knobs on the source: ``batch_size`` 2000,
  ``partition_rows`` 25,000 and ``partition_column`` ``id`` (each partition task reads its own
  range of the table);
- *hand-written*: one process, psycopg with a server-side cursor, a loop over the tuples,
  ``requests`` with a keep-alive session.

Both flows run on one ``celery worker`` with 2 pool processes (this machine has 2 cores); wall
time from ``start_run`` to the run's ``finished_at``. Each round runs the hand-written job,
then the two flows (their order alternating) and the medians are compared, as is the median of
each round's ratio to its own hand-written run (the load of a shared machine changes between
rounds). Peak RSS is each process's VmHWM; the worker's figure
is the largest of its parent and pool processes. Each job's line also shows the CPU its
PostgreSQL server processes used on the source database (``db``: sampled from ``/proc`` every
50 ms, the backends whose title names that database; one that starts and ends between two
samples is missed, and so are the last <= 50 ms of one that ends). ``--big-rows`` then runs all three once more
on a larger table with a fresh worker, to show that the workers' memory stays flat as rows
grow. The ratios are printed last.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    Peer,
    Worker,
    configure,
    median_of,
    own_cpu_s,
    own_figures,
    print_round,
    round_ratio,
    run_child,
    run_flow_sampled,
    source_url,
)
from bench.common import cpu_seconds as process_cpu_s

BATCH = 500
FETCH = 2000
PARTITION_ROWS = 25_000


def create_table(rows: int) -> str:
    """``bench_orders_<rows>``: one third paid, every amount positive (made once, then kept)."""
    import psycopg

    name = f"bench_orders_{rows}"
    with psycopg.connect(source_url(), autocommit=True) as conn:
        if conn.execute("select to_regclass(%s)", [name]).fetchone()[0]:
            return name
        print(f"creating {name} ...", flush=True)
        conn.execute(
            f"create table {name} (id int primary key, customer text, email text,"
            " status text, amount numeric(12,2), created_at timestamptz)"
        )
        conn.execute(
            f"insert into {name} select i, 'Client ' || i || ' ✓ Ünïcödé', 'c' || i || '@example.test',"
            " (array['paid','pending','refunded'])[1 + i %% 3], 1 + (i %% 5000) / 100.0,"
            " timestamptz '2026-01-01 10:00+00' + i * interval '1 second'"
            " from generate_series(1, %s) i",
            [rows],
        )
        conn.execute(f"analyze {name}")
    return name


def query(table: str) -> str:
    return (
        f"select id, customer, email, status, amount, created_at from {table}"
        " where id > %(min_id)s order by id"
    )


class DatabaseCpu:
    """CPU used by the PostgreSQL backends of one database while it runs (a sampler thread
    reading ``/proc``: a backend's title is ``postgres: <user> <database> ...``)."""

    def __init__(self, database: str, every_s: float = 0.05) -> None:
        self.title = f" {database} ".encode()
        self.every_s = every_s
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.sampler_cpu_s = 0.0  # the sampler thread's own CPU (in this process's figure)
        self._stop = threading.Event()
        self._scan(self.first)  # backends already there count from now
        self.last.update(self.first)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _scan(self, into: dict[int, float]) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres: ") and self.title in title:
                into[int(entry.name)] = process_cpu_s(int(entry.name))

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            seen: dict[int, float] = {}
            self._scan(seen)
            self.last.update({pid: cpu for pid, cpu in seen.items() if cpu > 0})
            self.sampler_cpu_s = time.thread_time()

    def scan_now(self) -> None:
        """Read the backends' CPU now (from the calling thread)."""
        seen: dict[int, float] = {}
        self._scan(seen)
        self.last.update({pid: cpu for pid, cpu in seen.items() if cpu > 0})

    def used_s(self) -> float:
        """The CPU seconds used so far (while sampling)."""
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in list(self.last.items()))

    def stop(self) -> float:
        """Stop sampling; the CPU seconds used meanwhile."""
        self._stop.set()
        self._thread.join()
        self._scan(self.last)
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


# --- the hand-written job (run in a process of its own) ----------------------------------------
def hand_written(table: str, url: str, dsn: str) -> dict[str, Any]:
    import psycopg
    import requests

    cpu_before = own_cpu_s()
    started = time.perf_counter()
    sent = 0
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor(name="orders") as cursor,
        requests.Session() as http,
    ):
        cursor.itersize = FETCH
        cursor.execute(query(table), {"min_id": 0})
        pending: list[dict[str, Any]] = []
        while rows := cursor.fetchmany(FETCH):
            for order_id, customer, email, status, amount, created_at in rows:
                if status == "paid" and amount > 0:
                    pending.append(
                        {
                            "order_id": order_id,
                            "customer": {"name": customer, "email": email},
                            "total": float(amount),
                            "paid_at": created_at.isoformat(),
                            "source": "flowplatform",
                        }
                    )
                if len(pending) == BATCH:
                    http.post(f"{url}/ingest", json=pending, timeout=30).raise_for_status()
                    sent += len(pending)
                    pending = []
        if pending:
            http.post(f"{url}/ingest", json=pending, timeout=30).raise_for_status()
            sent += len(pending)
    return own_figures(started, cpu_before, sent)


def run_hand_written(table: str, peer: Peer) -> dict[str, Any]:
    return run_child([__file__, "--hand-written", table, "--peer", peer.url])


# --- the flows -------------------------------------------------------------------------------
#: What each variant sets on the source, over the example's config.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "tuned": {"batch_size": FETCH, "partition_rows": PARTITION_ROWS, "partition_column": "id"},
}


def install_flows(table: str, peer: Peer, partition_rows: int = PARTITION_ROWS) -> None:
    """``bench-etl-default`` and ``bench-etl-tuned`` (see the module docstring)."""
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection

    for name, url in (("warehouse", source_url()), ("crm", peer.url)):
        connection = Connection.objects.filter(name=name).first() or Connection(name=name)
        connection.set_url(url)
        connection.set_headers({})
        connection.save()
    example = json.loads((ROOT / "examples" / "paid-orders.json").read_text())
    for variant, knobs in VARIANTS.items():
        flow = copy.deepcopy(example)
        flow["slug"] = f"bench-etl-{variant}"
        flow["nodes"][0]["config"].update(query=query(table), **knobs)
        if "partition_rows" in knobs:
            flow["nodes"][0]["config"]["partition_rows"] = partition_rows
        # The job: POST batches of 500, as the hand-written one does.
        flow["nodes"][3]["config"].update(batch_size=BATCH, timeout_s=30)
        apply_flow_file(flow)


def run_flow(worker: Worker, variant: str, min_id: int = 0) -> dict[str, Any]:
    run, figures = run_flow_sampled(worker, f"bench-etl-{variant}", {"min_id": min_id})
    nodes = {n.node_key: n for n in run.node_runs.all()}
    return {
        **figures,
        "records": nodes["shape"].rows_out,
        "partitions": partitions(nodes["orders"].output_ref),
    }


def partitions(output_ref: str) -> int:
    """How many partitions an output has (1: stored whole)."""
    from flows.engine.handoff import read_manifest

    return len(read_manifest(output_ref)) if output_ref.endswith(".partitions.json") else 1


def measure(rows: int, rounds: int, partition_rows: int = PARTITION_ROWS) -> dict[str, Any]:
    table = create_table(rows)
    peer = Peer()
    worker = Worker(concurrency=2).wait_ready()
    try:
        install_flows(table, peer, partition_rows)
        for variant in VARIANTS:  # warm-up: imports and connections in the pool
            run_flow(worker, variant, min_id=rows - 2000)
        results: dict[str, list[dict[str, Any]]] = {"hand-written": [], **{v: [] for v in VARIANTS}}
        jobs = {"hand-written": lambda: run_hand_written(table, peer)}
        jobs |= {variant: (lambda v=variant: run_flow(worker, v)) for variant in VARIANTS}
        for index in range(rounds):
            # The hand-written job first, then the flows, in turn first (no variant always
            # runs right after another).
            flows = (
                list(VARIANTS)[index % len(VARIANTS) :] + list(VARIANTS)[: index % len(VARIANTS)]
            )
            for label in ["hand-written", *flows]:
                job = jobs[label]
                peer.reset()
                database = DatabaseCpu(source_url().rsplit("/", 1)[1])
                result = job()
                result["db_cpu_s"] = database.stop()
                delivered = peer.stats()["records"]
                if delivered != rows // 3 or result["records"] != rows // 3:
                    raise SystemExit(f"{label} delivered {delivered} records, not {rows // 3}")
                results[label].append(result)
                split = f" {result['db_cpu_s']:6.2f}s db"
                if "partitions" in result:
                    split += f" {result['partitions']:4} partitions"
                print_round(index, label, result, split)
        return {
            "rows": rows,
            # Each round's flow against the hand-written job just before it (the same load).
            "round_ratios": {
                variant: round_ratio(results[variant], results["hand-written"])
                for variant in VARIANTS
            },
            "wall_s": {k: median_of(v) for k, v in results.items()},
            "cpu_s": {k: median_of(v, "cpu_s") for k, v in results.items()},
            "db_cpu_s": {k: median_of(v, "db_cpu_s") for k, v in results.items()},
            "hand_rss_mb": max(r["peak_rss_mb"] for r in results["hand-written"]),
            "worker_rss_mb": worker.peak_mb(),
        }
    finally:
        worker.stop()
        peer.stop()


def report(result: dict[str, Any]) -> None:
    wall, cpu, db_cpu = result["wall_s"], result["cpu_s"], result["db_cpu_s"]
    print(f"{result['rows']:,} rows, medians:")
    for label in wall:
        print(
            f"  {label:<12} {wall[label]:6.2f}s wall {cpu[label]:6.2f}s CPU"
            f" {db_cpu[label]:6.2f}s source database CPU"
        )
    print(
        f"  peak RSS: hand-written {result['hand_rss_mb']:.0f} MB, "
        f"any worker process {result['worker_rss_mb']:.0f} MB"
    )


def ratios(result: dict[str, Any]) -> dict[str, float]:
    wall = result["wall_s"]
    return {variant: wall[variant] / wall["hand-written"] for variant in VARIANTS}


def main() -> None:
    parser = argparse.ArgumentParser(description="ETL benchmark: flow vs hand-written")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-rows", type=int, default=0, help="also run once at this size")
    parser.add_argument("--partition-rows", type=int, default=PARTITION_ROWS)
    parser.add_argument("--hand-written", metavar="TABLE", help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_written:
        dsn = source_url()
        print(json.dumps(hand_written(args.hand_written, args.peer, dsn)))
        return
    configure()
    print(
        f"ETL: {args.rows:,} rows, {args.rounds} rounds, 2 worker processes, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()}"
    )
    main_result = measure(args.rows, args.rounds, args.partition_rows)
    report(main_result)
    big_result = None
    if args.big_rows:
        print(f"ETL: {args.big_rows:,} rows, 1 round, fresh worker")
        big_result = measure(args.big_rows, 1, args.partition_rows)
        report(big_result)
    goals = {"default": 1.0, "tuned": 0.8}
    for variant, ratio in ratios(main_result).items():
        print(
            f"ratio flow/hand-written wall time at {args.rows:,} rows, {variant}: "
            f"{ratio:.2f} (median of rounds: {main_result['round_ratios'][variant]:.2f}; "
            f"goal <= {goals[variant]})"
        )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(f"peak RSS of any worker process: {main_result['worker_rss_mb']:.0f} MB (goal <= 200)")
    if big_result:
        for variant, ratio in ratios(big_result).items():
            print(
                f"ratio flow/hand-written wall time at {args.big_rows:,} rows, {variant}: {ratio:.2f}"
            )
        print(
            f"ratio worker peak RSS {args.big_rows:,} / {args.rows:,} rows: "
            f"{big_result['worker_rss_mb'] / main_result['worker_rss_mb']:.2f} (goal <= 1.2)"
        )


if __name__ == "__main__":
    main()
