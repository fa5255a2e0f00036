"""Client-side CPU of the engine's bookkeeping statements, in one process.

    .venv/bin/python bench/bookkeeping.py [--runs 200] [--repeat 5] [--profile FILE]

Starts ``--runs`` runs of the overhead benchmark's 4-node flow (``start_run``, recording only:
the dispatch to the broker is left out), then takes and finishes each node run in order as a node task
does (``transitions.take``, its version read from the process's cache as the task reads it, ``transitions.finish_node`` with a small inline output, the last one
closing the run), against the real PostgreSQL of ``DATABASE_URL``. Prints, per repetition and
as medians over ``--repeat`` repetitions, the CPU time of this process (``time.process_time``:
the client's share) per ``start_run``, per ``take`` and per ``finish_node``, and the CPU time
of this connection's PostgreSQL backend for each (``db_``: its ``/proc`` ``schedstat``, read
between the calls; planning, executing and committing the statements, the wait for the disk
apart). ``--profile``: a cProfile (CPU time) of the take/finish loop.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import configure, schedstat_s

OUTPUT = json.dumps({"inline": [{"order_id": n, "label": f"item {n}", "source": "bench"}
                                for n in range(3, 11)]})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", default="")
    args = parser.parse_args()
    configure()

    from django.db import connection

    from bench.overhead import install_flow
    from flows import services, transitions
    from flows.engine.executor import load_run
    from flows.models import FlowRun, NodeStatus

    install_flow("http://127.0.0.1:9")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def server_s() -> float:
        return schedstat_s(backend)[0]

    services.dispatch = lambda *a, **k: None  # type: ignore[assignment]  # recording only
    keys = ["rows", "keep", "shape", "push"]
    figures: dict[str, list[float]] = {
        name: []
        for name in (
            "start_run",
            "take",
            "finish_node",
            "db_start_run",
            "db_take",
            "db_finish_node",
        )
    }
    profile = cProfile.Profile(time.process_time) if args.profile else None
    for repetition in range(args.repeat):
        server_before = server_s()
        started = time.process_time()
        ids = [str(services.start_run("bench-overhead").id) for _ in range(args.runs)]
        start_cpu = (time.process_time() - started) / args.runs
        db_start = (server_s() - server_before) / args.runs
        take_cpu = finish_cpu = db_take = db_finish = 0.0
        if profile is not None:
            profile.enable()
        for run_id in ids:
            for position, key in enumerate(keys):
                s0 = server_s()
                t0 = time.process_time()
                claim = transitions.take(run_id, key)
                t1 = time.process_time()
                s1 = server_s()
                assert claim.outcome == "execute" and claim.node_run is not None, claim.outcome
                load_run(claim.node_run)  # (as the node task does, untimed: its version, cached)
                s2 = server_s()
                t2 = time.process_time()
                done = transitions.finish_node(
                    claim.node_run, NodeStatus.SUCCEEDED, close=position == len(keys) - 1,
                    rows_in=10, rows_out=8, output_ref=OUTPUT,
                )  # fmt: skip
                t3 = time.process_time()
                db_finish += server_s() - s2
                assert done
                take_cpu += t1 - t0
                finish_cpu += t3 - t2
                db_take += s1 - s0
        if profile is not None:
            profile.disable()
        nodes = args.runs * len(keys)
        assert FlowRun.objects.filter(id__in=ids, status="succeeded").count() == args.runs
        row = {
            "start_run": start_cpu * 1000,
            "take": take_cpu / nodes * 1000,
            "finish_node": finish_cpu / nodes * 1000,
            "db_start_run": db_start * 1000,
            "db_take": db_take / nodes * 1000,
            "db_finish_node": db_finish / nodes * 1000,
        }
        for name, value in row.items():
            figures[name].append(value)
        print(f"repetition {repetition + 1}: "
              + ", ".join(f"{k} {v:.3f} ms" for k, v in row.items()))  # fmt: skip
    print("median CPU per call: "
          + ", ".join(f"{k} {statistics.median(v):.3f} ms" for k, v in figures.items()))  # fmt: skip
    if profile is not None:
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
