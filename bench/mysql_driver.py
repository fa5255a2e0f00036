"""MariaDB/MySQL drivers compared: rows per second streamed through an unbuffered cursor.

    .venv/bin/python bench/mysql_driver.py [--rows 200000] [--batch 5000] [--repeat 3]

Reads a table of ``--rows`` rows (int, DECIMAL, DATETIME, VARCHAR, JSON, DATE) from the
MariaDB at ``--url`` (default ``mysql://root@127.0.0.1:3306``; the table is made in a
database of its own, ``fp_bench_mysql``, and dropped afterwards), once per driver and repeat,
each through its server-side cursor (``SSCursor``) in batches of ``--batch`` rows: the way
``sql_query`` reads. Prints the best of the repeats per driver, the peak RSS growth of the
read and the ratio against PyMySQL (the baseline: pure Python, no system library needed).
PyMySQL is measured when it is installed (it is not a dependency: ``pip install PyMySQL``);
values are compared across drivers before timing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import MySQLdb
import MySQLdb.cursors

DATABASE = "fp_bench_mysql"


def connect_args(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
    }


def admin(url: str) -> Any:
    args = connect_args(url)
    conn = MySQLdb.connect(
        host=args["host"], port=args["port"], user=args["user"], password=args["password"]
    )
    conn.autocommit(True)
    return conn


def prepare(url: str, rows: int) -> None:
    conn = admin(url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        cur.execute(f"USE {DATABASE}")
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s"
                    " AND table_name = 'orders'", [DATABASE])  # fmt: skip
        if cur.fetchone()[0]:
            cur.execute("SELECT COUNT(*) FROM orders")
            if cur.fetchone()[0] == rows:
                conn.close()
                return
            cur.execute("DROP TABLE orders")
        cur.execute(
            "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(100), amount DECIMAL(12,2),"
            " created_at DATETIME(6), day DATE, payload JSON)"
        )
        # A recursive CTE makes the rows on the server: no client loop to wait for.
        try:  # MariaDB, then MySQL
            cur.execute("SET SESSION max_recursive_iterations = %s", [rows + 1])
        except MySQLdb.OperationalError:
            cur.execute("SET SESSION cte_max_recursion_depth = %s", [rows + 1])
        cur.execute(
            "INSERT INTO orders WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
            " WHERE i < %s) SELECT i, CONCAT('Client ', i, ' Zürich'), (i %% 5000) / 100,"
            " TIMESTAMPADD(SECOND, i, '2026-01-01 10:00:00.123456'),"
            " DATE_ADD('2026-01-01', INTERVAL i %% 365 DAY),"
            " JSON_OBJECT('tier', IF(i %% 3 = 0, 'gold', 'basic'), 'n', i) FROM n",
            [rows],
        )
    conn.close()


def drop(url: str) -> None:
    conn = admin(url)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    conn.close()


def read_pymysql(url: str, batch: int) -> tuple[int, Any]:
    import pymysql
    import pymysql.cursors

    conn = pymysql.connect(
        **connect_args(url),
        database=DATABASE,
        charset="utf8mb4",
        cursorclass=pymysql.cursors.SSCursor,
    )
    return _read(conn, batch)


def read_mysqlclient(url: str, batch: int) -> tuple[int, Any]:
    args = connect_args(url)
    conn = MySQLdb.connect(
        host=args["host"], port=args["port"], user=args["user"], password=args["password"],
        database=DATABASE, charset="utf8mb4", cursorclass=MySQLdb.cursors.SSCursor,
    )  # fmt: skip
    return _read(conn, batch)


def _read(conn: Any, batch: int) -> tuple[int, Any]:
    count, sample = 0, None
    try:
        cur = conn.cursor()
        cur.execute("SELECT id, customer, amount, created_at, day, payload FROM orders ORDER BY id")
        while rows := cur.fetchmany(batch):
            if sample is None:
                sample = tuple(rows[0])
            count += len(rows)
        cur.close()
    finally:
        conn.close()
    return count, sample


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    prepare(args.url, args.rows)
    drivers: dict[str, Callable[[str, int], tuple[int, Any]]] = {}
    try:
        import pymysql  # noqa: F401

        drivers["PyMySQL"] = read_pymysql
    except ImportError:
        print("PyMySQL is not installed (pip install PyMySQL): no baseline", file=sys.stderr)
    drivers["mysqlclient"] = read_mysqlclient

    samples = {name: read(args.url, 1)[1] for name, read in drivers.items()}
    first = next(iter(samples.values()))
    for name, sample in samples.items():
        if sample != first:
            raise SystemExit(f"{name} read {sample!r}, not {first!r}")

    best: dict[str, float] = {}
    rss: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, read in drivers.items():
            before = peak_rss_mb()
            started = time.perf_counter()
            count, _sample = read(args.url, args.batch)
            took = time.perf_counter() - started
            if count != args.rows:
                raise SystemExit(f"{name} read {count} rows, not {args.rows}")
            best[name] = min(best.get(name, took), took)
            rss[name] = max(rss.get(name, 0.0), peak_rss_mb() - before)
    base = best.get("PyMySQL", best["mysqlclient"])
    print(f"{args.rows:,} rows, batches of {args.batch:,}, best of {args.repeat}")
    for name, took in best.items():
        print(
            f"  {name:<12} {took:6.2f} s  {args.rows / took:>9,.0f} rows/s"
            f"  peak RSS +{rss[name]:5.1f} MB  speed x{base / took:.2f} vs PyMySQL"
        )
    if not args.keep:
        drop(args.url)


if __name__ == "__main__":
    main()
