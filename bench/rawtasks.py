"""The raw Celery tasks of ``bench/overhead.py`` and ``bench/scale.py``: the minimal flow's job,
written by hand as a 4-task chain (rows travel in the messages, nothing is recorded).

Loaded into the benchmark worker with ``--include bench.rawtasks``.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import requests
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
    return [{"order_id": row["n"], "label": row["name"], "source": "bench"} for row in rows]


@shared_task(name="bench.raw_post")
def raw_post(rows: list[dict[str, Any]], url: str) -> float:
    """One POST per record, as ``http_post`` does by default (one session per task)."""
    with requests.Session() as session:
        for row in rows:
            session.post(url, json=row, timeout=10).raise_for_status()
    return time.time()  # when the chain's work ended, on the worker's clock
