"""``manage.py schedules``: the schedules, their next fire times and their last firing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduling.admin import describe
from scheduling.models import FlowSchedule
from scheduling.sync import resync_all


class Command(BaseCommand):
    help = "List schedules with their next fire times (--sync repairs their beat entries)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--flow", metavar="SLUG", help="only this flow's schedules")
        parser.add_argument(
            "--sync", action="store_true", help="re-create or update every schedule's beat entry"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["sync"]:
            count = resync_all()
            self.stdout.write(f"{count} beat entries in sync")
        schedules = FlowSchedule.objects.select_related("flow").order_by(
            "flow__slug", "position", "id"
        )
        if options["flow"]:
            schedules = schedules.filter(flow__slug=options["flow"])
            if not schedules.exists():
                raise CommandError(f"flow '{options['flow']}' has no schedules (or does not exist)")
        rows = [("ID", "FLOW", "SCHEDULE", "ENABLED", "OVERLAP", "NEXT FIRE", "LAST FIRED")]
        for schedule in schedules:
            upcoming = schedule.next_fire_at()
            last = schedule.last_fired_at
            rows.append(
                (
                    str(schedule.pk),
                    schedule.flow.slug,
                    schedule.summary,
                    "yes" if schedule.enabled else "no",
                    f"{schedule.overlap} (max {schedule.max_active_runs})"
                    if schedule.overlap != "allow"
                    else "allow",
                    describe(upcoming, schedule) if upcoming else "—",
                    f"{last:%Y-%m-%d %H:%M:%S} UTC" if last else "—",
                )
            )
        if len(rows) == 1:
            self.stdout.write("no schedules")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
