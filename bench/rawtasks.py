"""The raw Celery tasks of ``bench/overhead.py``: the trivial flow's job, written as a chain.

Loaded into the benchmark worker with ``--include bench.rawtasks``.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from celery import shared_task
from psycopg.rows import dict_row

QUERY = "select n, 'item ' || n as name from generate_series(1, 10) n"


@shared_task(name="bench.raw_query")
def raw_query(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cursor:
        conn.read_only = True
        return cursor.execute(QUERY).fetchall()


@shared_task(name="bench.raw_filter")
def raw_filter(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["n"] > 2]


@shared_task(name="bench.raw_map")
def raw_map(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"value": row["n"], "label": row["name"]} for row in rows]


@shared_task(name="bench.raw_tag")
def raw_tag(rows: list[dict[str, Any]]) -> float:
    _tagged = [{**row, "source": "bench"} for row in rows]
    return time.time()  # when the chain's work ended, on the worker's clock
