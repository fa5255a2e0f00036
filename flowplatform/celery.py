"""The Celery app. Configured from Django settings (``CELERY_*``); JSON only, never pickle."""

from __future__ import annotations

import gc
import logging
import os
import select
import time
from typing import Any

from celery import Celery, bootsteps
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from flowplatform.env import refuse_to_start_on_settings_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")

#: Allocations between collections of the youngest generation in pool processes (default 700).
GC_THRESHOLD = 50_000

app = Celery("flowplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class PromptPoolMaintenance(bootsteps.StartStopStep):
    """A pool process that died is replaced, and its task handed back to the broker, within a
    second: the prefork pool notices a dead process through its sentinel pipe, which does not
    always fire, and otherwise only every 5 s. (The next delivery then takes the node over at
    once: its owner is gone, decision 0027.)"""

    requires = {"celery.worker.components:Pool"}

    def register_with_event_loop(self, worker: Any, hub: Any) -> None:
        maintain = getattr(worker.pool, "maintain_pool", None)
        if maintain is not None:
            hub.call_repeatedly(POOL_MAINTENANCE_S, maintain)


#: How often the worker checks its pool for dead processes (PromptPoolMaintenance).
POOL_MAINTENANCE_S = 1.0
app.steps["worker"].add(PromptPoolMaintenance)


@app.on_configure.connect
def _load_settings(**_kwargs: Any) -> None:
    """Load the Django settings before Celery reads them: a worker or beat started with
    settings it cannot use stops with one line, as ``manage.py`` does."""
    from django.conf import settings

    with refuse_to_start_on_settings_error():
        settings.INSTALLED_APPS  # noqa: B018 - the first access imports the settings module


#: A connection a task left clean at most this long ago is not health-checked again by the
#: next task, seconds (the rule of :func:`_skip_recent_health_checks`).
HEALTH_CHECK_AFTER_S = 1.0
#: Per connection alias: (the client connection, when a task last left it clean: monotonic s).
_left_clean: dict[str, tuple[int, float]] = {}


@task_prerun.connect
def _before_task(task: Any = None, **_kwargs: Any) -> None:
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
    _skip_recent_health_checks()


@task_postrun.connect
def _after_task(task: Any = None, **_kwargs: Any) -> None:
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
    _note_clean_connections()


def _note_clean_connections() -> None:
    """After a task (and Django's between-requests check): note the connections it left clean
    (no error since, autocommit restored: Django closed any other)."""
    from django.db import connections

    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.errors_occurred:
            _left_clean[conn.alias] = (id(conn.connection), now)
        else:
            _left_clean.pop(conn.alias, None)


def _skip_recent_health_checks() -> None:
    """Between tasks, database connections are treated as Django treats them between requests:
    kept (``CONN_MAX_AGE``), closed past their age or when an error left them unusable, and
    health-checked (``CONN_HEALTH_CHECKS``: a ``SELECT 1`` before the next query). A worker
    running tasks back to back would send that ``SELECT 1`` once per task, for a connection the
    previous task used a moment ago; it is skipped when:

    - the previous task left the connection clean (no error, autocommit restored) less than
      :data:`HEALTH_CHECK_AFTER_S` ago, and
    - nothing has arrived on its socket since: an idle PostgreSQL connection receives nothing
      unless it is being closed (the server terminated the session, restarted, or a pooler in
      between dropped it: an error message and/or the end of the stream are waiting), so a
      readable socket means the ``SELECT 1`` is sent, fails, and the connection is replaced.
    """
    from django.db import connections

    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        raw = conn.connection
        if raw is None or not conn.health_check_enabled or conn.health_check_done:
            continue
        clean = _left_clean.get(conn.alias)
        if clean is None or clean[0] != id(raw) or now - clean[1] > HEALTH_CHECK_AFTER_S:
            continue
        fileno = getattr(raw, "fileno", None)
        if fileno is not None and not _readable(fileno()):
            conn.health_check_done = True


def _readable(fd: int) -> bool:
    """Whether anything (data, the end of the stream, an error) waits on socket ``fd``."""
    poll = getattr(select, "poll", None)
    if poll is None:
        return True  # (no poll(): never skip the check)
    poller = poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, **_kwargs: Any) -> None:
    """The worker replaces the handlers of ``LOGGING``: give its own the redacting filter, so
    that no log line shows a secret of a node run in progress (``nodes.redaction``)."""
    from django.conf import settings

    from flowplatform import logs
    from nodes.redaction import RedactingFilter

    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
        logs.install(handler, json_format=settings.FLOWPLATFORM_LOG_FORMAT == "json")


#: Engine tasks whose first argument is a run id (and, for flows.run_node, second a node key).
_RUN_TASKS = ("flows.run_node", "flows.run_partition", "flows.finish_run", "flows.join_partitions")


@task_prerun.connect
def _log_run_context(task: Any = None, args: Any = None, **_kwargs: Any) -> None:
    """Log lines of an engine task carry its run (and node): ``flowplatform.logs``."""
    if task is None or task.name not in _RUN_TASKS or not args:
        return
    from flowplatform import logs

    node_key = args[1] if task.name == "flows.run_node" and len(args) > 1 else None
    task.request.flowplatform_log_token = logs.set_run_context(run_id=args[0], node_key=node_key)


@task_postrun.connect
def _end_log_run_context(task: Any = None, **_kwargs: Any) -> None:
    token = getattr(getattr(task, "request", None), "flowplatform_log_token", None)
    if token is not None:
        from flowplatform import logs

        logs.reset_run_context(token)
        task.request.flowplatform_log_token = None


@worker_init.connect
def _serve_worker_metrics(sender: Any = None, **_kwargs: Any) -> None:
    """With FLOWPLATFORM_WORKER_METRICS_PORT, serve /metrics for the worker and its whole
    pool: the pool processes forked later share a directory emptied now."""
    from pathlib import Path

    from django.conf import settings

    from flowplatform import metrics

    port = settings.FLOWPLATFORM_WORKER_METRICS_PORT
    metrics.set_collecting(bool(port))
    if not port:
        return

    name = getattr(sender, "hostname", None) or f"worker-{os.getpid()}"
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(
        Path(settings.VAR_DIR) / "metrics" / name.replace("/", "_")
    )
    metrics.use_multiprocess_dir(Path(directory))
    metrics.serve_celery_metrics(port)


@worker_process_init.connect
def _trace_pool_process(**_kwargs: Any) -> None:
    """Tracing starts in each pool process (the SDK's threads do not survive a fork)."""
    from flowplatform import telemetry

    telemetry.setup("worker")


@worker_process_shutdown.connect
def _pool_process_gone(pid: int | None = None, **_kwargs: Any) -> None:
    from flowplatform import metrics, telemetry

    telemetry.shutdown()
    metrics.mark_process_dead(pid or os.getpid())


@beat_init.connect
def _observe_beat(**_kwargs: Any) -> None:
    """Beat traces what it sends and, with FLOWPLATFORM_WORKER_METRICS_PORT, serves /metrics
    (its own figures plus the runs and queues read when scraped)."""
    from django.conf import settings

    from flowplatform import metrics, telemetry

    telemetry.setup("beat")
    metrics.set_collecting(bool(settings.FLOWPLATFORM_WORKER_METRICS_PORT))
    if settings.FLOWPLATFORM_WORKER_METRICS_PORT:
        metrics.serve_celery_metrics(settings.FLOWPLATFORM_WORKER_METRICS_PORT, state=True)


@worker_process_init.connect
def _tune_garbage_collector(**_kwargs: Any) -> None:
    """Set up each pool process for streaming many short-lived rows (decision 0010).

    What was loaded at start-up (Django, the apps, the node types) lives as long as the process:
    frozen, the collector stops walking it again and again. Batches of rows are thousands of
    new tuples at a time: a larger first generation collects them once per batch or so instead
    of several times per batch, and no reference cycles among them are kept any longer.
    """
    from django.conf import settings

    if settings.FLOWPLATFORM_GC_DEFAULTS:
        return
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
