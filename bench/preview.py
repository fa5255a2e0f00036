"""Data preview: the sample a preview reads with ``LIMIT`` pushed down into the query, against
the same preview reading the query's first rows without it (the node's plain ``execute``,
stopped after ``limit`` records) — side by side, on the same table.

    .venv/bin/python bench/preview.py [--rows 2000000] [--limit 50] [--repeat 5]

The query sorts its rows (``order by`` a computed value): without a limit PostgreSQL must sort
every row before the first comes out; with one it keeps the top ``limit`` (a top-N heap sort).
The last line gives the ratio of the median times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import configure, source_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure()

    from flows import preview
    from nodes.builtin.sql_query import SqlQueryNode
    from nodes.models import Connection
    from nodes.sdk import ExecutionContext
    from nodes.sdk.node import AnyBatch, RecordStream

    connection = Connection.objects.filter(name="bench-preview").first() or Connection(
        name="bench-preview"
    )
    connection.set_url(source_url())
    connection.save()

    class NoPushDown(SqlQueryNode):
        """The same node, previewed by its plain execute (the runner stops at the limit)."""

        type = "bench_sql_no_pushdown"

        def preview(
            self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
        ) -> Iterator[AnyBatch]:
            return self.execute(context, inputs)

    query = (
        f"select g as id, md5(g::text) as digest from generate_series(1, {args.rows}) as g "
        "order by digest"
    )
    config = {"connection": "bench-preview", "query": query, "statement_timeout_s": 600}

    def plan_of(node_cls: Any) -> preview.Plan:
        node = node_cls(config)
        return preview.Plan(
            "src", ["src"], {"src": node}, {}, {"src": {}}, {"src": node.output_schema({})}
        )

    def timed(node_cls: Any) -> float:
        the_plan = plan_of(node_cls)
        started = time.perf_counter()
        answer = preview.run(the_plan, limit=args.limit, timeout_s=600)
        took = time.perf_counter() - started
        entry = answer["nodes"][0]
        assert entry["status"] == "ok" and entry["count"] == args.limit, entry
        return took

    print(f"preview of a sorted query over {args.rows:,} rows, limit {args.limit}")
    pushed, plain = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        plain.append(timed(NoPushDown))
        pushed.append(timed(SqlQueryNode))
    for name, times in (("no push-down (baseline)", plain), ("LIMIT pushed down", pushed)):
        print(f"{name:<26} median {statistics.median(times) * 1000:8.0f} ms   "
              f"min {min(times) * 1000:8.0f} ms")  # fmt: skip
    print(f"ratio: {statistics.median(plain) / statistics.median(pushed):.1f}x faster with LIMIT")


if __name__ == "__main__":
    main()
