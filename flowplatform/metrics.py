"""Prometheus metrics: their names (a public contract: dashboards and alerts use them), the
few functions the engine calls to move them, and the exposition on ``/metrics``.

Label sets are bounded: flow slugs, node types, statuses, triggers, queues, reaper actions;
never a run id. Counters and histograms live in the process that observes them; a worker's
pool processes share them through prometheus_client's multiprocess mode (a directory of
memory-mapped files, ``PROMETHEUS_MULTIPROC_DIR``), set up by ``serve_celery_metrics`` before
the pool starts. ``flowplatform_active_runs`` and ``flowplatform_queue_depth`` are read from
the database and the broker when scraped, by the web process and beat (workers leave them out:
a hundred workers would repeat the same figures).
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger("flowplatform.metrics")

#: Every metric name, for the docs and the dashboard (docs/observability.md lists them).
RUNS_TOTAL = "flowplatform_runs_total"
RUN_DURATION = "flowplatform_run_duration_seconds"
NODE_RUNS_TOTAL = "flowplatform_node_runs_total"
NODE_DURATION = "flowplatform_node_duration_seconds"
ROWS_TOTAL = "flowplatform_rows_total"
NODE_RETRIES_TOTAL = "flowplatform_node_retries_total"
ACTIVE_RUNS = "flowplatform_active_runs"
QUEUE_DEPTH = "flowplatform_queue_depth"
SCHEDULE_FIRE_LAG = "flowplatform_schedule_fire_lag_seconds"
REAPER_ACTIONS_TOTAL = "flowplatform_reaper_actions_total"

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400)
_LAG_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class _Metrics:
    """The counters and histograms, created on first use (after the multiprocess mode, when
    there is one, has been chosen)."""

    def __init__(self) -> None:
        # ``_total`` is added by the client to counters: the names above are what is exposed.
        self.runs = Counter(
            RUNS_TOTAL.removesuffix("_total"),
            "Flow runs finished, by flow, final status and trigger.",
            ["flow", "status", "trigger"],
        )
        self.run_duration = Histogram(
            RUN_DURATION,
            "Time from a run's creation to its end, by flow.",
            ["flow"],
            buckets=_DURATION_BUCKETS,
        )
        self.node_runs = Counter(
            NODE_RUNS_TOTAL.removesuffix("_total"),
            "Node executions (attempts) finished, by node type and status.",
            ["node_type", "status"],
        )
        self.node_duration = Histogram(
            NODE_DURATION,
            "Time one node execution took, by node type.",
            ["node_type"],
            buckets=_DURATION_BUCKETS,
        )
        self.rows = Counter(
            ROWS_TOTAL.removesuffix("_total"),
            "Records read (in) and written (out) by nodes, by node type.",
            ["node_type", "direction"],
        )
        self.retries = Counter(
            NODE_RETRIES_TOTAL.removesuffix("_total"),
            "Node executions that were retries of a failed attempt, by node type.",
            ["node_type"],
        )
        self.fire_lag = Histogram(
            SCHEDULE_FIRE_LAG,
            "How late a schedule's run was started after its fire time.",
            buckets=_LAG_BUCKETS,
        )
        self.reaper = Counter(
            REAPER_ACTIONS_TOTAL.removesuffix("_total"),
            "What the reaper did to stalled or overdue runs, by action.",
            ["action"],
        )


_metrics: _Metrics | None = None
_lock = threading.Lock()
#: Whether this process counts at all: a worker or beat without a metrics port has nobody to
#: read its figures, and skips the work (``set_collecting``); the web process always counts.
_collecting = True


def set_collecting(on: bool) -> None:
    global _collecting
    _collecting = on


def collecting() -> bool:
    return _collecting


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# --- What the platform calls --------------------------------------------------------------


def run_finished(flow: str, status: str, trigger: str, duration_s: float | None) -> None:
    if not _collecting:
        return
    series = _run_series_cache.get((flow, status, trigger))
    if series is None:
        metrics = _get()
        series = metrics.runs.labels(flow, status, trigger), metrics.run_duration.labels(flow)
        _run_series_cache[(flow, status, trigger)] = series
    series[0].inc()
    if duration_s is not None:
        series[1].observe(max(duration_s, 0.0))


#: The series a finished run moves, by (flow, status, trigger): looked up once per process.
_run_series_cache: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def node_finished(
    node_type: str, status: str, duration_s: float, rows_in: int, rows_out: int, retry: bool
) -> None:
    if not _collecting:
        return
    node_runs, duration, rows_read, rows_written, retries = _node_series(node_type, status)
    node_runs.inc()
    duration.observe(duration_s)
    if rows_in:
        rows_read.inc(rows_in)
    if rows_out:
        rows_written.inc(rows_out)
    if retry:
        retries.inc()


#: The series a node execution moves, by (node type, status): looked up once per process.
_node_series_cache: dict[tuple[str, str], tuple[Any, Any, Any, Any, Any]] = {}


def _node_series(node_type: str, status: str) -> tuple[Any, Any, Any, Any, Any]:
    series = _node_series_cache.get((node_type, status))
    if series is None:
        metrics = _get()
        series = (
            metrics.node_runs.labels(node_type, status),
            metrics.node_duration.labels(node_type),
            metrics.rows.labels(node_type, "in"),
            metrics.rows.labels(node_type, "out"),
            metrics.retries.labels(node_type),
        )
        _node_series_cache[(node_type, status)] = series
    return series


def schedule_fired(lag_s: float) -> None:
    if not _collecting:
        return
    _get().fire_lag.observe(max(lag_s, 0.0))


def reaper_acted(counts: dict[str, int]) -> None:
    if not _collecting:
        return
    metrics = _get()
    for action, count in counts.items():
        if count:
            metrics.reaper.labels(action).inc(count)


# --- Figures read when scraped ------------------------------------------------------------


class StateCollector(Collector):
    """``flowplatform_active_runs{flow}`` from the database and ``flowplatform_queue_depth``
    from the broker's queues (Redis lists), read at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily(ACTIVE_RUNS, "Runs queued or running, by flow.", labels=["flow"])
        for flow, count in _active_runs():
            active.add_metric([flow], count)
        yield active
        depth = GaugeMetricFamily(
            QUEUE_DEPTH, "Messages waiting in a broker queue.", labels=["queue"]
        )
        for queue, length in _queue_depths():
            depth.add_metric([queue], length)
        yield depth


def _active_runs() -> list[tuple[str, int]]:
    from django.db import DatabaseError
    from django.db.models import Count

    from flows.models import ACTIVE_RUN_STATUSES, FlowRun

    try:
        rows = (
            FlowRun.objects.filter(status__in=ACTIVE_RUN_STATUSES)
            .values_list("flow__slug")
            .annotate(n=Count("id"))
        )
        return [(slug, n) for slug, n in rows]
    except DatabaseError as exc:
        logger.warning("%s not collected: %s", ACTIVE_RUNS, exc)
        return []


def queue_names() -> list[str]:
    from django.conf import settings

    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    if getattr(settings, "FLOWPLATFORM_SCHEDULE_QUEUE", ""):
        names.add(settings.FLOWPLATFORM_SCHEDULE_QUEUE)
    return sorted(names)


def _queue_depths() -> list[tuple[str, int]]:
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return []  # no broker (embedded mode), or one whose queues are not Redis lists
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return [(queue, int(client.llen(queue))) for queue in queue_names()]
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        logger.warning("%s not collected: %s", QUEUE_DEPTH, exc)
        return []


# --- Exposition ---------------------------------------------------------------------------


def exposition(state: bool) -> bytes:
    """The text exposition of this process (of every process sharing its multiprocess
    directory), with the scrape-time figures when ``state``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if state:
        registry.register(StateCollector())
    _get()  # every metric is listed from the first scrape on, even before it moves
    return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()


def token_ok(authorization: str | None) -> bool:
    """Whether a request may read the metrics: always without FLOWPLATFORM_METRICS_TOKEN,
    else only with ``Authorization: Bearer <token>``."""
    from django.conf import settings

    expected = settings.FLOWPLATFORM_METRICS_TOKEN
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), expected)


CONTENT_TYPE = CONTENT_TYPE_LATEST


# --- Celery processes (worker and beat) -----------------------------------------------------


def use_multiprocess_dir(directory: Path) -> None:
    """Make this process and the pool processes it will fork share metrics in ``directory``,
    emptied first (files of an earlier worker would be counted again)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # The client chose its value class at import; choose again now the directory is known.
    values.ValueClass = values.get_value_class()


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


def serve_celery_metrics(
    port: int,
    host: str = "0.0.0.0",  # noqa: S104 - scraped by Prometheus from outside the pod
    state: bool = False,
) -> ThreadingHTTPServer:
    """Serve ``/metrics`` (and ``/healthz``) from a thread of this process."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(200, b'{"status": "ok"}\n', "application/json")
            elif path != "/metrics":
                self._answer(404, b'{"detail": "Not found."}\n', "application/json")
            elif not token_ok(self.headers.get("Authorization")):
                self._answer(
                    401, b'{"detail": "metrics token missing or wrong"}\n', "application/json"
                )
            else:
                self._answer(200, exposition(state), CONTENT_TYPE)

        def _answer(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not logged."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server
