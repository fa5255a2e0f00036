"""``manage.py checkconnections``: what each database connection's role may do beyond reading."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from nodes.models import Connection
from nodes.rolecheck import check_and_store


class Command(BaseCommand):
    help = (
        "Check every database connection (or the named ones): is its role a superuser, can it "
        "write, can it reach server files or programs? Prints one line per finding."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="connections to check")
        parser.add_argument(
            "--fail-on-warning",
            action="store_true",
            help="exit with status 1 when any connection has a warning",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["names"]
        connections = Connection.objects.order_by("name")
        if names:
            connections = connections.filter(name__in=names)
            missing = sorted(set(names) - {c.name for c in connections})
            if missing:
                raise CommandError(f"no connection named {', '.join(map(repr, missing))}")
        warned = 0
        for connection in connections:
            result = check_and_store(connection)
            label = f"{connection.name} ({connection.scheme})"
            if result.warnings:
                warned += 1
                for warning in result.warnings:
                    self.stdout.write(self.style.WARNING(f"{label}: WARNING {warning}"))
            elif result.checked:
                self.stdout.write(self.style.SUCCESS(f"{label}: ok, {result.summary}"))
            else:
                self.stdout.write(f"{label}: skipped, {result.summary}")
        if warned and options["fail_on_warning"]:
            raise CommandError(f"{warned} connection(s) with warnings")
