"""``manage.py listruns [--flow SLUG] [--status S] [--limit N]``: recent runs, newest first."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flows.management.commands.listflows import table
from flows.models import Flow, FlowRun, RunStatus


class Command(BaseCommand):
    help = "List runs, newest first: id, flow, version, status, trigger, created, duration."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--flow", metavar="SLUG", help="only this flow's runs")
        parser.add_argument(
            "--status",
            action="append",
            default=[],
            choices=RunStatus.values,
            help="only runs with this status (repeatable)",
        )
        parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be 1 or more")
        runs = FlowRun.objects.select_related("flow", "version").order_by("-created_at")
        if options["flow"]:
            if not Flow.objects.filter(slug=options["flow"]).exists():
                raise CommandError(f"flow '{options['flow']}' does not exist")
            runs = runs.filter(flow__slug=options["flow"])
        if options["status"]:
            runs = runs.filter(status__in=options["status"])
        rows = [
            (
                str(run.id),
                run.flow.slug,
                f"v{run.version.number}",
                run.status,
                run.trigger,
                f"{run.created_at:%Y-%m-%d %H:%M:%S}",
                f"{run.duration_s:.2f}s" if run.duration_s is not None else "-",
            )
            for run in runs[: options["limit"]]
        ]
        if not rows:
            self.stdout.write("no runs")
            return
        header = ("run", "flow", "version", "status", "trigger", "created", "duration")
        for line in table(header, rows):
            self.stdout.write(line)
