"""Flow schedules, and the record of every interval they fired (the idempotency key)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.timezone import now as current_time
from django_celery_beat.models import PeriodicTask

from flowplatform.jsonfields import OrderedJSONField
from flows.models import Flow, FlowRun, Trigger
from scheduling.cron import parse_cron
from scheduling.durations import format_every
from scheduling.timetable import CronTimetable, IntervalTimetable, OneOffTimetable, Timetable

#: Fields whose change moves the schedule's fire times: a change restarts its count from "now".
TIMING_FIELDS = ("kind", "cron", "timezone", "every_seconds", "at", "start_at", "end_at")


class ScheduleKind(models.TextChoices):
    CRON = "cron", "cron"
    INTERVAL = "interval", "interval"
    ONE_OFF = "one_off", "one-off"


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "skip while earlier runs are active"
    QUEUE = "queue", "queue behind earlier runs"
    ALLOW = "allow", "allow overlapping runs"


class FlowSchedule(models.Model):
    """When a flow runs by itself. Owns exactly one django-celery-beat ``PeriodicTask``."""

    flow = models.ForeignKey(
        Flow, on_delete=models.CASCADE, related_name="schedules", verbose_name="flow"
    )
    kind = models.CharField(
        "kind",
        max_length=10,
        choices=ScheduleKind.choices,
        default=ScheduleKind.CRON,
        help_text="cron (with a timezone), interval (every N seconds) or one-off (at a time).",
    )
    cron = models.CharField(
        "cron expression",
        max_length=200,
        blank=True,
        default="",
        help_text="Five fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * 1-5'.",
    )
    timezone = models.CharField(
        "timezone",
        max_length=64,
        default="UTC",
        help_text="IANA timezone the cron expression is read in, e.g. 'Europe/Madrid'.",
    )
    every_seconds = models.PositiveIntegerField(
        "every (seconds)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Interval schedules: seconds between fire times (aligned on start, or epoch).",
    )
    at = models.DateTimeField(
        "at", null=True, blank=True, help_text="One-off schedules: when the single run fires."
    )
    enabled = models.BooleanField("enabled", default=True)
    params = OrderedJSONField(
        "run params", default=dict, blank=True, help_text="Params every run of this schedule gets."
    )
    overlap = models.CharField(
        "overlap policy",
        max_length=10,
        choices=OverlapPolicy.choices,
        default=OverlapPolicy.SKIP,
        help_text="What a firing does while max_active_runs runs of this schedule are active.",
    )
    max_active_runs = models.PositiveIntegerField(
        "max active runs",
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Active runs of this schedule allowed at once (ignored by 'allow').",
    )
    catchup = models.BooleanField(
        "catch up",
        default=False,
        help_text="Run every interval missed while beat or workers were down, oldest first.",
    )
    start_at = models.DateTimeField(
        "start", null=True, blank=True, help_text="No firing before this time."
    )
    end_at = models.DateTimeField("end", null=True, blank=True, help_text="No firing after it.")
    description = models.TextField("description", blank=True, default="")
    owner = models.ForeignKey(
        "auth.User",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name="owner",
        help_text="Who last created, changed or enabled the schedule: its runs need this user's "
        "rights (empty: set by an operator, see 'run as operator').",
    )
    run_as_operator = models.BooleanField(
        "run as operator",
        default=False,
        editable=False,
        help_text="Set up on the command line without a user: runs with the platform's own "
        "authority. Set only when a schedule is created without an owner; cleared when a user "
        "takes it. A schedule with neither (its owner was deleted) never fires.",
    )
    position = models.PositiveIntegerField(
        "position", default=0, help_text="Order in the flow file."
    )
    periodic_task = models.OneToOneField(
        PeriodicTask,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="flow_schedule",
        verbose_name="beat entry",
        help_text="The django-celery-beat entry kept in sync with this schedule.",
    )
    timing_changed_at = models.DateTimeField(
        "timing changed",
        default=current_time,
        editable=False,
        help_text="Last change of the fire times; catch-up never reaches before it.",
    )
    last_fired_at = models.DateTimeField(
        "last fired",
        null=True,
        blank=True,
        editable=False,
        help_text="Latest fire time handled (written by the fire task only).",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        ordering = ["flow", "position", "id"]
        verbose_name = "flow schedule"
        indexes = [models.Index(fields=["flow", "position"], name="flowschedule_flow_position")]

    def __str__(self) -> str:
        return f"{self.flow.slug}: {self.summary}"

    @property
    def summary(self) -> str:
        """``cron 0 6 * * 1-5 (Europe/Madrid)``, ``every 30s``, ``once at 2027-01-01T00:00Z``."""
        if self.kind == ScheduleKind.CRON:
            return f"cron {self.cron} ({self.timezone})"
        if self.kind == ScheduleKind.INTERVAL:
            return f"every {format_every(self.every_seconds or 0)}"
        return f"once at {self.at.isoformat() if self.at else '?'}"

    def timetable(self, bounded: bool = True) -> Timetable:
        """The fire-time math of this schedule; ``bounded=False`` ignores start and end."""
        start, end = (self.start_at, self.end_at) if bounded else (None, None)
        if self.kind == ScheduleKind.CRON:
            return CronTimetable(parse_cron(self.cron), ZoneInfo(self.timezone), start, end)
        if self.kind == ScheduleKind.INTERVAL:
            return IntervalTimetable(timedelta(seconds=self.every_seconds or 0), start, end)
        assert self.at is not None
        return OneOffTimetable(self.at)

    def fired_through(self) -> datetime:
        """Fire times at or before this instant are done (fired, or before the last edit)."""
        if self.kind == ScheduleKind.ONE_OFF:
            assert self.at is not None
            fired = self.last_fired_at == self.at
            return self.at if fired else self.at - timedelta(microseconds=1)
        if self.last_fired_at and self.last_fired_at > self.timing_changed_at:
            return self.last_fired_at
        return self.timing_changed_at

    def next_fire_at(self) -> datetime | None:
        """When the schedule fires next (None: never again, or disabled)."""
        if not self.enabled:
            return None
        timetable = self.timetable()
        nxt = timetable.next_after(self.fired_through())
        now = timezone.now()
        if nxt is not None and nxt < now:
            return now  # overdue: fires as soon as beat gets to it
        return nxt

    def clean(self) -> None:
        from scheduling.validation import check_schedule

        errors = check_schedule(self)
        if errors:
            raise ValidationError(errors)

    def save(self, *args: object, **kwargs: object) -> None:
        """Save, move ``timing_changed_at`` on a timing change, and sync the beat entry."""
        from scheduling.sync import sync_periodic_task

        now = timezone.now()
        with transaction.atomic():
            before = None
            if self.pk is not None:
                before = FlowSchedule.objects.filter(pk=self.pk).values(*TIMING_FIELDS).first()
            timing_changed = before is not None and any(
                before[name] != getattr(self, name) for name in TIMING_FIELDS
            )
            if timing_changed:
                self.timing_changed_at = now
            if self.owner_id is not None:
                self.run_as_operator = False
            elif self._state.adding:
                # Created without a user: by the operator (command line, a plain flow file).
                # A user's own write sets the owner right after (``access.claim``).
                self.run_as_operator = True
            if before is not None and kwargs.get("update_fields") is None:
                # last_fired_at belongs to the fire task: an edit must never write a stale copy.
                kwargs["update_fields"] = [
                    f.name
                    for f in self._meta.concrete_fields
                    if not f.primary_key and f.name != "last_fired_at"
                ]
            super().save(*args, **kwargs)  # type: ignore[arg-type]
            sync_periodic_task(self, force=timing_changed)


class ScheduledRunState(models.TextChoices):
    STARTED = "started", "run started"
    WAITING = "waiting", "waiting for a free slot"
    SKIPPED = "skipped", "skipped (overlap)"
    FAILED = "failed", "could not start"


class ScheduledRun(models.Model):
    """One data interval of a schedule, handled once: the row is the idempotency key.

    Created in the same transaction as its run, under a unique (schedule, interval_start)
    constraint: a second beat, a redelivered message or a repeated backfill cannot make a
    second run for the same interval.
    """

    schedule = models.ForeignKey(
        FlowSchedule, on_delete=models.CASCADE, related_name="scheduled_runs"
    )
    interval_start = models.DateTimeField("data interval start")
    interval_end = models.DateTimeField("data interval end")
    trigger = models.CharField(
        "trigger",
        max_length=20,
        choices=[(Trigger.SCHEDULE, "schedule"), (Trigger.BACKFILL, "backfill")],
        default=Trigger.SCHEDULE,
    )
    state = models.CharField(
        "state", max_length=10, choices=ScheduledRunState.choices, default=ScheduledRunState.WAITING
    )
    run = models.OneToOneField(
        FlowRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="scheduled_run",
        verbose_name="run",
    )
    error = models.TextField("error", blank=True, default="")
    created_at = models.DateTimeField("created", auto_now_add=True)
    started_at = models.DateTimeField("run started", null=True, blank=True)

    class Meta:
        ordering = ["schedule", "-interval_start"]
        verbose_name = "scheduled interval"
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "interval_start"], name="scheduledrun_once_per_interval"
            )
        ]
        indexes = [
            models.Index(
                fields=["schedule", "interval_start"],
                name="scheduledrun_waiting",
                condition=Q(state="waiting"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} [{self.interval_start:%Y-%m-%d %H:%M:%S}, {self.interval_end:%Y-%m-%d %H:%M:%S})"


from scheduling.triggers.models import FlowTrigger, TriggerEvent, TriggerKind  # noqa: E402

__all__ = [
    "FlowSchedule",
    "FlowTrigger",
    "OverlapPolicy",
    "ScheduleKind",
    "ScheduledRun",
    "ScheduledRunState",
    "TriggerEvent",
    "TriggerKind",
]
