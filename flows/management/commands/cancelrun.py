"""``manage.py cancelrun RUN``: cancel a queued or running run (as ``POST runs/{id}/cancel/``)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import CommandError, CommandParser

from flowplatform.audit.command import AuditedCommand
from flows import access
from flows.models import FlowRun
from flows.services import cancel_run


class Command(AuditedCommand):
    help = "Cancel a queued or running run; its running nodes stop at their next batch."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run", help="the run's id (a UUID, as listruns prints it)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = FlowRun.objects.select_related("flow").get(id=uuid.UUID(options["run"]))
        except (ValueError, FlowRun.DoesNotExist):
            raise CommandError(f"run '{options['run']}' does not exist") from None
        user = self.acting_user
        if user is not None and not access.can(user, run.flow, "run"):
            raise CommandError(
                f"{user} needs the run permission on flow '{run.flow.slug}' (run_flow)"
            )
        if not cancel_run(run):
            raise CommandError(f"run {run.id} has already finished ({run.status})")
        self.stdout.write(f"run {run.id} of flow '{run.flow.slug}' cancelled")
