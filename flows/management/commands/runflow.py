"""``manage.py runflow SLUG [--param k=v ...] [--wait]``: start a run, optionally follow it."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import CommandError, CommandParser

from flowplatform.audit.command import AuditedCommand
from flows.access import AccessDenied
from flows.models import Flow, FlowRun, RunStatus, Trigger
from flows.services import DispatchError, RerunError, rerun, start_run
from flows.validation import FlowValidationError
from flows.watch import summary_table, watch_run


def parse_param(item: str) -> tuple[str, Any]:
    """``k=v``: the value is read as JSON when it parses (10, true, [1,2]), else as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"--param '{item}' must look like NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


class Command(AuditedCommand):
    help = "Start a run of a flow. With --wait, follow it and exit 1 if it fails."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait (--wait)")
        parser.add_argument(
            "--rerun", metavar="RUN_ID", help="re-run this run of the flow (same params, interval)"
        )
        parser.add_argument(
            "--from",
            dest="from_node",
            metavar="NODE",
            help="with --rerun: run only NODE and what depends on it, reusing the rest "
            "(default: the run's first failed node)",
        )
        parser.add_argument(
            "--latest", action="store_true", help="with --rerun: use the flow's current version"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        params = dict(parse_param(item) for item in options["param"])
        if (options["from_node"] or options["latest"]) and not options["rerun"]:
            raise CommandError("--from and --latest need --rerun RUN_ID")
        try:
            if options["rerun"]:
                run = self._rerun(options)
            else:
                run = start_run(
                    options["slug"], params=params, trigger=Trigger.MANUAL, user=self.acting_user
                )
        except Flow.DoesNotExist:
            raise CommandError(f"flow '{options['slug']}' does not exist") from None
        except FlowValidationError as exc:
            raise CommandError(f"flow '{options['slug']}' is invalid: {exc.problems[0]}") from None
        except (DispatchError, RerunError, AccessDenied) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"run {run.id} of flow '{run.flow.slug}' v{run.version.number} {run.status}"
        )
        if not options["wait"]:
            return
        for line in watch_run(run, timeout=options["timeout"]):
            self.stdout.write(f"  {line}")
        self.stdout.write("")
        for line in summary_table(run):
            self.stdout.write(line)
        duration = f" in {run.duration_s:.2f}s" if run.duration_s is not None else ""
        if not run.is_finished:
            raise CommandError(f"run {run.id} still {run.status} after {options['timeout']:.0f}s")
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"run {run.id} {run.status}{duration}: {run.error}")
        self.stdout.write(f"run {run.id} finished{duration}: {run.status}")

    def _rerun(self, options: dict[str, Any]) -> FlowRun:
        try:
            previous = FlowRun.objects.get(
                id=uuid.UUID(options["rerun"]), flow__slug=options["slug"]
            )
        except (ValueError, FlowRun.DoesNotExist):
            raise CommandError(
                f"run '{options['rerun']}' of flow '{options['slug']}' does not exist"
            ) from None
        return rerun(
            previous,
            from_node=options["from_node"],
            latest=options["latest"],
            user=self.acting_user,
        )
