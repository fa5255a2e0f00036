"""The one place that relies on the internals of django-celery-beat's ``DatabaseScheduler``.

``GuardedScheduler`` (``scheduling.beat``) changes when the scheduler reads its entries, when
celery's tick rebuilds its heap and how run counters are saved. That takes state those classes
keep in private members (``_schedule``, ``_initial_read``, ``_heap``, ``_dirty``), a private
method (``_is_due_failed``) and overrides of methods whose callers are internal (celery's
``tick`` calls ``schedules_equal`` and ``populate_heap``). Every such use is a member of
:class:`DatabaseSchedulerAdapter`, named for what it means; ``GuardedScheduler`` uses only those
names and the schedulers' public hooks.

:data:`RELIED_ON` lists the members of the installed packages the adapter and
``GuardedScheduler`` rely on, with the shape relied on. The adapter checks them when a scheduler
is created, and refuses to start on a version where one has gone or changed (beat would
otherwise run, and quietly miss edits or fire late); ``tests/scheduling/test_beat_adapter.py``
checks them, one test per member, plus the instance state and what ``tick`` does with it.
"""

from __future__ import annotations

import heapq
import inspect
import time
from dataclasses import dataclass
from importlib.metadata import version
from types import ModuleType
from typing import Any

import django_celery_beat.schedulers as beat_schedulers
from celery.beat import ScheduleEntry, Scheduler, event_t
from django.core.exceptions import ImproperlyConfigured
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry


@dataclass(frozen=True)
class Relied:
    """One member of an installed class or module, and the shape relied on: a method's
    parameter names in order, or the type of a class-level value."""

    owner: type | ModuleType
    name: str
    parameters: tuple[str, ...] | None = None
    kind: type | tuple[type, ...] | None = None

    @property
    def label(self) -> str:
        owner = self.owner
        if isinstance(owner, ModuleType):
            return f"{owner.__name__}.{self.name}"
        return f"{owner.__module__}.{owner.__qualname__}.{self.name}"

    def problem(self) -> str | None:
        """What changed about this member on the installed version, or ``None``."""
        try:
            value = inspect.getattr_static(self.owner, self.name)
        except AttributeError:
            return f"{self.label} is gone"
        if self.kind is not None and not isinstance(value, self.kind):
            return f"{self.label} is now {type(value).__name__}, not {_names(self.kind)}"
        if self.parameters is not None:
            if isinstance(value, classmethod | staticmethod):
                value = value.__func__
            if not callable(value):
                return f"{self.label} is no longer a method"
            found = tuple(inspect.signature(value).parameters)
            if found != self.parameters:
                return (
                    f"{self.label} takes ({', '.join(found)}), not ({', '.join(self.parameters)})"
                )
        return None


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


#: What the adapter and GuardedScheduler rely on in django-celery-beat and celery.
RELIED_ON: tuple[Relied, ...] = (
    # private state and methods, used only by DatabaseSchedulerAdapter
    Relied(DatabaseScheduler, "_schedule", kind=type(None)),  # the loaded entries, by name
    Relied(DatabaseScheduler, "_initial_read", kind=bool),  # True: the next read is a full one
    Relied(Scheduler, "_is_due_failed", parameters=("self", "entry")),
    # methods celery's tick calls, overridden by the adapter
    Relied(Scheduler, "tick", parameters=("self", "event_t", "min", "heappop", "heappush")),
    Relied(Scheduler, "schedules_equal", parameters=("self", "old_schedules", "new_schedules")),
    Relied(Scheduler, "populate_heap", parameters=("self", "event_t", "heapify")),
    Relied(Scheduler, "adjust", parameters=("self", "n", "drift")),
    # DatabaseScheduler's hooks GuardedScheduler overrides or calls
    Relied(DatabaseScheduler, "schedule", kind=property),
    Relied(DatabaseScheduler, "schedule_changed", parameters=("self",)),
    Relied(DatabaseScheduler, "all_as_schedule", parameters=("self",)),
    Relied(DatabaseScheduler, "enabled_models", parameters=("self",)),
    Relied(DatabaseScheduler, "enabled_models_qs", parameters=("self",)),
    Relied(DatabaseScheduler, "reserve", parameters=("self", "entry")),
    Relied(DatabaseScheduler, "sync", parameters=("self",)),
    Relied(DatabaseScheduler, "install_default_entries", parameters=("self", "data")),
    Relied(DatabaseScheduler, "update_from_dict", parameters=("self", "mapping")),
    Relied(beat_schedulers, "SCHEDULE_SYNC_MAX_INTERVAL", kind=(int, float)),
    # the entries GuardedScheduler builds (FlowScheduleEntry)
    Relied(ModelEntry, "__init__", parameters=("self", "model", "app")),
    Relied(ModelEntry, "__next__", parameters=("self",)),
    Relied(ScheduleEntry, "default_now", parameters=("self",)),
)

#: State a scheduler instance holds from ``__init__`` on: its name and the type of its value.
INSTANCE_STATE: dict[str, type | tuple[type, ...]] = {
    "_heap": type(None),  # celery: None until populate_heap; tick rebuilds it while None
    "_dirty": set,  # django-celery-beat: names of entries whose run counters to save
}

#: The layout of celery's heap events GuardedScheduler's heap is built with.
EVENT_FIELDS = ("time", "priority", "entry")


def incompatibilities() -> list[str]:
    """What changed, on the installed versions, among the members relied on (empty: none)."""
    problems = [problem for member in RELIED_ON if (problem := member.problem()) is not None]
    if tuple(event_t._fields) != EVENT_FIELDS:
        problems.append(f"celery.beat.event_t has fields {event_t._fields}, not {EVENT_FIELDS}")
    return problems


def instance_incompatibilities(scheduler: DatabaseScheduler) -> list[str]:
    """What changed about the state a freshly created scheduler holds (see INSTANCE_STATE)."""
    problems = []
    for name, kind in INSTANCE_STATE.items():
        if name not in vars(scheduler):
            problems.append(f"a DatabaseScheduler no longer sets {name} in __init__")
        elif not isinstance(vars(scheduler)[name], kind):
            found = type(vars(scheduler)[name]).__name__
            problems.append(f"a DatabaseScheduler's {name} is {found}, not {_names(kind)}")
    return problems


class DatabaseSchedulerAdapter(DatabaseScheduler):
    """``DatabaseScheduler`` with its internals behind named members (see the module docstring).

    Refuses to start (``ImproperlyConfigured``) on a django-celery-beat or celery whose members
    differ from :data:`RELIED_ON`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        problems = incompatibilities()
        if problems:
            raise ImproperlyConfigured(
                f"scheduling.beat needs the scheduler internals of django-celery-beat 2.9 "
                f"(installed: {version('django-celery-beat')}, celery {version('celery')}): "
                + "; ".join(problems)
            )
        self._heap_source: dict[str, ModelEntry] | None = None
        super().__init__(*args, **kwargs)

    # --- the loaded entries ------------------------------------------------------------------

    @property
    def entries(self) -> dict[str, ModelEntry] | None:
        """The entries loaded, by name (``None`` before the first read)."""
        return self._schedule  # type: ignore[no-any-return]

    @entries.setter
    def entries(self, entries: dict[str, ModelEntry] | None) -> None:
        self._schedule = entries

    @property
    def full_read_pending(self) -> bool:
        """Whether the next look at the schedule reads every entry again."""
        return bool(self._initial_read)

    @full_read_pending.setter
    def full_read_pending(self, pending: bool) -> None:
        self._initial_read = pending

    # --- celery's heap -----------------------------------------------------------------------

    def forget_heap(self) -> None:
        """Have celery's next tick rebuild the heap (it calls :meth:`populate_heap`)."""
        self._heap = None

    @property
    def heap_built(self) -> bool:
        return self._heap is not None

    def schedules_equal(self, *args: Any, **kwargs: Any) -> bool:
        """What celery's tick asks, every tick, to know whether the heap is still good; celery
        compares every entry (O(n) per tick with thousands of them). Here the heap is good
        while it was built from the entries dict now loaded and not forgotten since."""
        return self._heap is not None and self._schedule is self._heap_source

    def populate_heap(self, event_t: Any = event_t, heapify: Any = heapq.heapify) -> None:
        """Celery's populate_heap over the loaded entries, reading the clock once instead of
        once per entry."""
        now = time.time()
        heap = []
        for entry in (self._schedule or {}).values():
            try:
                is_due, delay = entry.is_due()
            except Exception:  # noqa: BLE001 - one broken entry must not stop beat (as celery)
                is_due, delay = self._is_due_failed(entry)
            heap.append(event_t(now + (0 if is_due else self.adjust(delay) or 0), 5, entry))
        heapify(heap)
        self._heap = heap
        self._heap_source = self._schedule

    # --- run counters to save ----------------------------------------------------------------

    def mark_for_save(self, name: str) -> None:
        """The entry ``name`` sent: its run counters are saved at the next :meth:`sync`."""
        self._dirty.add(name)

    def take_marked(self) -> set[str]:
        """The names marked for saving, unmarking them."""
        names: set[str] = self._dirty
        self._dirty = set()
        return names

    def mark_again(self, names: set[str]) -> None:
        """Mark again names whose save failed (retried at the next sync)."""
        self._dirty |= names
