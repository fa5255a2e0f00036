"""A background heartbeat for a running node, independent of how fast its batches come."""

from __future__ import annotations

import threading

from django.conf import settings
from django.db import connection

from flows import transitions


class Heartbeat:
    """Touches ``NodeRun.heartbeat_at`` every ``FLOWPLATFORM_HEARTBEAT_S`` until stopped."""

    def __init__(self, node_run_id: int) -> None:
        self.node_run_id = node_run_id
        self.interval = settings.FLOWPLATFORM_HEARTBEAT_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="node-heartbeat")

    def __enter__(self) -> Heartbeat:
        # SQLite (embedded mode) runs one process and would lock under a second writer.
        if connection.vendor == "postgresql":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                transitions.heartbeat(self.node_run_id)
        finally:
            connection.close()  # this thread's own database connection
