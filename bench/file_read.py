"""file_read benchmark: the node reading CSV.gz files against a hand-written ``csv`` loop.

    .venv/bin/python bench/file_read.py [--rows 1000000] [--files 4] [--rounds 3]

The job: read ``--rows`` orders spread over ``--files`` gzipped CSV files and turn every row
into typed values (id integer, customer text, status text, amount decimal, created_at aware
datetime), in batches of 1,000, handed to a consumer that only counts them.

- *file_read*: ``FileReadNode.execute`` with those ``columns`` on a ``file://`` connection;
- *hand-written*: ``gzip.open`` + ``csv.reader``, one tuple per row built with ``int``,
  ``Decimal`` and ``datetime.fromisoformat``, batches of 1,000.

Each side runs in a fresh process (so each has its own peak RSS); rounds alternate and the
medians are compared. Reading into a database (``sql_write``) is not part of this benchmark.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import run_child  # noqa: E402

BATCH = 1000
COLUMNS = {
    "id": "integer",
    "customer": "string",
    "status": "string",
    "amount": "decimal",
    "created_at": "datetime",
}


def make_files(directory: Path, rows: int, files: int) -> None:
    """``orders-N.csv.gz`` under ``directory`` (made once per size, then kept)."""
    marker = directory / f".complete-{rows}-{files}"
    if marker.exists():
        return
    per_file = rows // files
    for index in range(files):
        start = index * per_file
        count = per_file if index < files - 1 else rows - start
        with gzip.open(
            directory / f"orders-{index}.csv.gz", "wt", newline="", compresslevel=1
        ) as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for i in range(start, start + count):
                writer.writerow(
                    [i, f"Client {i} ✓ Ünïcödé", ("paid", "pending", "refunded")[i % 3],
                     f"{1 + (i % 5000) / 100:.2f}", f"2026-01-01T10:{i % 60:02d}:{i % 59:02d}+00:00"]
                )  # fmt: skip
    marker.touch()


def prepare_node(directory: Path) -> Callable[[], int]:
    """The node and its context, built before the clock starts (a worker has them loaded)."""
    from django.conf import settings

    settings.configure(FLOWPLATFORM_FILE_ROOTS=[str(directory)])
    sys.path.insert(0, str(ROOT))
    from nodes.builtin.file_read import FileReadNode
    from nodes.sdk import ConnectionInfo, ExecutionContext

    node = FileReadNode(
        {"connection": "inbox", "path": "orders-*.csv.gz", "columns": COLUMNS, "batch_size": BATCH}
    )
    context = ExecutionContext(
        connection_lookup=lambda name: ConnectionInfo(name, f"file://{directory}")
    )
    return lambda: sum(len(batch) for batch in node.execute(context, {}))


def run_hand_written(directory: Path) -> int:
    total = 0
    for path in sorted(directory.glob("orders-*.csv.gz")):
        with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            next(reader)
            batch = []
            for row in reader:
                batch.append(
                    (int(row[0]), row[1], row[2], Decimal(row[3]), datetime.fromisoformat(row[4]))
                )
                if len(batch) >= BATCH:
                    total += len(batch)
                    batch = []
            total += len(batch)
    return total


def child(side: str, directory: Path) -> None:
    job = prepare_node(directory) if side == "file_read" else partial(run_hand_written, directory)
    started = time.perf_counter()
    rows = job()
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": elapsed, "peak_mb": peak_mb}))


def measure(side: str, directory: Path) -> dict[str, float]:
    return run_child([__file__, "--child", side, "--dir", str(directory)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["file_read", "hand-written"])
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dir)
        return
    directory = Path(tempfile.gettempdir()) / f"flowplatform-bench-files-{args.rows}"
    directory.mkdir(exist_ok=True)
    make_files(directory, args.rows, args.files)
    results: dict[str, list[dict[str, float]]] = {"hand-written": [], "file_read": []}
    for round_ in range(args.rounds):
        for side in results:
            result = measure(side, directory)
            assert result["rows"] == args.rows, result
            results[side].append(result)
            print(f"round {round_ + 1} {side:>12}: {result['seconds']:.2f} s, "
                  f"peak RSS {result['peak_mb']:.0f} MB", flush=True)  # fmt: skip
    median = {side: statistics.median(r["seconds"] for r in runs) for side, runs in results.items()}
    for side, seconds in median.items():
        peak = max(r["peak_mb"] for r in results[side])
        print(f"{side:>12}: median {seconds:.2f} s ({args.rows / seconds:,.0f} rows/s), "
              f"peak RSS {peak:.0f} MB")  # fmt: skip
    print(f"ratio file_read / hand-written: {median['file_read'] / median['hand-written']:.2f}")


if __name__ == "__main__":
    main()
