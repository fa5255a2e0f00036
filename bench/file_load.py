"""Files into PostgreSQL: ``file_read`` -> ``sql_write`` on a worker against a hand-written
``csv`` + ``COPY`` script, side by side.

    .venv/bin/python bench/file_load.py [--rows 1000000] [--files 4] [--rounds 3]

The job: load ``--rows`` orders spread over ``--files`` gzipped CSV files (the files of
``bench/file_read.py``) into a PostgreSQL table (``bench_files_<rows>``, emptied outside the
timing before every round).

- *flow*: ``file_read`` (declared columns: integer, text, text, decimal, aware datetime; one
  partition per file) -> ``sql_write`` (``insert``: ``COPY`` per batch, each batch committed with
  its write mark), each partition task reading one file and writing it, in parallel on one
  ``celery worker`` with 2 pool processes;
- *hand-written*: one process, ``gzip.open`` + ``csv.reader`` and ``COPY … FROM STDIN``
  (``write_row`` per row, the text as read: PostgreSQL parses it) in one transaction.

Rounds alternate and the medians are compared; the median of the per-round ratios (each pair
run back to back) is printed too, as in ``bench/sql_write.py``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
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
from bench.file_read import COLUMNS, make_files

NAMES = ", ".join(COLUMNS)


def files_dir(rows: int) -> Path:
    return Path(tempfile.gettempdir()) / f"flowplatform-bench-files-{rows}"


def target_table(rows: int) -> str:
    import psycopg

    name = f"bench_files_{rows}"
    with psycopg.connect(source_url(), autocommit=True) as conn:
        conn.execute(
            f"create table if not exists {name} (id int primary key, customer text,"
            " status text, amount numeric(12,2), created_at timestamptz)"
        )
        conn.execute(f"truncate {name}")
    return name


# --- the hand-written job (run in a process of its own) ----------------------------------------
def hand_written(directory: Path, target: str, dsn: str) -> dict[str, Any]:
    import psycopg

    cpu_before = own_cpu_s()
    started = time.perf_counter()
    loaded = 0
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cursor,
        cursor.copy(f"copy {target} ({NAMES}) from stdin") as copy,
    ):
        for path in sorted(directory.glob("orders-*.csv.gz")):
            with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                next(reader)
                for row in reader:
                    copy.write_row(row)
                    loaded += 1
    return own_figures(started, cpu_before, loaded)


def run_hand_written(directory: Path, target: str) -> dict[str, Any]:
    return run_child([__file__, "--hand-written", str(directory), "--target", target])


# --- the flow --------------------------------------------------------------------------------
def install_flow(directory: Path, target: str, typed: bool, tuned: bool) -> None:
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection

    for name, url in (("bench-inbox", f"file://{directory}"), ("bench-db", source_url())):
        connection = Connection.objects.filter(name=name).first() or Connection(name=name)
        connection.set_url(url)
        connection.set_headers({})
        connection.save()
    # As a user writes it: the connection, the files, the columns; every other setting default.
    read: dict[str, Any] = {"connection": "bench-inbox", "path": "orders-*.csv.gz"}
    if typed:
        read["columns"] = COLUMNS
    if tuned:  # the settings that partitioned the load per file before it was the default
        read |= {"batch_size": 5000, "partition_rows": 100_000, "partition_per_file": True}
    load = {"connection": "bench-db", "table": target, "mode": "insert"}
    apply_flow_file(
        {
            "slug": "bench-file-load",
            "name": "Bench: files into PostgreSQL",
            "nodes": [
                {"key": "files", "type": "file_read", "config": read},
                {"key": "load", "type": "sql_write", "config": load},
            ],
            "edges": [{"from": "files", "to": "load"}],
        }
    )


def run_flow(worker: Worker) -> dict[str, Any]:
    return run_flow_sampled(worker, "bench-file-load")[1]


def measure(rows: int, files: int, rounds: int, typed: bool, tuned: bool) -> dict[str, Any]:
    directory = files_dir(rows)
    directory.mkdir(exist_ok=True)
    make_files(directory, rows, files)
    worker = Worker(concurrency=2).wait_ready()
    try:
        target = target_table(rows)
        install_flow(directory, target, typed, tuned)
        run_flow(worker)  # warm-up: imports, connections in the pool, the write-mark table
        hand, flow = [], []
        for index in range(rounds):
            for label, results, job in (
                ("hand-written", hand, lambda: run_hand_written(directory, target)),
                ("flow", flow, lambda: run_flow(worker)),
            ):
                target_table(rows)  # empty, outside the timing
                result = job()
                if (loaded := count_rows(target)) != rows:
                    raise SystemExit(f"{label} loaded {loaded} rows, not {rows}")
                results.append(result)
                print_round(index, label, result)
        return {
            "rows": rows,
            "hand_s": median_of(hand),
            "flow_s": median_of(flow),
            "round_ratio": round_ratio(flow, hand),
            "cpu_ratio": round_ratio(flow, hand, "cpu_s"),
            "ranges": {
                f"{label} {kind}": (
                    median_of(results, kind),
                    min(r[kind] for r in results),
                    max(r[kind] for r in results),
                )
                for label, results in (("hand-written", hand), ("flow", flow))
                for kind in ("wall_s", "cpu_s")
            },
            "hand_rss_mb": max(r["peak_rss_mb"] for r in hand),
            "worker_rss_mb": worker.peak_mb(),
        }
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="files into PostgreSQL: flow vs csv + COPY")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--text",
        action="store_true",
        help="file_read without declared columns: values stay text, PostgreSQL parses them",
    )
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="file_read with batch_size 5000, partition_rows and partition_per_file set",
    )
    parser.add_argument("--hand-written", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_written:
        dsn = source_url()
        print(json.dumps(hand_written(Path(args.hand_written), args.target, dsn)))
        return
    # The worker (started below) inherits the file root with the environment.
    os.environ["FLOWPLATFORM_FILE_ROOTS"] = str(files_dir(args.rows))
    configure()
    values = "text values" if args.text else "declared columns"
    config = "tuned settings" if args.tuned else "default settings"
    print(f"file_read ({values}, {config}) -> sql_write: {args.rows:,} rows, {args.files} files")
    result = measure(args.rows, args.files, args.rounds, typed=not args.text, tuned=args.tuned)
    print(
        f"{result['rows']:,} rows: hand-written csv + COPY {result['hand_s']:.2f}s "
        f"(peak RSS {result['hand_rss_mb']:.0f} MB), flow {result['flow_s']:.2f}s "
        f"(peak RSS of any worker process {result['worker_rss_mb']:.0f} MB)"
    )
    for what, (median, low, high) in result["ranges"].items():
        print(f"  {what:<20} median {median:6.2f}s  range {low:6.2f}-{high:6.2f}s")
    print(f"ratio flow/hand-written wall time: {result['flow_s'] / result['hand_s']:.2f}")
    print(
        f"median of the per-round ratios: {result['round_ratio']:.2f}; "
        f"CPU (worker processes / hand-written process): {result['cpu_ratio']:.2f}"
    )


if __name__ == "__main__":
    main()
