"""Scale-out benchmark: many tiny 4-node runs on 1, 2, 4 and 8 worker processes, with the
database and Redis work of each node run counted.

    .venv/bin/python bench/scale.py [--runs 200] [--processes 1,2,4,8]

The flow is the minimal one of ``bench/overhead.py`` (``sql_query -> filter -> map_fields ->
http_post``: 10 rows read, 8 kept, one POST each to a peer on loopback). For each process
count, ``--runs`` runs are started (queued on the broker), then one worker with that many pool
processes executes them all. Figures:

- node executions/s: node runs executed, divided by the time from the first node's start to
  the last node's end (``NodeRun.started_at`` / ``finished_at``);
- per node run, the work of the worker's processes while they executed them (the runs'
  starting, ``start_run``, is counted apart, per run):

  - *PG statements*: statements the processes sent to the platform's database, counted in
    the client (``bench/counting.py``: Django's queries and the engine's own statements on its
    lease session; a flow's source queries are counted apart, as *source statements*);
  - *PG commits*: transactions committed in the platform's database, counted by the server
    (``pg_stat_database.xact_commit`` of that database, before and after; every
    autocommit statement is one, read-only ones included; a ``SELECT`` commits nothing to
    disk, so the commits that write are at most this);
  - *Redis requests*: requests the processes sent to Redis, counted in the client (one
    command or one pipeline each: a round trip); *Redis commands*: commands Redis executed,
    counted by the server (``INFO commandstats``, before and after), by command;
  - *Redis bytes in*: bytes Redis received (``INFO stats``), i.e. messages and commands.

Redis is a private ``redis-server`` on loopback started for the benchmark (so that the server's
counts are this benchmark's alone); PostgreSQL is the shared one (``pg_stat_database`` counts
per database). The worker's start-up (a few statements and commands per process) is inside
the counts. The counters cost the processes some time: node executions/s is a little lower than
without them. On a 2-core machine more than 2 processes only add contention: the figures of
4 and 8 processes say what each node run costs, not how a cluster scales.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NODES_PER_RUN = 4
#: Redis commands the benchmark itself sends (not the platform's work).
OWN_COMMANDS = {"info", "psubscribe", "punsubscribe", "flushall", "ping", "config|set"}


class PrivateRedis:
    """A ``redis-server`` on a free loopback port, without persistence, for this benchmark."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.directory = tempfile.mkdtemp(prefix="bench-redis-")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("the private redis-server did not start") from None
                time.sleep(0.05)

    def counts(self) -> dict[str, int]:
        """Commands executed so far, by command, and the bytes received."""
        stats = self.client.info("commandstats")
        counts = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        counts["bytes in"] = int(self.client.info("stats")["total_net_input_bytes"])
        return counts

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def xact_commits(database: str) -> int:
    """Committed transactions of ``database`` so far, read from another database (so the
    reading is not counted), once the count has settled (backends report at exit, or when
    idle for a while)."""
    import psycopg

    admin = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    admin = admin.rsplit("/", 1)[0] + "/postgres"
    sql = "select xact_commit from pg_stat_database where datname = %s"
    with psycopg.connect(admin, autocommit=True) as conn:
        last = -1
        while True:
            conn.execute("select pg_stat_clear_snapshot()")
            value = int(conn.execute(sql, [database]).fetchone()[0])  # type: ignore[index]
            if value == last:
                return value
            last = value
            time.sleep(0.5)


class RunEnds:
    """Counts run ends as they are published on the run-end channel (``flows.runend``), so that
    waiting for them sends nothing to the platform's database."""

    def __init__(self, url: str) -> None:
        import redis

        from flows.runend import CHANNEL_PREFIX

        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
        self.ended: set[str] = set()
        self.lock = threading.Lock()

    def wait(self, run_ids: set[str], timeout: float) -> None:
        from flows.runend import CHANNEL_PREFIX

        deadline = time.monotonic() + timeout
        while not run_ids <= self.ended:
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(run_ids - self.ended)} runs did not end in {timeout}s")
            message = self.pubsub.get_message(timeout=1.0)
            if message is not None:
                self.ended.add(message["channel"].decode().removeprefix(CHANNEL_PREFIX))

    def close(self) -> None:
        self.pubsub.close()


@dataclass
class Trial:
    processes: int
    runs: int
    node_runs: int
    seconds: float
    start: dict[str, float]  # per run
    work: dict[str, float]  # per node run
    commands: dict[str, float]  # Redis commands per node run, by command

    @property
    def rate(self) -> float:
        return self.node_runs / self.seconds


def counted(directory: str, redis_server: PrivateRedis, database: str) -> dict[str, int]:
    from bench import counting

    with counting.paused():
        figures: dict[str, int] = dict(counting.totals(directory))
        figures["pg commits"] = xact_commits(database)
        figures.update({f"redis {k}": v for k, v in redis_server.counts().items()})
    return figures


def delta(after: dict[str, int], before: dict[str, int], per: int) -> dict[str, float]:
    return {k: (after.get(k, 0) - before.get(k, 0)) / per for k in after}


def trial(processes: int, runs: int, redis_server: PrivateRedis, ends: RunEnds) -> Trial:
    from django.db import connection

    from bench.common import Worker
    from flows.models import NodeRun, RunStatus
    from flows.services import start_run

    directory = os.environ["BENCH_COUNTS_DIR"]
    database = os.environ["BENCH_PLATFORM_DB"]
    connection.close()
    before = counted(directory, redis_server, database)
    ids = {str(start_run("bench-overhead").id) for _ in range(runs)}
    connection.close()  # its statistics reach the server
    started = counted(directory, redis_server, database)
    worker = Worker(concurrency=processes, include=["bench.counting"])
    try:
        ends.wait(ids, timeout=max(600, runs * 2))
    finally:
        worker.stop()
    after = counted(directory, redis_server, database)
    nodes = NodeRun.objects.filter(run_id__in=ids)
    if nodes.exclude(status=RunStatus.SUCCEEDED).exists():
        raise SystemExit("a node run did not succeed")
    first = min(n.started_at for n in nodes.only("started_at"))  # type: ignore[type-var]
    last = max(n.finished_at for n in nodes.only("finished_at"))  # type: ignore[type-var]
    node_runs = runs * NODES_PER_RUN
    connection.close()
    work = delta(after, started, node_runs)
    commands = {
        k.removeprefix("redis "): v
        for k, v in work.items()
        if k.startswith("redis ") and k != "redis bytes in" and v
    }
    commands = {k: v for k, v in commands.items() if k not in OWN_COMMANDS}
    return Trial(
        processes,
        runs,
        node_runs,
        (last - first).total_seconds(),
        delta(started, before, runs),
        work,
        commands,
    )


def table(trials: list[Trial]) -> list[str]:
    def own(figures: dict[str, float]) -> float:
        return sum(v for k, v in figures.items() if k.startswith("redis ") and k != "redis bytes in"
                   and k.removeprefix("redis ") not in OWN_COMMANDS)  # fmt: skip

    lines = [
        "processes | node runs/s | per node run: PG statements | PG commits | source stmts "
        "| Redis requests | Redis commands | Redis bytes in",
    ]
    for t in trials:
        w = t.work
        lines.append(
            f"{t.processes:9} | {t.rate:11.1f} | {w['platform_statements']:28.2f} | "
            f"{w['pg commits']:10.2f} | {w['source_statements']:12.2f} | "
            f"{w['redis_requests']:14.2f} | {own(w):14.2f} | {w['redis bytes in']:14.0f}"
        )
    s = trials[-1].start
    lines.append(
        f"start_run, per run (median over trials): PG statements "
        f"{statistics.median(t.start['platform_statements'] for t in trials):.2f}, PG commits "
        f"{statistics.median(t.start['pg commits'] for t in trials):.2f}, Redis requests "
        f"{statistics.median(t.start['redis_requests'] for t in trials):.2f}, Redis commands "
        f"{own(s):.2f}, Redis bytes in {s['redis bytes in']:.0f}"
    )
    busiest = max(trials, key=lambda t: t.rate)
    commands = ", ".join(
        f"{name} {count:.2f}"
        for name, count in sorted(busiest.commands.items(), key=lambda c: -c[1])
    )
    lines.append(f"Redis commands per node run ({busiest.processes} processes): {commands}")
    return lines


def first_message_bytes(redis_server: PrivateRedis) -> int:
    """The size of a run's first message (its first node's task, carrying the rest of the
    chain) as it waits in the queue."""
    from flows.services import start_run

    queue = os.environ["CELERY_TASK_DEFAULT_QUEUE"]
    start_run("bench-overhead")
    message = redis_server.client.lindex(queue, 0)
    redis_server.client.delete(queue)
    return len(message or b"")


def main() -> None:
    parser = argparse.ArgumentParser(description="Scale-out benchmark: tiny runs, counted")
    parser.add_argument("--runs", type=int, default=200, help="runs per process count")
    parser.add_argument("--processes", default="1,2,4,8", help="worker process counts")
    args = parser.parse_args()
    counts_dir = tempfile.mkdtemp(prefix="bench-counts-")
    redis_server = PrivateRedis()
    os.environ.update(
        CELERY_BROKER_URL=redis_server.url,
        CELERY_RESULT_BACKEND=redis_server.url,
        BENCH_COUNTS_DIR=counts_dir,
    )
    from bench.common import Peer, configure

    configure()
    os.environ["BENCH_PLATFORM_DB"] = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/")
    from bench import counting  # noqa: F401 - counts this process's statements too
    from bench.overhead import install_flow

    peer = Peer()
    ends = RunEnds(redis_server.url)
    trials: list[Trial] = []
    try:
        install_flow(peer.url)
        message_bytes = first_message_bytes(redis_server)
        for processes in (int(p) for p in args.processes.split(",")):
            trials.append(trial(processes, args.runs, redis_server, ends))
            t = trials[-1]
            print(
                f"{processes} processes: {t.node_runs} node runs in {t.seconds:.1f}s, "
                f"{t.rate:.1f}/s",
                flush=True,
            )
    finally:
        ends.close()
        peer.stop()
        redis_server.stop()
        shutil.rmtree(counts_dir, ignore_errors=True)
    print(
        f"{args.runs} runs of 4 nodes per process count; a run's first message: {message_bytes} bytes"
    )
    for line in table(trials):
        print(line)


if __name__ == "__main__":
    main()
