"""Values a node builds once per worker process and reuses across the node runs of one run.

When a node runs once per partition, several partitions of one run often execute in the same
worker process one after the other, and each would build the same thing from the same stored
input: ``join``'s right side is the case. A :class:`RunCache` keeps what was built, keyed by
the run and what it was built from (the node, the input's stored reference, the config that
shapes it), so that the next partition of that run in that process reuses it.

It is bounded by count, not by bytes: it holds at most ``size`` values, and drops the least
recently used one *before* building another, so that a process never holds more than ``size``
of them at once (plus one being used by a thread that still holds it). A run's values are
dropped by :func:`forget_run` (the engine calls it in a worker process once it knows the run
ended: when a task of another run starts there, or when the idle process finds the runs of
:func:`held_runs` ended), or when another run's value replaces them. Nothing here survives the
process.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_CACHES: weakref.WeakSet[RunCache[object]] = weakref.WeakSet()


class RunCache(Generic[V]):
    """At most ``size`` values of this process, each belonging to one run."""

    def __init__(self, name: str, size: int = 1) -> None:
        if size < 1:
            raise ValueError("a run cache holds at least one value")
        self.name = name
        self.size = size
        #: How many values were built (what a test counts).
        self.builds = 0
        self._held: OrderedDict[tuple[str, Hashable], V] = OrderedDict()
        self._lock = threading.Lock()
        _CACHES.add(self)  # type: ignore[arg-type]

    def get(self, run_id: str, key: Hashable, build: Callable[[], V]) -> V:
        """The value held for ``(run_id, key)``, else ``build()``'s, then held. A value that
        fails to build is not held (the exception propagates; the next call builds again).
        Built under the cache's lock: threads wanting the same value build it once."""
        entry = (run_id, key)
        with self._lock:
            if entry in self._held:
                self._held.move_to_end(entry)
                return self._held[entry]
            while len(self._held) >= self.size:
                self._held.popitem(last=False)  # before building: never size + 1 at once
            value = build()
            self.builds += 1
            self._held[entry] = value
            return value

    def forget_run(self, run_id: str, *, blocking: bool = True) -> int:
        """Drop the values of ``run_id``; returns how many were held. With ``blocking=False``
        a cache busy building a value (its lock held) drops nothing and returns 0 at once."""
        if not self._lock.acquire(blocking=blocking):
            return 0
        try:
            gone = [entry for entry in self._held if entry[0] == run_id]
            for entry in gone:
                del self._held[entry]
            return len(gone)
        finally:
            self._lock.release()

    def runs(self, *, blocking: bool = True) -> set[str]:
        """The runs this cache holds values for. With ``blocking=False`` a cache busy building
        a value (its lock held) answers none at once."""
        if not self._lock.acquire(blocking=blocking):
            return set()
        try:
            return {run_id for run_id, _key in self._held}
        finally:
            self._lock.release()

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def __len__(self) -> int:
        return len(self._held)


def forget_run(run_id: str, *, blocking: bool = True) -> int:
    """Drop every value this process holds for ``run_id``, in every cache: what the engine calls
    in a worker process when the run has ended. Returns how many values were dropped. With
    ``blocking=False`` (the heartbeat thread, which must never wait behind a build) a cache
    busy building is skipped: its values are dropped by a later call."""
    return sum(cache.forget_run(run_id, blocking=blocking) for cache in list(_CACHES))


def held_runs(*, blocking: bool = True) -> set[str]:
    """The runs this process holds values for, in any cache (the engine asks, when the process
    is idle, which of them have ended). With ``blocking=False`` a cache busy building is left
    out."""
    return {run_id for cache in list(_CACHES) for run_id in cache.runs(blocking=blocking)}


__all__ = ["RunCache", "forget_run", "held_runs"]
