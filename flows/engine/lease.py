"""Who is executing a node right now: a PostgreSQL advisory lock held for the execution.

The lock lives on a connection of its own (one per process, kept between tasks), so it is
released the moment the executing process dies (the server drops the session), whatever
killed it. A second delivery of the same node
that cannot take the lock knows the first is alive and stands down; one that can take it knows
the first is gone. On SQLite (embedded, single-process mode) the lease always succeeds.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import psycopg
from celery.signals import worker_process_init
from django.db import DatabaseError, connections

# Namespace of the advisory-lock keys (the first of the two int4 keys).
LOCK_NAMESPACE = 0x0F10

# One lease session per thread, opened once and kept: opening a PostgreSQL connection per node
# task cost more than the rest of a short node's bookkeeping. Keys held here are tracked so
# that a second claim from this same process fails, as it would from another session
# (advisory locks are re-entrant within one session).
_local = threading.local()
_keep_sessions = False  # only in worker pool processes; elsewhere a session lasts one lease


@worker_process_init.connect
def _keep_sessions_in_workers(**_kwargs: object) -> None:
    global _keep_sessions
    _keep_sessions = True
    # Open it now, so that no pool process is slower than another at its first node.
    if connections["default"].vendor == "postgresql":
        with contextlib.suppress(DatabaseError):
            _session().ensure_connection()


def _session():  # type: ignore[no-untyped-def]
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = connections.create_connection("default")
        _local.connection, _local.held = connection, set()
    return connection


def _drop_session() -> None:
    connection = getattr(_local, "connection", None)
    if connection is not None:
        connection.close()  # closing the session releases every lock it held
    _local.connection, _local.held = None, set()


def lease_key(node_run_id: int) -> int:
    """The second advisory-lock key of a node run (the first is ``LOCK_NAMESPACE``)."""
    return node_run_id % 2**31


#: Prepare every statement sent on the lease session at its first execution.
PREPARE_THRESHOLD = 0


def run_on_session(sql: str, params: Any) -> Any:
    """Run one statement on this process's lease session; its first row.

    For statements that take or release leases themselves (see ``flows.engine.fastpath``).
    When the session's connection is found broken (e.g. the server restarted, and the locks
    went with it), it is reopened and the statement sent once more; an error of the statement
    itself leaves the session, and the leases it holds, as they are.
    """
    try:
        return _execute(sql, params)
    except DatabaseError:
        if not _session_broken():
            raise
        _drop_session()
        return _execute(sql, params)


def _session_broken() -> bool:
    connection = getattr(_local, "connection", None)
    raw = connection.connection if connection is not None else None
    return raw is None or raw.closed or raw.broken


def _execute(sql: str, params: Any) -> Any:
    # A server-side binding cursor, so that the statement is prepared once per session and
    # not planned again at every execution. Django turns prepared statements off (for
    # transaction-mode poolers); this session holds session-level advisory locks, which such a
    # pooler could not carry anyway, so it must reach PostgreSQL directly.
    session = _session()
    session.ensure_connection()
    session.connection.prepare_threshold = PREPARE_THRESHOLD
    with session.wrap_database_errors, psycopg.Cursor(session.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def close_idle_session() -> None:
    """Outside worker processes, a session holding no lease is closed (nothing lingers)."""
    if not _keep_sessions and not getattr(_local, "held", None):
        _drop_session()


def held_keys() -> list[int]:
    """The lease keys this process holds (a second claim from the same process must fail)."""
    _session()
    return sorted(_local.held)


_LOCK_SQL = "SELECT pg_try_advisory_lock(%s::int, %s::int)"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(%s::int, %s::int)"


class NodeLease:
    """An exclusive, crash-released claim on executing one NodeRun."""

    def __init__(self, node_run_id: int) -> None:
        self.node_run_id = node_run_id
        self._key = lease_key(node_run_id)
        self._held = False

    @classmethod
    def taken(cls, node_run_id: int) -> NodeLease:
        """The lease of a node run whose lock a statement on the session has just taken."""
        lease = cls(node_run_id)
        _local.held.add(lease._key)
        lease._held = True
        return lease

    def released(self) -> None:
        """Forget the lease: a statement on the session has just released its lock."""
        self._held = False
        _local.held.discard(self._key)
        close_idle_session()

    def acquire(self) -> bool:
        if connections["default"].vendor != "postgresql":
            return True
        _session()
        if self._key in _local.held:
            return False
        # (A broken session is reopened and the lock tried once more: its locks went with it.)
        row = run_on_session(_LOCK_SQL, [LOCK_NAMESPACE, self._key])
        if row[0]:
            _local.held.add(self._key)
            self._held = True
        return bool(row[0])

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        _local.held.discard(self._key)
        if not _keep_sessions and not _local.held:
            _drop_session()  # closing releases the lock
            return
        try:
            run_on_session(_UNLOCK_SQL, [LOCK_NAMESPACE, self._key])
        except DatabaseError:
            _drop_session()  # the lock goes with the session


def is_executing(node_run_id: int) -> bool:
    """Whether a live process holds the lease of this node run."""
    lease = NodeLease(node_run_id)
    if lease.acquire():
        lease.release()
        return False
    return True
