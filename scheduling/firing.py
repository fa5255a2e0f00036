"""Turning due intervals into runs: at most once per (schedule, interval), overlap policy applied.

``fire_schedule`` is what beat's message runs; ``backfill`` and ``drain_waiting`` share
``handle_interval``, which in one transaction (flow and schedule rows locked, in that order):

1. records the interval as a ``ScheduledRun``; the unique (schedule, interval_start) constraint
   makes a duplicate firing roll back whole, whichever process it came from;
2. applies the overlap policy: ``skip`` records the interval as skipped while the schedule has
   ``max_active_runs`` active runs; otherwise the interval waits for a slot;
3. starts waiting intervals, oldest first, while the schedule has slots (``allow``: always),
   through ``flows.services.start_run`` with the data interval; the run is dispatched when the
   transaction commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from flows.access import AccessDenied
from flows.models import ACTIVE_RUN_STATUSES, Flow, Trigger
from flows.services import DispatchError, start_run
from flows.transitions import clip_error
from flows.validation import FlowValidationError
from scheduling.access import orphaned_reason
from scheduling.models import (
    FlowSchedule,
    OverlapPolicy,
    ScheduledRun,
    ScheduledRunState,
    ScheduleKind,
)

logger = logging.getLogger("flowplatform.scheduling")

#: How far ahead of the worker's clock a beat's ``due`` may be (clocks of two hosts differ).
CLOCK_SKEW = timedelta(seconds=60)
#: Most missed intervals one firing catches up; the next firing goes on from there.
MAX_CATCHUP = 1000
#: Most intervals one backfill may cover.
MAX_BACKFILL = 10000


@dataclass
class Outcome:
    """What happened to the intervals handled in one call."""

    started: list[ScheduledRun] = field(default_factory=list)
    waiting: list[ScheduledRun] = field(default_factory=list)
    skipped: list[ScheduledRun] = field(default_factory=list)
    failed: list[ScheduledRun] = field(default_factory=list)
    duplicates: list[tuple[datetime, datetime]] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        for name in ("started", "waiting", "skipped", "failed", "duplicates"):
            getattr(self, name).extend(getattr(other, name))


def fire_schedule(
    schedule_id: int, due: datetime | None = None, now: datetime | None = None
) -> Outcome:
    """Fire the interval due now (``due``: the fire time beat meant), plus missed ones with
    catch-up. Safe to call any number of times for the same fire time."""
    now = now or timezone.now()
    outcome = Outcome()
    schedule = FlowSchedule.objects.select_related("flow").filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled:
        return outcome
    for fire_time in due_fire_times(schedule, due, now):
        start, end = schedule.timetable().interval_for(fire_time)
        outcome.add(handle_interval(schedule, start, end, Trigger.SCHEDULE))
    return outcome


def due_fire_times(schedule: FlowSchedule, due: datetime | None, now: datetime) -> list[datetime]:
    """The fire times to handle now, oldest first."""
    timetable = schedule.timetable()
    target: datetime | None
    if due is not None and due <= now + CLOCK_SKEW and timetable.is_fire_time(due):
        target = due
    else:
        target = timetable.latest_at_or_before(now)
    if target is None:
        return []
    if schedule.kind == ScheduleKind.ONE_OFF:
        return [target]
    if target <= schedule.timing_changed_at:
        return []  # a fire time of the schedule as it was before its last edit
    if not schedule.catchup:
        return [target]
    missed = timetable.fire_times(schedule.fired_through(), target, MAX_CATCHUP + 1)
    if len(missed) > MAX_CATCHUP:
        logger.warning(
            "schedule %s: more than %d missed intervals; catching up the oldest first",
            schedule.pk,
            MAX_CATCHUP,
        )
        return missed[:MAX_CATCHUP]
    return missed if target in missed else [*missed, target]


def handle_interval(
    schedule: FlowSchedule, start: datetime, end: datetime, trigger: str
) -> Outcome:
    """Record one interval and start, queue or skip its run (see the module docstring)."""
    outcome = Outcome()
    try:
        with transaction.atomic():
            if not _lock(schedule):
                return outcome
            if ScheduledRun.objects.filter(schedule=schedule, interval_start=start).exists():
                outcome.duplicates.append((start, end))
                return outcome
            state = ScheduledRunState.WAITING
            if (
                trigger == Trigger.SCHEDULE
                and schedule.overlap == OverlapPolicy.SKIP
                and active_runs(schedule) >= schedule.max_active_runs
            ):
                state = ScheduledRunState.SKIPPED
            try:
                with transaction.atomic():
                    record = ScheduledRun.objects.create(
                        schedule=schedule,
                        interval_start=start,
                        interval_end=end,
                        trigger=trigger,
                        state=state,
                    )
            except IntegrityError:
                outcome.duplicates.append((start, end))
                return outcome
            if trigger == Trigger.SCHEDULE:
                FlowSchedule.objects.filter(pk=schedule.pk).update(
                    last_fired_at=Greatest(Coalesce("last_fired_at", Value(end)), Value(end))
                )
            if state == ScheduledRunState.SKIPPED:
                logger.info(
                    "schedule %s: interval %s skipped, earlier runs still active",
                    schedule.pk,
                    start,
                )
                outcome.skipped.append(record)
            else:
                outcome.add(_start_waiting(schedule))
                if record.pk not in {r.pk for r in outcome.started + outcome.failed}:
                    outcome.waiting.append(record)
    except DispatchError as exc:
        logger.error("schedule %s: %s", schedule.pk, exc)  # the run is recorded and failed
    return outcome


def drain_waiting(schedule_ids: list[int] | None = None) -> Outcome:
    """Start waiting intervals of schedules that have free slots again."""
    outcome = Outcome()
    waiting = ScheduledRun.objects.filter(state=ScheduledRunState.WAITING)
    if schedule_ids is not None:
        waiting = waiting.filter(schedule_id__in=schedule_ids)
    ids = sorted(set(waiting.values_list("schedule_id", flat=True)))
    for schedule in FlowSchedule.objects.select_related("flow").filter(pk__in=ids):
        try:
            with transaction.atomic():
                if _lock(schedule):
                    outcome.add(_start_waiting(schedule))
        except DispatchError as exc:
            logger.error("schedule %s: %s", schedule.pk, exc)
    return outcome


def backfill(schedule: FlowSchedule, start: datetime, end: datetime) -> Outcome:
    """Handle every interval of ``schedule`` lying within ``[start, end]``, oldest first.

    Intervals already handled count as duplicates; beyond ``max_active_runs`` the others wait
    (a backfill never skips). Raises ValueError for a one-off schedule or too wide a range.
    """
    if schedule.kind == ScheduleKind.ONE_OFF:
        raise ValueError("a one-off schedule has no intervals to backfill")
    intervals = backfill_intervals(schedule, start, end)
    outcome = Outcome()
    for interval_start, interval_end in intervals:
        outcome.add(handle_interval(schedule, interval_start, interval_end, Trigger.BACKFILL))
    return outcome


def backfill_intervals(
    schedule: FlowSchedule, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The data intervals of ``schedule`` within ``[start, end]`` (start/end of the schedule
    itself do not apply: a backfill names its range)."""
    if end <= start:
        raise ValueError("--to must be after --from")
    timetable = schedule.timetable(bounded=False)
    fire_times = timetable.fire_times(start - timedelta(microseconds=1), end, MAX_BACKFILL + 2)
    intervals = [timetable.interval_for(t) for t in fire_times]
    intervals = [(s, e) for s, e in intervals if s >= start]
    if len(intervals) > MAX_BACKFILL:
        raise ValueError(
            f"the range covers more than {MAX_BACKFILL} intervals; backfill it in parts"
        )
    return intervals


def active_runs(schedule: FlowSchedule) -> int:
    return ScheduledRun.objects.filter(
        schedule=schedule, run__status__in=ACTIVE_RUN_STATUSES
    ).count()


def _lock(schedule: FlowSchedule) -> bool:
    """Lock the flow, then the schedule (importflow locks in the same order); False if gone."""
    Flow.objects.select_for_update().filter(pk=schedule.flow_id).first()
    locked = FlowSchedule.objects.select_for_update().filter(pk=schedule.pk).first()
    if locked is None:
        return False
    schedule.params, schedule.overlap = locked.params, locked.overlap
    schedule.max_active_runs = locked.max_active_runs
    schedule.owner_id, schedule.run_as_operator = locked.owner_id, locked.run_as_operator
    return True


def _start_waiting(schedule: FlowSchedule) -> Outcome:
    """Start waiting intervals, oldest first, while slots are free (the caller holds the locks)."""
    outcome = Outcome()
    waiting = ScheduledRun.objects.filter(
        schedule=schedule, state=ScheduledRunState.WAITING
    ).order_by("interval_start")
    if schedule.overlap != OverlapPolicy.ALLOW:
        slots = schedule.max_active_runs - active_runs(schedule)
        if slots <= 0:
            return outcome
        waiting = waiting[:slots]
    for record in waiting:
        orphaned = orphaned_reason(schedule)
        if orphaned is not None:
            logger.warning("schedule %s: interval not run: %s", schedule.pk, orphaned)
            _fail(record, orphaned, outcome)
            continue
        try:
            with transaction.atomic():
                run = start_run(
                    schedule.flow,
                    params=dict(schedule.params),
                    trigger=record.trigger,
                    interval_start=record.interval_start,
                    interval_end=record.interval_end,
                    user=schedule.owner,  # None here: run_as_operator (set up by an operator)
                )
        except AccessDenied as exc:
            logger.warning("schedule %s: interval not run: %s", schedule.pk, exc)
            _fail(record, str(exc), outcome)
            continue
        except FlowValidationError as exc:
            logger.warning("schedule %s: flow is invalid, interval not run: %s", schedule.pk, exc)
            _fail(record, str(exc), outcome)
            continue
        record.run, record.state, record.started_at = run, ScheduledRunState.STARTED, run.created_at
        record.save(update_fields=["run", "state", "started_at"])
        outcome.started.append(record)
    return outcome


def _fail(record: ScheduledRun, error: str, outcome: Outcome) -> None:
    """The interval will not run: failed, with why (clipped as a run's error is)."""
    record.state, record.error = ScheduledRunState.FAILED, clip_error(error)
    record.save(update_fields=["state", "error"])
    outcome.failed.append(record)
