"""Keep each FlowSchedule's django-celery-beat ``PeriodicTask`` in step with it.

The PeriodicTask is the schedule's beat entry: task ``scheduling.fire`` with the schedule's id,
enabled with it, and a celery schedule mirroring its timing (crontab in the schedule's timezone,
interval, or clocked) so that the django-celery-beat admin reads right and a plain
``DatabaseScheduler`` still wakes at about the right times. ``scheduling.beat.GuardedScheduler``
times the entry from the schedule's own math instead; either way the fire task decides what is
due. Saving a PeriodicTask bumps ``PeriodicTasks``, which makes a running beat reload; every
bulk change here ends with ``PeriodicTasks.update_changed()`` for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from flowplatform.audit.models import Action
from flowplatform.audit.record import record
from scheduling.cron import parse_cron

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from scheduling.models import FlowSchedule

FIRE_TASK = "scheduling.fire"


def task_name(schedule: FlowSchedule) -> str:
    return f"flow schedule {schedule.pk}"


def entry_fields(schedule: FlowSchedule, rows: dict[Any, Any] | None = None) -> dict[str, Any]:
    """The PeriodicTask fields that mirror ``schedule`` (timing rows are fetched or created).

    ``rows`` memoises timing rows across calls of one bulk operation.
    """
    fields: dict[str, Any] = {
        "name": task_name(schedule),
        "task": FIRE_TASK,
        "args": "[]",
        "kwargs": json.dumps({"schedule_id": schedule.pk}),
        "enabled": schedule.enabled,
        "queue": settings.FLOWPLATFORM_SCHEDULE_QUEUE or None,
        "start_time": schedule.start_at,
        "one_off": schedule.kind == "one_off",
        "description": f"{schedule.flow.slug}: {schedule.summary}",
        "interval": None,
        "crontab": None,
        "clocked": None,
        "solar": None,
    }
    key = (schedule.kind, schedule.cron, schedule.timezone, schedule.every_seconds, schedule.at)
    if rows is None or key not in rows:
        timing = _timing(schedule)
        if rows is None:
            return {**fields, **timing}
        rows[key] = timing
    return {**fields, **rows[key]}


def _timing(schedule: FlowSchedule) -> dict[str, Any]:
    if schedule.kind == "cron":
        spec = parse_cron(schedule.cron).fields()
        crontab = _shared_row(
            CrontabSchedule,
            minute=spec["minute"],
            hour=spec["hour"],
            day_of_month=spec["day_of_month"],
            month_of_year=spec["month"],
            day_of_week=spec["day_of_week"],
            timezone=schedule.timezone,
        )
        return {"crontab": crontab}
    if schedule.kind == "interval":
        every = schedule.every_seconds or 1
        return {
            "interval": _shared_row(IntervalSchedule, every=every, period=IntervalSchedule.SECONDS)
        }
    return {"clocked": _shared_row(ClockedSchedule, clocked_time=schedule.at)}


def _shared_row(model: Any, **fields: Any) -> Any:
    """An existing timing row with these fields, or a new one (not get_or_create: django-celery-beat
    tables may already hold duplicates, which get() would refuse)."""
    return model.objects.filter(**fields).first() or model.objects.create(**fields)


def sync_periodic_task(schedule: FlowSchedule, force: bool = False) -> PeriodicTask:
    """Create or update the schedule's PeriodicTask; saves (and so wakes beat) only on a change.

    ``force`` saves even when the PeriodicTask looks the same (the timing moved in a way it
    does not show, e.g. a new end), so that beat reloads the entry.
    """
    from scheduling.models import FlowSchedule

    fields = entry_fields(schedule)
    with transaction.atomic():
        task = schedule.periodic_task
        if task is None:
            task = PeriodicTask.objects.filter(name=fields["name"]).first() or PeriodicTask()
        changed = task.pk is None or any(
            _current(task, name) != _value(value) for name, value in fields.items()
        )
        if changed or force:
            for name, value in fields.items():
                setattr(task, name, value)
            task.save()
        if schedule.periodic_task_id != task.pk:
            schedule.periodic_task = task
            FlowSchedule.objects.filter(pk=schedule.pk).update(periodic_task=task)
    return task


_FOREIGN_KEYS = ("interval", "crontab", "clocked", "solar")


def _current(task: PeriodicTask, name: str) -> Any:
    # Compare foreign keys by id: reading the related rows would cost a query each.
    return getattr(task, f"{name}_id") if name in _FOREIGN_KEYS else getattr(task, name)


def _value(value: Any) -> Any:
    return value.pk if hasattr(value, "pk") else value


def set_enabled(schedules: QuerySet[FlowSchedule], enabled: bool, reason: str = "") -> int:
    """Enable or disable many schedules and their beat entries in two UPDATEs (``reason``:
    recorded in each audit entry)."""
    from scheduling.models import FlowSchedule

    with transaction.atomic():
        ids = list(schedules.values_list("pk", flat=True))
        # A bulk UPDATE passes no model hook: the audit entries are written here.
        flipped = list(
            FlowSchedule.objects.filter(pk__in=ids).exclude(enabled=enabled).select_related("flow")
        )
        count = FlowSchedule.objects.filter(pk__in=ids).update(enabled=enabled)
        PeriodicTask.objects.filter(flow_schedule__in=ids).update(enabled=enabled)
        PeriodicTasks.update_changed()
        for schedule in flipped:
            details: dict[str, Any] = {"fields": ["enabled"]}
            if reason:
                details["reason"] = reason
            record(Action.CHANGE, schedule, details=details)
    return count


def bulk_create_entries(schedules: Iterable[FlowSchedule]) -> int:
    """Create the PeriodicTasks of many saved schedules at once (imports, benchmarks)."""
    from scheduling.models import FlowSchedule

    schedules = list(schedules)
    rows: dict[Any, Any] = {}
    with transaction.atomic():
        tasks = PeriodicTask.objects.bulk_create(
            (PeriodicTask(**entry_fields(schedule, rows)) for schedule in schedules),
            batch_size=1000,
        )
        for schedule, task in zip(schedules, tasks, strict=True):
            schedule.periodic_task = task
        FlowSchedule.objects.bulk_update(schedules, ["periodic_task"], batch_size=1000)
        PeriodicTasks.update_changed()
    return len(tasks)


def resync_all() -> int:
    """Repair every schedule's beat entry (``manage.py schedules --sync``)."""
    from scheduling.models import FlowSchedule

    count = 0
    for schedule in FlowSchedule.objects.select_related("flow", "periodic_task"):
        sync_periodic_task(schedule)
        count += 1
    PeriodicTasks.update_changed()
    return count
