"""A join whose left side runs per partition: the right side built by every partition, or built
once per worker process and reused (``join``'s per-process cache of right sides).

    .venv/bin/python bench/join_partitions.py [--right 1000000] [--partitions 4] [--rounds 2]

Each measurement runs in a child process of its own (a clean peak RSS): ``--partitions``
partitions of 1,000 left records each probe a right side of ``--right`` customers (``id, name,
country, segment``), one partition after the other, as one worker process runs the partitions
it is given. *rebuilt*: no stored reference is known, so each partition builds the right side
(what a join run per partition did before); *reused*: the engine gives the right input's stored
reference, so the process builds it once. Rounds alternate (rebuilt, reused, ...); both must
give the same records. Printed: wall time, builds and peak RSS (VmHWM) per variant, and the
ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def right(count: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, count, 1000):
        yield [
            {"id": i, "name": f"customer {i}", "country": ("ES", "FR", "DE")[i % 3],
             "segment": "retail"}
            for i in range(start, min(count, start + 1000))
        ]  # fmt: skip


def left(partition: int, right_rows: int) -> Iterator[list[dict[str, Any]]]:
    yield [
        {"id": partition * 1000 + j, "customer_id": (partition * 7919 + j * 104729) % right_rows,
         "amount": j}
        for j in range(1000)
    ]  # fmt: skip


def child(right_rows: int, partitions: int, reused: bool) -> dict[str, Any]:
    from nodes.builtin.join import RIGHT_TABLES, JoinNode
    from nodes.sdk import ExecutionContext

    node = JoinNode({"on": [{"left": "customer_id", "right": "id"}]})
    refs = {"right": ["runs/bench/customers.msgpack"]} if reused else {}
    start, out = time.perf_counter(), 0
    checksum = 0
    for partition in range(partitions):
        context = ExecutionContext(
            run_id="bench", node_key="join", partition=partition, input_refs=refs
        )
        for batch in node.run(
            context, {"left": left(partition, right_rows), "right": right(right_rows)}
        ):
            out += len(batch)
            checksum += sum(len(record["name"]) for record in batch)  # type: ignore[index]
    return {
        "wall": time.perf_counter() - start,
        "records": out,
        "checksum": checksum,
        "builds": RIGHT_TABLES.builds if reused else partitions,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--right", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["rebuilt", "reused"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.right, args.partitions, args.child == "reused")))
        return
    results: dict[str, list[dict[str, Any]]] = {"rebuilt": [], "reused": []}
    for round_ in range(1, args.rounds + 1):
        for variant in results:
            command = [sys.executable, __file__, "--child", variant, "--right", str(args.right),
                       "--partitions", str(args.partitions)]  # fmt: skip
            done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
            figures = json.loads(done.stdout)
            results[variant].append(figures)
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print(
                f"round {round_} {variant:8} {figures['wall']:7.2f} s  builds "
                f"{figures['builds']}  peak RSS {figures['rss_mb']:.0f} MB  load {load}"
            )
    same = {(r["records"], r["checksum"]) for rows in results.values() for r in rows}
    assert len(same) == 1, f"the variants disagree: {same}"
    medians = {v: statistics.median(r["wall"] for r in rows) for v, rows in results.items()}
    print(f"median wall: rebuilt {medians['rebuilt']:.2f} s, reused {medians['reused']:.2f} s, "
          f"ratio rebuilt/reused {medians['rebuilt'] / medians['reused']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
