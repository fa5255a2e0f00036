"""``sql_write`` benchmark: copy a table through a flow against a hand-written COPY, side by side.

    .venv/bin/python bench/sql_write.py [--rows 1000000] [--rounds 3]

The job: read every row of an orders table (``bench_orders_<rows>``, as in ``bench/etl.py``)
from PostgreSQL and write it into another table of the same database.

- *flow*: ``sql_query`` -> ``sql_write`` (``insert``, default batch size: ``COPY`` per batch,
  each batch committed with its write mark), the source with ``partition_rows`` (100,000) and
  ``partition_column`` ``id``: each partition task reads its range of ids and writes it, in
  parallel on one ``celery worker`` with 2 pool processes (this machine has 2 cores);
- *hand-written*: one process, psycopg with a server-side cursor and ``COPY … FROM STDIN``
  (``write_row`` per row) in one transaction.

The target table is emptied (outside the timing) before every round. Rounds alternate
(hand-written, flow, ...) and the medians are compared. Peak RSS is each process's VmHWM; the
worker's figure is the largest of its parent and pool processes. On a shared machine the load
changes between rounds: the median of the per-round ratios (each pair run back to back) and the
CPU ratio are printed too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    Worker,
    configure,
    count_rows,
    median_of,
    own_cpu_s,
    own_figures,
    print_round,
    round_ratio,
    run_child,
    run_flow_sampled,
    source_url,
)
from bench.etl import create_table

FETCH = 5000
PARTITION_ROWS = 100_000
COLUMNS = "id, customer, email, status, amount, created_at"


def target_table(rows: int) -> str:
    """``bench_copy_<rows>``: the orders' columns, no rows (emptied before each round)."""
    import psycopg

    name = f"bench_copy_{rows}"
    with psycopg.connect(source_url(), autocommit=True) as conn:
        conn.execute(
            f"create table if not exists {name} (id int primary key, customer text,"
            " email text, status text, amount numeric(12,2), created_at timestamptz)"
        )
        conn.execute(f"truncate {name}")
    return name


# --- the hand-written job (run in a process of its own) ----------------------------------------
def hand_written(source: str, target: str, dsn: str) -> dict[str, Any]:
    import psycopg

    cpu_before = own_cpu_s()
    started = time.perf_counter()
    copied = 0
    with psycopg.connect(dsn) as reader, psycopg.connect(dsn) as writer:
        with (
            reader.cursor(name="orders") as cursor,
            writer.cursor() as out,
            out.copy(f"copy {target} ({COLUMNS}) from stdin") as copy,
        ):
            cursor.itersize = FETCH
            cursor.execute(f"select {COLUMNS} from {source} order by id")
            while rows := cursor.fetchmany(FETCH):
                for row in rows:
                    copy.write_row(row)
                copied += len(rows)
        writer.commit()
    return own_figures(started, cpu_before, copied)


def run_hand_written(source: str, target: str) -> dict[str, Any]:
    return run_child([__file__, "--hand-written", source, "--target", target])


# --- the flow --------------------------------------------------------------------------------
def install_flow(source: str, target: str, partition_rows: int) -> None:
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection

    for name in ("warehouse", "reporting"):
        connection = Connection.objects.filter(name=name).first() or Connection(name=name)
        connection.set_url(source_url())
        connection.set_headers({})
        connection.save()
    flow = json.loads((ROOT / "examples" / "orders-to-reporting.json").read_text())
    flow["slug"] = "bench-sql-write"
    flow["nodes"][0]["config"].update(
        query=f"select {COLUMNS} from {source} order by id",
        batch_size=FETCH,
        partition_rows=partition_rows,
        partition_column="id",
    )
    flow["nodes"][1]["config"] = {"connection": "reporting", "table": target, "mode": "insert"}
    apply_flow_file(flow)


def run_flow(worker: Worker) -> dict[str, Any]:
    return run_flow_sampled(worker, "bench-sql-write")[1]


def measure(rows: int, rounds: int, partition_rows: int) -> dict[str, Any]:
    source = create_table(rows)
    worker = Worker(concurrency=2).wait_ready()
    try:
        target = target_table(rows)
        install_flow(source, target, partition_rows)
        run_flow(worker)  # warm-up: imports, connections in the pool, the write-mark table
        hand, flow = [], []
        for index in range(rounds):
            for label, results, job in (
                ("hand-written", hand, lambda: run_hand_written(source, target)),
                ("flow", flow, lambda: run_flow(worker)),
            ):
                target_table(rows)  # empty, outside the timing
                result = job()
                if (copied := count_rows(target)) != rows:
                    raise SystemExit(f"{label} wrote {copied} rows, not {rows}")
                results.append(result)
                print_round(index, label, result)
        return {
            "rows": rows,
            "hand_s": median_of(hand),
            "flow_s": median_of(flow),
            "round_ratio": round_ratio(flow, hand),
            "cpu_ratio": round_ratio(flow, hand, "cpu_s"),
            "hand_rss_mb": max(r["peak_rss_mb"] for r in hand),
            "worker_rss_mb": worker.peak_mb(),
        }
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="sql_write benchmark: flow vs hand-written COPY")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partition-rows", type=int, default=PARTITION_ROWS)
    parser.add_argument("--hand-written", metavar="SOURCE", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_written:
        dsn = source_url()
        print(json.dumps(hand_written(args.hand_written, args.target, dsn)))
        return
    configure()
    print(f"sql_write: {args.rows:,} rows, {args.rounds} rounds, 2 worker processes")
    result = measure(args.rows, args.rounds, args.partition_rows)
    print(
        f"{result['rows']:,} rows: hand-written COPY {result['hand_s']:.2f}s "
        f"(peak RSS {result['hand_rss_mb']:.0f} MB), flow {result['flow_s']:.2f}s "
        f"(peak RSS of any worker process {result['worker_rss_mb']:.0f} MB)"
    )
    print(
        f"ratio flow/hand-written wall time: {result['flow_s'] / result['hand_s']:.2f}"
        " (goal <= 1.2)"
    )
    print(
        f"median of the per-round ratios (each pair run back to back): {result['round_ratio']:.2f};"
        f" CPU (worker processes / hand-written process): {result['cpu_ratio']:.2f}"
    )
    print(f"peak RSS of any worker process: {result['worker_rss_mb']:.0f} MB (goal <= 200)")


if __name__ == "__main__":
    main()
