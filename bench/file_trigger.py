"""File trigger benchmark: files landing in a directory, each read then moved to ``done/``.

    .venv/bin/python bench/file_trigger.py [--files 200] [--rows 20] [--rounds 3]

The job: ``--files`` small CSV files (``--rows`` orders each) land in ``orders/``; every row
is read with its ``id`` as an integer, and each file moves to ``done/`` once it was read.

- *hand-written*: what a cron job does — a fresh process lists ``orders/*.csv``, reads each
  file with ``csv.reader`` (``int`` on the id) and ``os.replace``s it into ``done/``;
- *trigger, per file*: a flow with a file trigger (``after_success: {"move_to": "done/"}``)
  and one ``file_read`` node (``run_files``, ``columns``): one poll (what beat does), one run
  per file on a worker (2 processes), each file moved by the run-end hook;
- *trigger, batch*: the same with ``batch: {"max_files": 100}`` (``file_read`` reads each
  file of the run in its own task, its default);
- *trigger, batch, one task*: the same, with ``partition_per_file: false`` (the run's files
  read one after the other in one task).

Timed from the poll (the script's start) until every file is in ``done/``. Rounds alternate
the sides; medians are compared. A second part times the run-end hook's one query (what every
run's end pays) against the query it replaced, with ``--triggers`` file triggers and their
events in the database.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIRECTORY = Path(tempfile.gettempdir()) / "flowplatform-bench-files"


def make_files(inbox: Path, files: int, rows: int) -> None:
    (inbox / "orders").mkdir(parents=True, exist_ok=True)
    for index in range(files):
        with (inbox / "orders" / f"orders-{index:05d}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "status"])
            for i in range(rows):
                writer.writerow([index * rows + i, "paid"])


def hand_written(inbox: str) -> None:
    """The child process: list, read, move (prints its figures as JSON)."""
    started = time.perf_counter()
    root = Path(inbox)
    (root / "done").mkdir(exist_ok=True)
    read = 0
    for path in sorted((root / "orders").glob("*.csv")):
        with path.open(newline="") as f:
            reader = csv.reader(f)
            next(reader)
            read += sum(1 for row in reader if int(row[0]) >= 0)
        os.replace(path, root / "done" / path.name)
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": read}))


def flow_file(batch: bool, one_task: bool) -> dict[str, Any]:
    trigger: dict[str, Any] = {
        "files": "inbox",
        "path": "orders/*.csv",
        "every": "1h",
        "after_success": {"move_to": "done/"},
    }
    if batch:
        trigger["batch"] = {"max_files": 100}
    read: dict[str, Any] = {
        "connection": "inbox",
        "path": "orders/*.csv",
        "run_files": True,
        "columns": {"id": "integer", "status": "string"},
    }
    if one_task:
        read["partition_per_file"] = False
    return {
        "slug": f"bench-files-{'batch' if batch else 'each'}{'-one' if one_task else ''}",
        "name": "File trigger benchmark",
        "nodes": [
            {
                "key": "orders",
                "type": "file_read",
                "config": read,
            }
        ],
        "triggers": [trigger],
    }


def platform(inbox: Path, files: int, batch: bool, one_task: bool) -> float:
    from bench.common import wait_for
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection
    from scheduling.triggers.files import poll
    from scheduling.triggers.models import FlowTrigger

    connection = Connection.objects.filter(name="inbox").first() or Connection(name="inbox")
    connection.set_url(f"file://{inbox}")
    connection.save()
    flow = apply_flow_file(flow_file(batch, one_task))[0]
    trigger = FlowTrigger.objects.get(flow=flow)
    started = time.perf_counter()
    result = poll(trigger)
    if result.error:
        raise SystemExit(result.error)
    done = inbox / "done"
    wait_for(lambda: done.is_dir() and len(os.listdir(done)) == files, 600, "the files moved")
    return time.perf_counter() - started


def hook_queries(triggers: int, repeat: int) -> dict[str, float]:
    """Median time of the run-end query, new (one query: flows and files waiting) and old
    (flows waiting only), for a run nothing waits on."""
    from flows.flowfile import apply_flow_file
    from flows.models import FlowRun
    from flows.services import ensure_current_version
    from scheduling.triggers.hooks import listening
    from scheduling.triggers.models import AfterSuccess, FlowTrigger, TriggerEvent
    from scheduling.triggers.upstream import waiting_on

    node = {"key": "body", "type": "payload", "config": {}}
    for i in range(triggers):
        apply_flow_file(
            {
                "slug": f"bench-hook-{i}",
                "name": "hook",
                "nodes": [node],
                "triggers": [
                    {"files": "inbox", "path": f"{i}/*", "after_success": {"move_to": "d/"}},
                    {"after": f"bench-upstream-{i}"},
                ],
            }
        )
    flow = apply_flow_file({"slug": "bench-hook-ended", "name": "e", "nodes": [node]})[0]
    version = ensure_current_version(flow)
    trigger = FlowTrigger.objects.filter(kind="files").first()
    old_runs = FlowRun.objects.bulk_create(
        FlowRun(flow=flow, version=version, status="succeeded") for _ in range(2000)
    )
    TriggerEvent.objects.bulk_create(
        TriggerEvent(
            trigger=trigger, key=uuid.uuid4().hex, run=run, after_success=AfterSuccess.DONE
        )
        for run in old_runs
    )
    run = FlowRun.objects.create(flow=flow, version=version, status="succeeded")
    figures = {}
    for name, query in (
        ("old: after triggers only", lambda: list(waiting_on(run.flow_id))),
        ("new: after triggers and waiting files", lambda: list(listening(run))),
    ):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            query()
            times.append(time.perf_counter() - start)
        figures[name] = statistics.median(times) * 1e6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--triggers", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return hand_written(args.child)

    DIRECTORY.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLOWPLATFORM_FILE_ROOTS", str(DIRECTORY))
    from bench.common import Worker, configure, run_child

    configure()
    worker = Worker(concurrency=2).wait_ready()
    sides: dict[str, list[float]] = {
        "hand-written": [],
        "trigger, per file": [],
        "trigger, batch": [],
        "trigger, batch, one task": [],
    }
    try:
        for round_ in range(args.rounds):
            for side in sides:
                inbox = DIRECTORY / uuid.uuid4().hex[:10]
                make_files(inbox, args.files, args.rows)
                if side == "hand-written":
                    seconds = float(run_child([__file__, "--child", str(inbox)])["seconds"])
                else:
                    batch, one_task = "batch" in side, side.endswith("one task")
                    seconds = platform(inbox, args.files, batch, one_task)
                sides[side].append(seconds)
                print(f"round {round_ + 1} {side:>24}: {seconds:.2f} s", flush=True)
    finally:
        worker.stop()
    median = {side: statistics.median(times) for side, times in sides.items()}
    print(f"{args.files} files of {args.rows} rows, read and moved to done/:")
    for side, seconds in median.items():
        print(f"{side:>24}: median {seconds:.2f} s ({args.files / seconds:,.0f} files/s)")
    for side in list(sides)[1:]:
        print(f"ratio {side} / hand-written: {median[side] / median['hand-written']:.1f}")
    print(f"run-end query, {args.triggers} file and {args.triggers} after triggers:")
    for name, micros in hook_queries(args.triggers, 200).items():
        print(f"  {name}: median {micros:.0f} µs")


if __name__ == "__main__":
    main()
