"""Who is executing a node right now: a PostgreSQL advisory lock held for the execution.

The lock lives on a connection of its own, so it is released the moment the executing process
dies (the server drops the session), whatever killed it. A second delivery of the same node
that cannot take the lock knows the first is alive and stands down; one that can take it knows
the first is gone. On SQLite (embedded, single-process mode) the lease always succeeds.
"""

from __future__ import annotations

from django.db import connections

# Namespace of the advisory-lock keys (the first of the two int4 keys).
LOCK_NAMESPACE = 0x0F10


class NodeLease:
    """An exclusive, crash-released claim on executing one NodeRun."""

    def __init__(self, node_run_id: int) -> None:
        self.node_run_id = node_run_id
        self._connection = None

    def acquire(self) -> bool:
        connection = connections.create_connection("default")
        if connection.vendor != "postgresql":
            return True
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, self.node_run_id % 2**31]
            )
            taken = bool(cursor.fetchone()[0])
        if taken:
            self._connection = connection
        else:
            connection.close()
        return taken

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()  # closing the session releases the lock
            self._connection = None


def is_executing(node_run_id: int) -> bool:
    """Whether a live process holds the lease of this node run."""
    lease = NodeLease(node_run_id)
    if lease.acquire():
        lease.release()
        return False
    return True
