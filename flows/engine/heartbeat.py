"""Background heartbeats for running nodes, independent of how fast their batches come.

One daemon thread per process renews the lease (``flows.engine.lease``) of every node run and
partition executing in the process, every ``FLOWPLATFORM_HEARTBEAT_S``, in one statement per
kind; starting and ending a heartbeat costs no thread and no query. A lease found taken over is remembered
(:func:`lost`): the node's own progress then stops it. With no node executing, the thread holds
no database connection, except to ask, every beat, whether the runs whose values the process
keeps (``nodes.sdk.run_cache``) have ended: their values are dropped then.

The same thread stops a node that ignores Cancel (busy in CPU, between two batches for too
long): every second it looks for runs of its nodes cancelled more than
``FLOWPLATFORM_CANCEL_GRACE_S`` ago, marks those nodes cancelled and has its worker terminate
the task (decision 0016). Only in a worker's pool process: nothing is terminated elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from datetime import timedelta

from celery import current_app, current_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models.functions import Now

from flows import transitions
from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun, NodeStatus, PartitionRun, RunStatus
from nodes.sdk import run_cache

logger = logging.getLogger("flowplatform.engine")

#: How often the thread looks for cancelled runs (the heartbeat itself may be slower).
CANCEL_CHECK_S = 1.0

_in_pool_process = False  # a worker's pool process: one of its tasks may be terminated


@worker_process_init.connect
def _mark_pool_process(**_kwargs: object) -> None:
    global _in_pool_process
    _in_pool_process = True


#: A leased row as the heartbeat knows it: its model and id.
Key = tuple[type[NodeRun] | type[PartitionRun], int]


class _Beater:
    """The process's heartbeat thread and the node runs (and partitions) it keeps alive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.beating: dict[Key, int] = {}  # leased row -> nesting count
        self.fences: dict[Key, int] = {}  # leased row -> fence of its lease
        self.tasks: dict[int, str] = {}  # node run id -> id of the task executing it
        self.lost: set[Key] = set()  # rows whose lease was taken over
        self.terminated: set[str] = set()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def add(self, key: Key, fence: int, task_id: str | None = None) -> None:
        with self.lock:
            self.beating[key] = self.beating.get(key, 0) + 1
            self.fences[key] = fence
            self.lost.discard(key)
            if task_id is not None and key[0] is NodeRun:
                self.tasks.setdefault(key[1], task_id)
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                # (After a fork the parent's thread does not exist in the child.)
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
                self.thread.start()

    def remove(self, key: Key) -> None:
        with self.lock:
            count = self.beating.get(key, 0) - 1
            if count > 0:
                self.beating[key] = count
            else:
                self.beating.pop(key, None)
                self.fences.pop(key, None)
                if key[0] is NodeRun:
                    self.tasks.pop(key[1], None)
                self.lost.discard(key)

    def _beat(self) -> None:
        interval = settings.FLOWPLATFORM_HEARTBEAT_S
        tick = min(interval, CANCEL_CHECK_S)
        last_beat = last_idle_check = time.monotonic()
        while True:
            time.sleep(tick)
            with self.lock:
                leases = dict(self.fences)
                tasks = dict(self.tasks)
            try:
                if not leases:
                    if time.monotonic() - last_idle_check >= interval:
                        last_idle_check = time.monotonic()
                        forget_ended_runs()
                    with contextlib.suppress(DatabaseError):
                        connection.close()  # idle: hold no database connection (none: no-op)
                    continue
                if time.monotonic() - last_beat >= interval:
                    last_beat = time.monotonic()
                    for model in (NodeRun, PartitionRun):
                        of_model = {pk: f for (m, pk), f in leases.items() if m is model}
                        held = transitions.heartbeat_many(of_model, model)
                        with self.lock:
                            self.lost.update((model, pk) for pk in of_model if pk not in held)
                if tasks:
                    self._stop_cancelled(tasks)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                logger.warning("heartbeat not recorded (%s); retrying next beat", exc)
                with contextlib.suppress(DatabaseError):
                    connection.close()  # this thread's own connection; reopened next time

    def _stop_cancelled(self, tasks: dict[int, str]) -> None:
        """Terminate the tasks whose run was cancelled ``FLOWPLATFORM_CANCEL_GRACE_S`` ago and
        whose node is still executing here; their node runs end ``cancelled`` first."""
        grace = timedelta(seconds=settings.FLOWPLATFORM_CANCEL_GRACE_S)
        overdue = NodeRun.objects.filter(
            pk__in=list(tasks),
            status__in=(NodeStatus.RUNNING, NodeStatus.CANCELLED),
            run__status=RunStatus.CANCELLED,
            run__finished_at__lte=Now() - grace,
        )
        for node_run in overdue:
            task_id = tasks[node_run.pk]
            if node_run.fence != self.fences.get((NodeRun, node_run.pk)):
                continue  # taken over: no longer this process's to stop
            if task_id in self.terminated:
                continue
            with self.lock:
                if (NodeRun, node_run.pk) not in self.beating:
                    continue  # it has just returned by itself
            self.terminated.add(task_id)
            stopped = f"cancelled: stopped after {grace.total_seconds():g}s of grace"
            transitions.finish_node(node_run, NodeStatus.CANCELLED, error=stopped)
            logger.warning(
                "run %s node %s ignored the cancel for %gs; terminating task %s",
                node_run.run_id, node_run.node_key, grace.total_seconds(), task_id,
            )  # fmt: skip
            _terminate(task_id)


def forget_ended_runs() -> int:
    """Drop what this process keeps for runs that are no longer active (``nodes.sdk.run_cache``:
    a join's right table), ended or deleted, asked by the idle heartbeat thread every beat: one
    query while the process keeps values, none (and no connection) otherwise. Never waits on a
    cache busy building a value (the build may take seconds, and this thread renews leases):
    such a cache is skipped and looked at again next beat. Returns how many values were
    dropped; a database error propagates (the thread logs it and goes on)."""
    held: dict[uuid.UUID, str] = {}
    for run_id in run_cache.held_runs(blocking=False):
        with contextlib.suppress(ValueError):  # (only a run's id names a run)
            held[uuid.UUID(run_id)] = run_id
    if not held:
        return 0
    active = set(
        FlowRun.objects.filter(id__in=held, status__in=ACTIVE_RUN_STATUSES).values_list(
            "id", flat=True
        )
    )
    return sum(
        run_cache.forget_run(run_id, blocking=False)
        for pk, run_id in held.items()
        if pk not in active
    )


def _terminate(task_id: str) -> None:
    """Have this worker kill the pool process running ``task_id`` (acknowledging the task), or,
    when the broker cannot be reached, end this process (the task is revoked already)."""
    try:
        current_app.control.revoke(task_id, terminate=True, signal="SIGTERM")
    except Exception as exc:  # noqa: BLE001 - any broker failure: stop the process itself
        logger.warning("task %s not terminated by its worker (%s); exiting", task_id, exc)
        os.kill(os.getpid(), signal.SIGTERM)


_beater = _Beater()


class Heartbeat:
    """Keeps the leases of node runs (or partitions) executing in this process alive (a
    context manager)."""

    def __init__(self, *rows: NodeRun | PartitionRun) -> None:
        self.rows = rows

    def __enter__(self) -> Heartbeat:
        task_id = _running_task_id()
        for row in self.rows:
            _beater.add((type(row), row.pk), row.fence, task_id)
        return self

    def __exit__(self, *exc: object) -> None:
        for row in self.rows:
            _beater.remove((type(row), row.pk))


def lost(row: NodeRun | PartitionRun) -> bool:
    """Whether the heartbeat found this process's lease on the node run (or partition) taken
    over."""
    with _beater.lock:
        return (type(row), row.pk) in _beater.lost


def _running_task_id() -> str | None:
    """The id of the task this pool process is executing, if the node may be terminated."""
    if not _in_pool_process or not current_task:
        return None
    request = current_task.request
    return None if request.is_eager else request.id
