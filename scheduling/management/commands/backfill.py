"""``manage.py backfill SLUG --from ISO --to ISO``: runs for a flow's past data intervals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from flowplatform.audit.command import AuditedCommand
from flows.models import Flow
from scheduling.firing import backfill, backfill_intervals
from scheduling.models import FlowSchedule, ScheduleKind


def parse_moment(value: str, option: str) -> datetime:
    """An ISO 8601 date or time; without an offset it is read as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{option} '{value}' is not an ISO 8601 time (e.g. 2025-01-01T00:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Command(AuditedCommand):
    help = (
        "Create runs (trigger 'backfill') for every interval of a flow's schedule that lies "
        "within --from..--to. Intervals already run are left alone; beyond the schedule's "
        "max_active_runs the others wait their turn."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--from", dest="start", required=True, metavar="ISO")
        parser.add_argument("--to", dest="end", required=True, metavar="ISO")
        parser.add_argument(
            "--schedule", type=int, metavar="ID", help="which schedule, when the flow has several"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="list the intervals, create nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        start = parse_moment(options["start"], "--from")
        end = parse_moment(options["end"], "--to")
        schedule = self._schedule(options["slug"], options["schedule"])
        try:
            intervals = backfill_intervals(schedule, start, end)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        label = f"flow '{schedule.flow.slug}' ({schedule.summary})"
        if options["dry_run"] or options["verbosity"] >= 2:
            for interval_start, interval_end in intervals:
                self.stdout.write(f"  [{interval_start.isoformat()}, {interval_end.isoformat()})")
        if options["dry_run"]:
            self.stdout.write(f"{len(intervals)} intervals of {label} (dry run: nothing created)")
            return
        outcome = backfill(schedule, start, end)
        self.stdout.write(
            f"{len(intervals)} intervals of {label}: {len(outcome.started)} runs started, "
            f"{len(outcome.waiting)} waiting for a free slot, "
            f"{len(outcome.duplicates)} already handled, {len(outcome.failed)} failed"
        )
        if outcome.failed:
            raise CommandError(f"{len(outcome.failed)} intervals failed: {outcome.failed[0].error}")

    def _schedule(self, slug: str, schedule_id: int | None) -> FlowSchedule:
        flow = Flow.objects.filter(slug=slug).first()
        if flow is None:
            raise CommandError(f"flow '{slug}' does not exist")
        schedules = FlowSchedule.objects.select_related("flow").filter(flow=flow)
        if schedule_id is not None:
            schedule = schedules.filter(pk=schedule_id).first()
            if schedule is None:
                raise CommandError(f"flow '{slug}' has no schedule {schedule_id}")
            if schedule.kind == ScheduleKind.ONE_OFF:
                raise CommandError(f"schedule {schedule_id} is one-off: it has no intervals")
            return schedule
        candidates = list(schedules.exclude(kind=ScheduleKind.ONE_OFF))
        if not candidates:
            raise CommandError(f"flow '{slug}' has no cron or interval schedule to backfill")
        if len(candidates) > 1:
            listed = ", ".join(f"{s.pk} ({s.summary})" for s in candidates)
            raise CommandError(
                f"flow '{slug}' has several schedules; pick one with --schedule: {listed}"
            )
        return candidates[0]
