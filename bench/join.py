"""Join benchmark: peak RSS of the worker processes while a flow joins 3,000,000 orders with
1,000,000 customers, beside the same join written by hand.

    .venv/bin/python bench/join.py [--left 3000000] [--right 1000000] [--rounds 3]

The job: every order (id, customer_id, amount, created_at) joined with its customer (id, name,
country, segment: one right record per key), then revenue and orders summed per country.

- *flow*: two ``sql_query`` nodes (defaults) → ``join`` (defaults: inner,
  ``right_max_rows`` 1,000,000) → ``aggregate`` (count, sum per country), run by one ``celery
  worker`` with 2 pool processes;
- *hand-written*: one process, psycopg, the customers in a dict of tuples by id, the orders
  streamed with a server-side cursor and summed per country.

Rounds alternate (hand-written, flow, ...); the medians of wall time are compared. Peak RSS is
each process's VmHWM; the worker's figure is the largest of its parent and pool processes over
all rounds (the goal: under 300 MB). Both must give the same figures per country.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Worker,
    configure,
    median_of,
    own_cpu_s,
    own_figures,
    print_round,
    run_child,
    run_flow_sampled,
    source_url,
)

FETCH = 2000
COUNTRIES = "array['ES','FR','DE','IT','PT','NL','BE','PL']"


def create_tables(left: int, right: int) -> tuple[str, str]:
    """``bench_join_orders_<left>_<right>`` and ``bench_join_customers_<right>`` (made once)."""
    import psycopg

    orders, customers = f"bench_join_orders_{left}_{right}", f"bench_join_customers_{right}"
    with psycopg.connect(source_url(), autocommit=True) as conn:
        if not conn.execute("select to_regclass(%s)", [customers]).fetchone()[0]:
            print(f"creating {customers} ...", flush=True)
            conn.execute(
                f"create table {customers} as select i as id, 'customer ' || i as name, "
                f"({COUNTRIES})[1 + i % 8] as country, "
                f"(array['retail','business','public'])[1 + i % 3] as segment "
                f"from generate_series(1, {right}) as i"
            )
        if not conn.execute("select to_regclass(%s)", [orders]).fetchone()[0]:
            print(f"creating {orders} ...", flush=True)
            conn.execute(
                f"create table {orders} as select i as id, (1 + (i::bigint * 7919) % {right})::int as customer_id, "
                "(i % 100000)::numeric / 100 as amount, "
                "timestamptz '2026-01-01' + (i % 86400) * interval '1 minute' as created_at "
                f"from generate_series(1, {left}) as i"
            )
    return orders, customers


def queries(orders: str, customers: str) -> tuple[str, str]:
    return (
        f"select id, customer_id, amount, created_at from {orders}",
        f"select id, name, country, segment from {customers}",
    )


# --- hand-written ----------------------------------------------------------------------------
def hand_written(orders: str, customers: str, dsn: str) -> dict[str, Any]:
    """The join as one would write it: a dict of customers, the orders streamed through it."""
    import psycopg

    started, cpu_before = time.perf_counter(), own_cpu_s()
    left_query, right_query = queries(orders, customers)
    totals: dict[str, list[Any]] = {}
    with psycopg.connect(dsn) as conn:
        by_id = {row[0]: row[1:] for row in conn.execute(right_query)}
        with conn.cursor(name="orders") as cursor:
            cursor.itersize = FETCH
            cursor.execute(left_query)
            for _id, customer_id, amount, _created in cursor:
                customer = by_id.get(customer_id)
                if customer is not None:
                    figures = totals.setdefault(customer[1], [0, Decimal(0)])
                    figures[0] += 1
                    figures[1] += amount
    result = own_figures(started, cpu_before, sum(f[0] for f in totals.values()))
    result["totals"] = {country: [n, str(total)] for country, (n, total) in totals.items()}
    return result


# --- the flow --------------------------------------------------------------------------------
def install_flow(orders: str, customers: str) -> None:
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection

    connection = Connection.objects.filter(name="warehouse").first() or Connection(name="warehouse")
    connection.set_url(source_url())
    connection.save()
    left_query, right_query = queries(orders, customers)
    apply_flow_file(
        {
            "slug": "bench-join",
            "name": "Join benchmark",
            "nodes": [
                {"key": "orders", "type": "sql_query",
                 "config": {"connection": "warehouse", "query": left_query}},
                {"key": "customers", "type": "sql_query",
                 "config": {"connection": "warehouse", "query": right_query}},
                {"key": "joined", "type": "join",
                 "config": {"on": [{"left": "customer_id", "right": "id"}]}},
                {"key": "per_country", "type": "aggregate",
                 "config": {"group_by": ["country"],
                            "aggregations": [{"op": "count", "as": "orders"},
                                             {"op": "sum", "field": "amount", "as": "revenue"}]}},
            ],
            "edges": [
                {"from": "orders", "to": "joined", "to_port": "left"},
                {"from": "customers", "to": "joined", "to_port": "right"},
                {"from": "joined", "to": "per_country"},
            ],
        }
    )  # fmt: skip


def run_flow(worker: Worker) -> dict[str, Any]:
    from flows.engine.handoff import read_output

    run, figures = run_flow_sampled(worker, "bench-join")
    nodes = {n.node_key: n for n in run.node_runs.all()}
    rows = [r for batch in read_output(nodes["per_country"].output_ref) for r in batch]
    return {
        **figures,
        "join_s": (nodes["joined"].duration_ms or 0) / 1000,
        "records": nodes["joined"].rows_out,
        "totals": {r["country"]: [r["orders"], str(r["revenue"])] for r in rows},
    }


def measure(left: int, right: int, rounds: int) -> dict[str, Any]:
    orders, customers = create_tables(left, right)
    worker = Worker(concurrency=2).wait_ready()
    try:
        install_flow(orders, customers)
        hand, flow = [], []
        for index in range(rounds):
            for label, results, job in (
                ("hand-written", hand, lambda: run_child([__file__, "--hand-written", orders,
                                                         "--customers", customers])),
                ("flow", flow, lambda: run_flow(worker)),
            ):  # fmt: skip
                result = job()
                if result["records"] != left:
                    raise SystemExit(f"{label} joined {result['records']} records, not {left}")
                results.append(result)
                rss = result.get("peak_rss_mb", worker.peak_mb())
                join = f"  (join node {result['join_s']:.2f}s)" if "join_s" in result else ""
                print_round(index, label, result, f"  peak RSS {rss:6.0f} MB{join}")
        # Compared as numbers: the flow's sums are exact (20 decimal places here), where the
        # hand-written job's Decimal context rounds them to 28 significant digits.
        if any(_numbers(f["totals"]) != _numbers(hand[0]["totals"]) for f in flow):
            raise SystemExit("the flow's figures per country differ from the hand-written job's")
        return {
            "left": left,
            "right": right,
            "hand_s": median_of(hand),
            "flow_s": median_of(flow),
            "join_s": median_of(flow, "join_s"),
            "hand_rss_mb": max(r["peak_rss_mb"] for r in hand),
            "worker_rss_mb": worker.peak_mb(),
        }
    finally:
        worker.stop()


def _numbers(totals: dict[str, list[Any]]) -> dict[str, tuple[int, Decimal]]:
    return {country: (n, Decimal(total)) for country, (n, total) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Join benchmark: flow vs hand-written")
    parser.add_argument("--left", type=int, default=3_000_000)
    parser.add_argument("--right", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hand-written", metavar="ORDERS", help=argparse.SUPPRESS)
    parser.add_argument("--customers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_written:
        print(json.dumps(hand_written(args.hand_written, args.customers, source_url())))
        return
    configure()
    print(
        f"join: {args.left:,} orders ⨝ {args.right:,} customers, {args.rounds} rounds, "
        f"2 worker processes, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    result = measure(args.left, args.right, args.rounds)
    print(
        f"hand-written {result['hand_s']:.2f}s (peak RSS {result['hand_rss_mb']:.0f} MB); "
        f"flow {result['flow_s']:.2f}s, join node {result['join_s']:.2f}s (peak RSS of any "
        f"worker process {result['worker_rss_mb']:.0f} MB, goal < 300 MB)"
    )
    print(
        f"ratio flow/hand-written wall time: {result['flow_s'] / result['hand_s']:.2f}; "
        f"worker peak RSS/hand-written peak RSS: "
        f"{result['worker_rss_mb'] / result['hand_rss_mb']:.2f}"
    )
    if result["worker_rss_mb"] >= 300:
        raise SystemExit("a worker process went past 300 MB")


if __name__ == "__main__":
    main()
