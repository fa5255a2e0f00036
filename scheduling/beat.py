"""``GuardedScheduler``: django-celery-beat's DatabaseScheduler, made exact, cheap and single.

``celery -A flowplatform beat -S scheduling.beat:GuardedScheduler`` (the ``CELERY_BEAT_SCHEDULER``
default). Over the DatabaseScheduler it:

- times each FlowSchedule's entry with the schedule's own math (``scheduling.timetable``: cron
  on the wall clock of its timezone, DST handled) instead of celery's crontab, and sends the
  fire time it meant (``due``) so the fire task handles exactly that interval;
- lets only the holder of a Redis lease send (``scheduling.leader``): a second beat stands by and
  takes over within the lease TTL when the first dies;
- keeps ticks cheap with thousands of entries: it looks at ``PeriodicTasks`` for edits at most
  once a second (not on every tick), applies an edit by reloading only the entries that changed
  (not all of them), rebuilds its heap only after a change (never by comparing every entry on
  every tick), loads entries with their FlowSchedule in one query, and writes run counters back
  in bulk;
- adds the ``scheduling.drain`` entry that starts intervals waiting for a free slot.

It touches django-celery-beat's internals only through ``scheduling.beat_adapter``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import BaseSchedule, schedstate
from celery.utils.log import get_logger
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import SCHEDULE_SYNC_MAX_INTERVAL, ModelEntry

from scheduling.beat_adapter import DatabaseSchedulerAdapter
from scheduling.leader import LeaderLease
from scheduling.timetable import Timetable

logger = get_logger(__name__)

DRAIN_ENTRY = "scheduling.drain"
DRAIN_EVERY_S = 5.0
#: Re-check interval for an entry that will never fire again (until the next reload).
IDLE_S = 3600.0
#: celery's Scheduler.adjust() wakes 10 ms early; delays we return make up for it, so that
#: beat wakes when the entry is due rather than spinning through the last 10 ms.
CELERY_DRIFT_S = 0.010
#: Rows changed this long before the newest change seen are re-read (writers' clocks differ).
CHANGE_MARGIN = timedelta(seconds=2)


class FlowScheduleTiming(BaseSchedule):
    """The ``schedule`` of a FlowSchedule entry: its timetable, for equality and display."""

    def __init__(self, timetable: Timetable, app: Any = None) -> None:
        super().__init__(app=app)
        self.timetable = timetable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowScheduleTiming) and other.timetable == self.timetable

    def __hash__(self) -> int:
        return hash(self.timetable)

    def __repr__(self) -> str:
        return f"<timetable {self.timetable!r}>"


class FlowScheduleEntry(ModelEntry):
    """A beat entry timed by a FlowSchedule's timetable rather than the PeriodicTask's.

    ``reference``: fire times at or before it are done (sent by this beat, or recorded in the
    database by the fire task); the entry is due once a later fire time has passed.
    """

    def __init__(self, model: PeriodicTask, app: Any = None) -> None:
        super().__init__(model, app=app)
        flow_schedule = model.flow_schedule  # type: ignore[attr-defined]
        self.schedule_id: int = flow_schedule.pk
        self.timetable: Timetable = flow_schedule.timetable()
        self.reference: datetime = flow_schedule.fired_through()
        self.schedule = FlowScheduleTiming(self.timetable, self.app)
        self.base_kwargs = {"schedule_id": flow_schedule.pk}
        self.kwargs = dict(self.base_kwargs)
        self.due_at: datetime | None = None

    def is_due(self) -> schedstate:
        now = datetime.now(UTC)
        upcoming = self.timetable.next_after(self.reference)
        if upcoming is None:
            return schedstate(False, IDLE_S)
        if upcoming > now:
            return schedstate(False, (upcoming - now).total_seconds() + CELERY_DRIFT_S)
        # Late (beat was down or busy): send the latest fire time; catch-up is the fire task's.
        due = self.timetable.latest_at_or_before(now) or upcoming
        self.due_at = due
        self.kwargs = {**self.base_kwargs, "due": due.isoformat()}
        following = self.timetable.next_after(max(due, now))
        if following is None:
            return schedstate(True, IDLE_S)
        return schedstate(True, (following - now).total_seconds() + CELERY_DRIFT_S)

    def __next__(self) -> FlowScheduleEntry:
        new = object.__new__(type(self))  # not copy.copy: ScheduleEntry.__reduce__ re-inits
        new.__dict__.update(self.__dict__)
        if self.due_at is not None and self.due_at > self.reference:
            new.reference = self.due_at
        new.due_at = None
        self.model.last_run_at = self.default_now()
        self.model.total_run_count += 1
        self.model.no_changes = True
        new.last_run_at, new.total_run_count = self.model.last_run_at, self.model.total_run_count
        return new

    next = __next__


class GuardedScheduler(DatabaseSchedulerAdapter):
    """See the module docstring."""

    #: Seconds between two looks at PeriodicTasks for edits.
    change_check_interval = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lease = _make_lease()
        self._leading = False
        self._last_change_check = 0.0
        self._full_read_at = 0.0
        self._watermark: datetime | None = None
        super().__init__(*args, **kwargs)

    # --- one active beat ---------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._lead():
            assert self._lease is not None
            return self._lease.retry_interval
        delay = super().tick(*args, **kwargs)
        if self._lease is not None:
            delay = min(delay, self._lease.renew_in())
        return delay

    def _lead(self) -> bool:
        if self._lease is None:
            return True
        held = self._lease.hold()
        if held and not self._leading:
            logger.info("beat: holding the beat lease (%s); sending", self._lease.token)
            if time.monotonic() - self._full_read_at > 1.0:
                # The previous holder may have fired since this beat last read the schedule.
                self.full_read_pending = True
        elif not held and self._leading:
            logger.warning("beat: lost the beat lease; standing by")
        self._leading = held
        return held

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lease is not None:
                self._lease.release()

    # --- the schedule: full reads now and then, changed entries in between --------------------

    @property
    def schedule(self) -> dict[str, ModelEntry]:
        now = time.monotonic()
        try:
            if (
                self.full_read_pending
                or self.entries is None
                or now - self._full_read_at >= SCHEDULE_SYNC_MAX_INTERVAL
            ):
                self.sync()
                self.entries = self.all_as_schedule()
                self.full_read_pending = False
                self.forget_heap()
            elif self.schedule_changed():
                logger.info("DatabaseScheduler: Schedule changed.")
                self.sync()
                if self._apply_changes():
                    self.forget_heap()
        except (DatabaseError, InterfaceError) as exc:
            # Keep sending from what is loaded; read everything again once the database is back.
            logger.warning("beat: could not read the schedule (%s); retrying", exc)
            self.full_read_pending = True
        return self.entries if self.entries is not None else {}

    def schedule_changed(self) -> bool:
        now = time.monotonic()
        if now - self._last_change_check < self.change_check_interval:
            return False
        self._last_change_check = now
        return bool(super().schedule_changed())

    def all_as_schedule(self) -> dict[str, ModelEntry]:
        entries = self._load(self.enabled_models(), self.entries or {})
        self._full_read_at = time.monotonic()
        self._watermark = max((e.model.date_changed for e in entries.values()), default=None)
        return entries

    def _apply_changes(self) -> bool:
        """Reload the entries whose PeriodicTask was created, changed, enabled, disabled or
        deleted since the last read; True when the schedule changed."""
        loaded = self.entries
        assert loaded is not None
        enabled = dict(self.Model.objects.filter(enabled=True).values_list("name", "date_changed"))
        gone = [name for name in loaded if name not in enabled]
        for name in gone:
            del loaded[name]
        since = self._watermark - CHANGE_MARGIN if self._watermark is not None else None
        stale = [
            name
            for name, changed in enabled.items()
            if name not in loaded or since is None or changed is None or changed >= since
        ]
        if stale:
            models = self.enabled_models_qs().filter(name__in=stale)
            loaded.update(self._load(models, loaded))
        if enabled:
            self._watermark = max((c for c in enabled.values() if c is not None), default=None)
        return bool(gone or stale)

    def _load(self, models: Any, previous: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        entries: dict[str, ModelEntry] = {}
        for model in models:
            try:
                if _has_flow_schedule(model):
                    entry: ModelEntry = FlowScheduleEntry(model, app=self.app)
                else:
                    entry = self.Entry(model, app=self.app)
            except (ValueError, KeyError) as exc:
                logger.error("beat: skipping entry %s: %s", model.name, exc)
                continue
            old = previous.get(model.name)
            if (
                isinstance(entry, FlowScheduleEntry)
                and isinstance(old, FlowScheduleEntry)
                and old.timetable == entry.timetable
                and old.reference > entry.reference
            ):
                entry.reference = old.reference  # sent, not yet recorded by the fire task
            entries[model.name] = entry
        return entries

    def enabled_models_qs(self) -> Any:
        # Every enabled entry (no hour-window pre-filter: our timing is not celery's crontab),
        # with its FlowSchedule in the same query and without the columns beat never reads.
        return (
            self.Model.objects.enabled()
            .select_related("flow_schedule")
            .defer("description", "flow_schedule__params", "flow_schedule__description")
        )

    # --- what was sent: kept across reloads, counters saved in bulk ---------------------------

    def reserve(self, entry: ModelEntry) -> ModelEntry:
        new_entry = next(entry)
        if self.entries is not None and entry.name in self.entries:
            self.entries[entry.name] = new_entry  # keep what was sent across reloads
        self.mark_for_save(new_entry.name)
        return new_entry

    def sync(self) -> None:
        """Write run counters of the entries that sent, in bulk (not two queries per entry)."""
        loaded = self.entries
        if loaded is None:
            return
        names = self.take_marked()
        if not names:
            return
        models = [loaded[name].model for name in names if name in loaded]
        try:
            close_old_connections()
            PeriodicTask.objects.bulk_update(
                models, ["last_run_at", "total_run_count"], batch_size=500
            )
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("beat: could not save run counters (%s); retrying later", exc)
            self.mark_again(names)

    def install_default_entries(self, data: Any) -> None:
        super().install_default_entries(data)
        self.update_from_dict(
            {
                DRAIN_ENTRY: {
                    "task": "scheduling.drain",
                    "schedule": timedelta(seconds=DRAIN_EVERY_S),
                    "options": {
                        "expire_seconds": int(DRAIN_EVERY_S * 6),
                        "queue": settings.FLOWPLATFORM_SCHEDULE_QUEUE or None,
                    },
                }
            }
        )


def _has_flow_schedule(model: PeriodicTask) -> bool:
    try:
        return model.flow_schedule is not None  # type: ignore[attr-defined]
    except PeriodicTask.flow_schedule.RelatedObjectDoesNotExist:  # type: ignore[attr-defined]
        return False


def _make_lease() -> LeaderLease | None:
    url = settings.FLOWPLATFORM_BEAT_LOCK_URL or settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        logger.warning("beat: no Redis to hold the beat lease; run a single beat process")
        return None
    return LeaderLease(
        url, settings.FLOWPLATFORM_BEAT_LOCK_KEY, float(settings.FLOWPLATFORM_BEAT_LOCK_TTL_S)
    )
