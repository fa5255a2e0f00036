"""Client-side counters for the benchmarks: statements sent to PostgreSQL, requests sent to Redis.

Enabled in a process by ``BENCH_COUNTS_DIR`` (a directory) when this module is imported: the
benchmark's own process imports it, a worker loads it with ``--include bench.counting``
(imported by the worker's main process before it forks its pool, so the pool inherits it).
Each process then counts into a file of its own, ``<dir>/<pid>.counts`` (a few 8-byte
counters, memory-mapped: an increment is no system call), and :func:`totals` adds the files.

What is counted, per process:

- ``platform_statements``: every ``execute``/``executemany`` of a psycopg cursor on a connection
  to the platform's database (the name in ``BENCH_PLATFORM_DB``): Django's queries and the
  engine's own statements on its lease session, one round trip each;
- ``platform_commits``: explicit ``COMMIT``s on such a connection of a transaction that ran
  something (Django's ``atomic`` blocks): each is two more round trips, the ``BEGIN`` psycopg
  sends before the transaction's first statement and the ``COMMIT``; a statement in autocommit
  mode commits on its own and is not counted here (``pg_stat_database.xact_commit`` counts
  both kinds, server side);
- ``source_statements``: the same for connections to any other database (a flow's sources);
- ``redis_requests``: every request a redis-py connection sends (``send_packed_command``): one
  command, or one pipeline of several (one round trip either way); Celery's Redis transport
  and result backend, and the platform's own Redis clients, all use redis-py.

With ``BENCH_STATEMENT_LOG`` set as well, each platform statement's first words and its time
are also appended to ``<dir>/<pid>.log`` (for finding where the time goes; slower).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIELDS = ("platform_statements", "platform_commits", "source_statements", "redis_requests")
_SIZE = 8 * len(FIELDS)
_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "map": None, "log": None}
_paused = threading.local()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Count nothing this thread sends meanwhile (a benchmark reading its counters)."""
    _paused.on = True
    try:
        yield
    finally:
        _paused.on = False


def _counter_map() -> mmap.mmap:
    """This process's counters (a fresh file after a fork)."""
    if _state["pid"] != os.getpid():
        directory = Path(os.environ["BENCH_COUNTS_DIR"])
        path = directory / f"{os.getpid()}.counts"
        with path.open("wb") as file:
            file.write(b"\0" * _SIZE)
        with path.open("r+b") as file:
            _state["map"] = mmap.mmap(file.fileno(), _SIZE)
        if os.environ.get("BENCH_STATEMENT_LOG"):
            _state["log"] = (directory / f"{os.getpid()}.log").open("a", buffering=1)
        _state["pid"] = os.getpid()
    return _state["map"]  # type: ignore[no-any-return]


def add(field: str, count: int = 1) -> None:
    if getattr(_paused, "on", False):
        return
    offset = 8 * FIELDS.index(field)
    with _lock:
        counters = _counter_map()
        (value,) = struct.unpack_from("q", counters, offset)
        struct.pack_into("q", counters, offset, value + count)


def totals(directory: str | Path) -> dict[str, int]:
    """The counters of every process that counted into ``directory``, added up."""
    sums = dict.fromkeys(FIELDS, 0)
    for path in Path(directory).glob("*.counts"):
        values = struct.unpack("q" * len(FIELDS), path.read_bytes()[:_SIZE])
        for field, value in zip(FIELDS, values, strict=True):
            sums[field] += value
    return sums


_WORDS = re.compile(r"\s+")


def _log(sql: Any, seconds: float) -> None:
    log = _state["log"]
    if log is not None:
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        words = " ".join(_WORDS.split(text.strip())[:8])[:100]
        log.write(f"{time.time():.6f}\t{seconds * 1000:.3f}\t{threading.get_ident()}\t{words}\n")


def _install() -> None:
    import psycopg
    import redis.connection

    platform_db = os.environ.get("BENCH_PLATFORM_DB", "")
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    commit = psycopg.Connection.commit

    def counted(cursor: Any) -> str:
        return (
            "platform_statements"
            if cursor.connection.info.dbname == platform_db
            else "source_statements"
        )

    def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        field = counted(self)
        add(field)
        started = time.perf_counter()
        try:
            return execute(self, query, *args, **kwargs)
        finally:
            if field == "platform_statements" and _state["log"] is not None:
                _log(query, time.perf_counter() - started)

    def counted_executemany(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        add(counted(self))
        return executemany(self, query, *args, **kwargs)

    def counted_commit(self: Any) -> None:
        idle = self.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if self.info.dbname == platform_db and not idle:
            add("platform_commits")
            _log("COMMIT", 0.0)
        commit(self)

    send = redis.connection.AbstractConnection.send_packed_command

    def counted_send(self: Any, command: Any, *args: Any, **kwargs: Any) -> None:
        add("redis_requests")
        send(self, command, *args, **kwargs)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted_executemany  # type: ignore[method-assign]
    psycopg.Connection.commit = counted_commit  # type: ignore[method-assign]
    redis.connection.AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]


def _log_tasks() -> None:
    """With the statement log: a line when each task starts and ends, with its arguments."""
    from celery.signals import task_postrun, task_prerun

    @task_prerun.connect(weak=False)
    def _started(task: Any = None, args: Any = None, **_kwargs: Any) -> None:
        with _lock:
            _counter_map()
            _log(f"TASK START {task.name if task else '?'} {list(args or [])[:2]}", 0.0)

    @task_postrun.connect(weak=False)
    def _ended(task: Any = None, args: Any = None, **_kwargs: Any) -> None:
        with _lock:
            _counter_map()
            _log(f"TASK END {task.name if task else '?'} {list(args or [])[:2]}", 0.0)


if os.environ.get("BENCH_COUNTS_DIR"):
    _install()
    if os.environ.get("BENCH_STATEMENT_LOG"):
        _log_tasks()
