"""``manage.py addconnection NAME URL``: create or update a named connection."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.core.validators import validate_slug

from flowplatform.audit.command import AuditedCommand
from nodes.management.commands.testconnection import report
from nodes.models import Connection
from nodes.urls import ConnectionURLError


class Command(AuditedCommand):
    help = "Create or update a named connection. The URL is stored encrypted and never printed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="connection name, e.g. warehouse")
        parser.add_argument(
            "url",
            help="postgresql://..., mysql://..., sqlite:///path, an http(s) base URL, "
            "file:///dir or s3://key:secret@bucket/prefix",
        )
        parser.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="an HTTP header sent with every request (repeatable), e.g. Authorization=Bearer x",
        )
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--test",
            action="store_true",
            help="then try it once (as testconnection does); exit 1 when it fails",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        try:
            validate_slug(name)
        except ValidationError:
            raise CommandError(
                f"connection name '{name}' must use only letters, digits, '-' and '_'"
            ) from None
        headers = {}
        for item in options["header"]:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--header '{key}' must look like NAME=VALUE")
            headers[key.strip()] = value
        connection = Connection.objects.filter(name=name).first() or Connection(name=name)
        try:
            connection.set_url(options["url"])
        except ConnectionURLError as exc:
            raise CommandError(f"connection '{name}': {exc}") from None
        connection.set_headers(headers)
        if options["description"]:
            connection.description = options["description"]
        created = connection.pk is None
        connection.save()
        verb = "created" if created else "updated"
        self.stdout.write(f"connection '{name}' {verb} ({connection.display_url})")
        if options["test"]:
            report(self, connection, saved=f" ({verb})")
