"""Idle PostgreSQL connections of ``sql_query``, kept a short while for the next query.

Opening a connection costs a few milliseconds (more with TLS), as much as a short query; a
worker that runs the same flows all day would pay it at every node. After a query has ended
cleanly, its connection is reset (``DISCARD ALL``: settings, temporary tables, prepared
statements, advisory locks, listeners) and kept, per URL (credentials included) and per
process, at most ``MAX_IDLE_PER_URL`` of them for ``MAX_IDLE_S`` seconds. A kept connection
found broken when it is taken again is replaced by a fresh one before any row is read.
The reset is bookkeeping, not the node's work: the platform leaves it out of its traces
(``around_reset``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator

import psycopg

from nodes import dbguard

MAX_IDLE_PER_URL = 2
MAX_IDLE_S = 60.0

_lock = threading.Lock()
_idle: dict[str, list[tuple[float, psycopg.Connection]]] = {}
_pid = os.getpid()
#: Around the reset of a connection given back. The platform sets it when tracing is on
#: (``flowplatform.telemetry.untraced``), so that the reset is no span under the node's.
around_reset: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext


def connect(url: str, connect_timeout: int = 10) -> psycopg.Connection:
    """A new connection to the URL's host, at the addresses the database guard checked just
    now (``hostaddr``), so that the name cannot resolve elsewhere in between."""
    target = dbguard.postgres_target(url)
    # No prepared statements: DISCARD ALL drops them on the server behind psycopg's back.
    return psycopg.connect(
        url,
        connect_timeout=connect_timeout,
        application_name="flowplatform",
        prepare_threshold=None,
        host=target["host"],
        hostaddr=target["hostaddr"],
        port=target["port"],
    )


def take(url: str) -> psycopg.Connection | None:
    """A kept connection to ``url`` (``None`` when there is none)."""
    global _pid
    with _lock:
        if _pid != os.getpid():  # a forked child: its parent's sockets are not its own
            _idle.clear()
            _pid = os.getpid()
        expired = _sweep()
        kept = _idle.get(url, [])
        conn = kept.pop()[1] if kept else None
    for old in expired:
        _close(old)
    return conn


def _sweep() -> list[psycopg.Connection]:
    """Take out every kept connection idle for too long, for any URL (call under the lock)."""
    now = time.monotonic()
    expired = []
    for url in list(_idle):
        fresh = [(since, conn) for since, conn in _idle[url] if now - since < MAX_IDLE_S]
        expired += [conn for since, conn in _idle[url] if now - since >= MAX_IDLE_S]
        if fresh:
            _idle[url] = fresh
        else:
            del _idle[url]
    return expired


def give(url: str, conn: psycopg.Connection) -> None:
    """Keep ``conn`` (outside any transaction) for the next query to ``url``, or close it."""
    try:
        conn.autocommit = True  # DISCARD cannot run in a transaction block
        conn.execute("DISCARD ALL")
        conn.autocommit = False
    except psycopg.Error:
        _close(conn)  # not worth keeping; the query itself went well
        return
    except BaseException:
        _close(conn)
        raise
    with _lock:
        kept = _idle.setdefault(url, [])
        if len(kept) < MAX_IDLE_PER_URL and _pid == os.getpid():
            kept.append((time.monotonic(), conn))
            return
    _close(conn)


@contextlib.contextmanager
def connection(
    url: str, begin: Callable[[psycopg.Connection], object], connect_timeout: int = 10
) -> Iterator[psycopg.Connection]:
    """A connection to ``url`` on which ``begin(conn)`` has run (a kept one whose ``begin``
    finds it broken is replaced by a fresh one). Given back to the pool when the block ends
    without an exception (after its transaction has ended), closed otherwise."""
    conn = take(url)
    if conn is not None:
        try:
            begin(conn)
        except psycopg.OperationalError:
            _close(conn)  # broken while kept (e.g. the server restarted)
            conn = None
        except BaseException:
            _close(conn)
            raise
    if conn is None:
        conn = connect(url, connect_timeout)
        try:
            begin(conn)
        except BaseException:
            _close(conn)
            raise
    try:
        yield conn
    except BaseException:
        _close(conn)
        raise
    with around_reset():
        give(url, conn)


def clear() -> None:
    """Close every kept connection."""
    with _lock:
        conns = [conn for kept in _idle.values() for _since, conn in kept]
        _idle.clear()
    for conn in conns:
        _close(conn)


def _close(conn: psycopg.Connection) -> None:
    with contextlib.suppress(psycopg.Error):
        conn.close()
