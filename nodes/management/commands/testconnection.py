"""``manage.py testconnection NAME``: can the platform reach this connection?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from nodes.models import Connection
from nodes.probe import probe


class Command(BaseCommand):
    help = (
        "Test a connection once (databases: select 1; HTTP: HEAD on the base URL). "
        "Exits 1 when it fails; never prints its secrets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        connection = Connection.objects.filter(name=options["name"]).first()
        if connection is None:
            raise CommandError(f"connection '{options['name']}' does not exist")
        report(self, connection)


def report(command: BaseCommand, connection: Connection, saved: str = "") -> None:
    """Probe ``connection``: one line on success, a CommandError (exit 1) on failure."""
    result = probe(connection)
    if not result.ok:
        raise CommandError(
            f"connection '{connection.name}'{saved} failed its test: {result.message}"
        )
    command.stdout.write(f"connection '{connection.name}' works: {result.message}")
