"""What the benchmarks share: settings from the environment, a worker, the peer, peak RSS,
rounds and their medians.

Defaults (override with the usual variables): ``DATABASE_URL`` =
``postgres://postgres@127.0.0.1:5432/fp_bench`` (created if missing; the source tables live
in ``fp_bench_source`` beside it), ``CELERY_BROKER_URL`` = ``redis://127.0.0.1:6379/9``, a private queue, and flow
data under a temporary directory. Everything runs on loopback.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/fp_bench"
# Outside the embedded demo the platform needs a secret key. This one is published in the
# repository: for the benchmarks' scratch databases only, never for a deployment.
BENCH_SECRET_KEY = "benchmarks-only-key-published-in-the-repository-never-deploy-it"


def configure() -> None:
    """Point settings at PostgreSQL, Redis and a private queue, create the database, migrate."""
    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
    os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"flowplatform-bench-{os.getpid()}")
    os.environ.setdefault("FLOWPLATFORM_HTTP_ALLOW_PRIVATE", "true")
    os.environ.setdefault("FLOWPLATFORM_LOG_LEVEL", "WARNING")
    os.environ.setdefault("FLOWPLATFORM_SECRET_KEY", BENCH_SECRET_KEY)
    os.environ["FLOWPLATFORM_PUBLISHED_KEY_ALLOWED"] = "true"  # (refused anywhere else)
    os.environ.setdefault("FLOW_DATA_STORAGE", tempfile.mkdtemp(prefix="flowplatform-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")
    sys.path.insert(0, str(ROOT))
    _create_database(os.environ["DATABASE_URL"])
    _create_database(source_url())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _create_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
            conn.execute(f'create database "{name}"')


def source_url() -> str:
    """The database of the benchmarks' source and target tables, as a psycopg URL: a sibling
    of the platform's (``<name>_source``), since the database guard refuses the platform's own
    database as a connection."""
    base, name = (
        os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1).rsplit("/", 1)
    )
    return f"{base}/{name}_source"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Worker:
    """A ``celery worker`` subprocess (prefork) on the benchmark queue."""

    def __init__(self, concurrency: int = 2, include: list[str] | None = None) -> None:
        self.name = f"bench-{os.getpid()}-{time.monotonic_ns()}@localhost"
        self.log = Path(tempfile.gettempdir()) / f"{self.name}.log"
        args = [
            sys.executable, "-m", "celery", "-A", "flowplatform", "worker",
            "--loglevel", os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"), "--concurrency", str(concurrency), "--pool", "prefork",
            "--hostname", self.name, "--queues", os.environ["CELERY_TASK_DEFAULT_QUEUE"],
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if include:
            args += ["--include", ",".join(include)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=log)
        self.peak_kb: dict[int, int] = {}

    def wait_ready(self) -> Worker:
        from flowplatform.celery import app

        def ready() -> bool:
            if self.process.poll() is not None:
                raise SystemExit(f"worker exited; see {self.log}")
            return bool(app.control.ping(destination=[self.name], timeout=0.5))

        wait_for(ready, 60, "the worker")
        return self

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def sample(self) -> None:
        """Record each worker process's peak resident set (VmHWM) seen so far."""
        for pid in self.pids():
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), vm_hwm_kb(pid))

    def peak_mb(self) -> float:
        """The largest peak RSS of any worker process (the parent or a pool child)."""
        self.sample()
        return max(self.peak_kb.values()) / 1024

    def cpu_s(self) -> float:
        """CPU seconds used so far by the worker's processes (user + system)."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def schedstat_s(pid: int) -> tuple[float, float]:
    """Seconds a process's threads have run on a CPU and waited for one while runnable
    (``schedstat``; what its threads that ended used is not counted, zeros when it is gone)."""
    running = waiting = 0
    for thread in Path(f"/proc/{pid}/task").glob("*"):
        try:
            ran, waited = (thread / "schedstat").read_text().split()[:2]
        except OSError:
            continue
        running, waiting = running + int(ran), waiting + int(waited)
    return running / 1e9, waiting / 1e9


def own_cpu_s() -> float:
    """User + system CPU time of this process so far, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_figures(started: float, cpu_before: float, records: int) -> dict[str, Any]:
    """What a hand-written job reports: wall time since ``started`` (``time.perf_counter``),
    CPU since ``cpu_before`` (``own_cpu_s``), records done and this process's peak RSS."""
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": own_cpu_s() - cpu_before,
        "records": records,
        "peak_rss_mb": vm_hwm_kb(os.getpid()) / 1024,
    }


def run_flow_sampled(
    worker: Worker, slug: str, params: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """Start a run of flow ``slug`` and wait for it to succeed, sampling the worker's peak RSS
    meanwhile. Return the run and its figures: ``wall_s`` from ``start_run`` to the run's
    ``finished_at``, ``cpu_s`` used by the worker's processes."""
    from flows.models import FlowRun
    from flows.services import start_run

    cpu_before = worker.cpu_s()
    started = time.time()
    run = start_run(slug, params=params)

    def finished() -> FlowRun | None:
        worker.sample()
        run.refresh_from_db()
        return run if run.is_finished else None

    wait_for(finished, 3600, "the flow run")
    if run.status != "succeeded":
        raise SystemExit(f"flow run {run.id} {run.status}: {run.error}")
    assert run.finished_at is not None
    return run, {
        "wall_s": run.finished_at.timestamp() - started,
        "cpu_s": worker.cpu_s() - cpu_before,
    }


def print_round(index: int, label: str, result: dict[str, Any], extra: str = "") -> None:
    """One line per job and round (``index`` from 0): its wall and CPU seconds, then ``extra``."""
    print(
        f"  round {index + 1} {label:<12} {result['wall_s']:7.2f}s wall "
        f"{result['cpu_s']:7.2f}s CPU{extra}",
        flush=True,
    )


def median_of(results: list[dict[str, Any]], key: str = "wall_s") -> float:
    """The median of one figure over the rounds."""
    return statistics.median(r[key] for r in results)


def round_ratio(
    flow: list[dict[str, Any]], hand: list[dict[str, Any]], key: str = "wall_s"
) -> float:
    """The median of each round's ratio flow / hand-written: each pair ran back to back, under
    the same load (which changes between rounds on a shared machine)."""
    return statistics.median(f[key] / h[key] for f, h in zip(flow, hand, strict=True))


def run_child(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run ``python ARGS`` (a benchmark script's own child mode) in a fresh process, as a
    hand-written script would run, and return the JSON object it prints last."""
    out = subprocess.run(
        [sys.executable, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=timeout,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def count_rows(table: str) -> int:
    """Rows of ``table`` (a benchmark's own table name) in the source database."""
    import psycopg

    with psycopg.connect(source_url()) as conn:
        return int(conn.execute(f"select count(*) from {table}").fetchone()[0])  # type: ignore[index]


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size of a process, in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peer:
    """The HTTP peer of ``bench/peer.py`` in its own process (so it shares no GIL)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "peer.py")], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def stats(self) -> dict[str, int]:
        import requests

        return requests.get(f"{self.url}/stats", timeout=10).json()

    def reset(self) -> None:
        import requests

        requests.post(f"{self.url}/reset", data=b"", timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def worker_node_runs() -> float:
    """``flowplatform_node_runs_total`` summed over every label, scraped from the ``/metrics``
    of the worker on ``FLOWPLATFORM_WORKER_METRICS_PORT`` (proof that metrics were on)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    port = os.environ["FLOWPLATFORM_WORKER_METRICS_PORT"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "flowplatform_node_runs_total"
    )
