"""Background heartbeats for running nodes, independent of how fast their batches come.

One daemon thread per process touches ``NodeRun.heartbeat_at`` of every node executing in the
process, every ``FLOWPLATFORM_HEARTBEAT_S``, in one statement; starting and ending a node's
heartbeat costs no thread and no query.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from flows import transitions

logger = logging.getLogger("flowplatform.engine")


class _Beater:
    """The process's heartbeat thread and the node runs it keeps alive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.beating: dict[int, int] = {}  # node run id -> nesting count
        self.thread: threading.Thread | None = None
        self.pid = 0

    def add(self, node_run_id: int) -> None:
        with self.lock:
            self.beating[node_run_id] = self.beating.get(node_run_id, 0) + 1
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                # (After a fork the parent's thread does not exist in the child.)
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
                self.thread.start()

    def remove(self, node_run_id: int) -> None:
        with self.lock:
            count = self.beating.get(node_run_id, 0) - 1
            if count > 0:
                self.beating[node_run_id] = count
            else:
                self.beating.pop(node_run_id, None)

    def _beat(self) -> None:
        interval = settings.FLOWPLATFORM_HEARTBEAT_S
        while True:
            time.sleep(interval)
            with self.lock:
                ids = list(self.beating)
            if not ids:
                with contextlib.suppress(DatabaseError):
                    connection.close()  # idle: hold no database connection (none: no-op)
                continue
            try:
                transitions.heartbeat_many(ids)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                logger.warning("heartbeat not recorded (%s); retrying next beat", exc)
                with contextlib.suppress(DatabaseError):
                    connection.close()  # this thread's own connection; reopened next time


_beater = _Beater()


class Heartbeat:
    """Keeps ``NodeRun.heartbeat_at`` fresh while the node runs (a context manager)."""

    def __init__(self, node_run_id: int) -> None:
        self.node_run_id = node_run_id

    def __enter__(self) -> Heartbeat:
        # SQLite (embedded mode) runs one process and would lock under a second writer.
        if connection.vendor == "postgresql":
            _beater.add(self.node_run_id)
        return self

    def __exit__(self, *exc: object) -> None:
        if connection.vendor == "postgresql":
            _beater.remove(self.node_run_id)
