"""``manage.py webhooksecret FLOW NAME``: generate a webhook's secret and print it (once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from flowplatform.audit.command import AuditedCommand
from flows import access
from scheduling.triggers.models import FlowTrigger, TriggerKind
from scheduling.triggers.secrets import new_secret


class Command(AuditedCommand):
    help = (
        "Generate a new secret for a flow's webhook trigger and print it. It is shown only "
        "now and stored encrypted; the previous secret stops working at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("flow", help="the flow's slug")
        parser.add_argument("name", help="the webhook's name (its 'webhook' in the flow file)")

    def handle(self, *args: Any, **options: Any) -> None:
        trigger = (
            FlowTrigger.objects.select_related("flow")
            .filter(flow__slug=options["flow"], kind=TriggerKind.WEBHOOK, name=options["name"])
            .first()
        )
        if trigger is None:
            raise CommandError(
                f"flow '{options['flow']}' has no webhook '{options['name']}' "
                "(add it to the flow file's triggers first)"
            )
        if self.acting_user is not None and not access.can(self.acting_user, trigger.flow, "run"):
            raise CommandError(
                f"user '{self.acting_user}' may not run flow '{trigger.flow.slug}' "
                "(a webhook secret starts runs: it needs the run permission)"
            )
        self.stdout.write(new_secret(trigger))
