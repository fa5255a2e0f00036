"""The cut of ``bench/etl.py``'s tuned source: its 12 ranges counted by the ``row_number()``
scan against the same ranges from the planner's statistics (decision 0041).

    .venv/bin/python bench/etl_cut.py [--rows 300000] [--times 20]

Plans the ranges of ``bench_orders_<rows>`` (made by ``bench/etl.py``) both ways, alternating,
from this one process on its kept source connection: the wall time, this process's CPU and
the CPU of the source database's server processes (``bench.etl.DatabaseCpu``) of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import configure, own_cpu_s, source_url
from bench.etl import PARTITION_ROWS, DatabaseCpu, create_table, query


def main() -> None:
    parser = argparse.ArgumentParser(description="the tuned source's cut, both ways")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--times", type=int, default=20)
    args = parser.parse_args()
    configure()
    from nodes.builtin.sql_backends import postgres_slice_bounds
    from nodes.builtin.sql_query_auto import key_slices

    url, sql, params = source_url(), query(create_table(args.rows)), {"min_id": 0}

    def counted() -> list[Any]:
        return list(
            postgres_slice_bounds(
                url,
                sql,
                params,
                column="id",
                rows_per_slice=PARTITION_ROWS,
                timeout_s=300,
                is_cancelled=lambda: False,
            )
        )

    def from_statistics() -> list[Any]:
        return key_slices(url, False, sql, params, PARTITION_ROWS, 300, "id") or []

    ways: dict[str, Callable[[], list[Any]]] = {
        "row_number() scan": counted,
        "statistics": from_statistics,
    }
    for name, way in ways.items():
        print(f"{name}: {way()}")
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ways}
    database = source_url().rsplit("/", 1)[1]
    for _ in range(args.times):
        for name, way in ways.items():
            server = DatabaseCpu(database, every_s=0.01)
            cpu, started = own_cpu_s(), time.perf_counter()
            way()
            wall, cpu = time.perf_counter() - started, own_cpu_s() - cpu
            figures[name].append((wall, cpu, server.stop()))
    print(f"{args.rows:,} rows in ranges of {PARTITION_ROWS:,}, {args.times} times:")
    for name, runs in figures.items():
        walls = [w for w, _, _ in runs]
        print(
            f"  {name:<18} wall median {statistics.median(walls) * 1000:6.1f} ms"
            f" (min {min(walls) * 1000:.1f}), this process's CPU median"
            f" {statistics.median(c for _, c, _ in runs) * 1000:5.1f} ms, server CPU"
            f" {sum(s for _, _, s in runs) / len(runs) * 1000:5.1f} ms per cut"
        )


if __name__ == "__main__":
    main()
